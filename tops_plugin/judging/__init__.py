"""Judging a response against a gold answer: the verdict, and the fields it adds to a row.

* `answers` -- the checker: ``extract_answer(response)`` and ``judge(response, gold)`` (math-verify);
* `rows` -- the one path from a record to its verdict fields (``judge_rows``), truncation, the judge key;
* `verifier` -- the pool: judges in worker processes under a hard deadline per item;
* `workers` -- the fork server those worker processes come from;
* `ray_verifier` -- the same pool spread over Ray actors.

This package imports its modules only when asked for, so a fork-server child loads just what it needs.
"""
