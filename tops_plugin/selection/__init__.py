"""Choosing what the model learns from, and writing it as OpenRLHF datasets.

* `modes` -- the selection modes (shortest, random, iter-sft, iter-dpo, seed) and ``read_records``;
* `seeds` -- curating the effort-tagged seed set that teaches the three reasoning styles;
* `openrlhf` -- OpenRLHF's SFT and DPO row formats, the trainer's length limit, dataset + meta writer;
* `dataset` -- select, add the seed's low-effort rows, write the dataset: the one path the select command
  and the pipeline's select stages share.
"""
