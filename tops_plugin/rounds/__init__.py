"""Reasoning rounds of a response: how often a model commits to an answer, and how often wrongly.

* `splitter` -- the deterministic splitter: rounds that end in a readable answer, judged by the checker;
* `judge` -- a language model asked to count rounds and erroneous rounds (cached, resumable).
"""
