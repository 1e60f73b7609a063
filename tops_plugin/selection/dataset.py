"""Select and write a training dataset: the one path from judged records to an OpenRLHF file.

The select command and the pipeline's select stages both call `write_selection`, so a dataset and
its meta file are the same whoever made them: one selection mode over the judged records, the
curated seed's low-effort rows added when asked (the paper's step 4, under the same length limit),
the rows written atomically, then `OUT.meta.json` with the inputs and their sha256, the settings and
every count -- what the command prints.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tops_plugin.selection.modes import SelectionConfig, add_seed_rows, read_records, select
from tops_plugin.selection.openrlhf import write_dataset

__all__ = ["SEED_TARGET_MODES", "WrittenDataset", "write_selection"]

#: The modes whose selection the curated seed's low-effort rows may join.
SEED_TARGET_MODES: tuple[str, ...] = ("shortest", "random")


@dataclass(frozen=True)
class WrittenDataset:
    """A dataset as written: its path and its meta file's content."""

    path: Path
    meta: dict

    @property
    def rows(self) -> int:
        return self.meta["rows"]

    @property
    def stats(self) -> dict:
        """The selection's figures (`SelectionStats`) and `malformed_input_rows`."""
        return self.meta["stats"]


def write_selection(
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    config: SelectionConfig,
    *,
    rows: Iterable[dict] | None = None,
    seed_file: str | os.PathLike | None = None,
    malformed_input_rows: int = 0,
) -> WrittenDataset:
    """Select from the judged records of `inputs` and write the dataset and its meta file to `output`.

    `rows`: the records of `inputs` as the caller streams them (judged on the fly, counted for a
    progress display); by default they are read with `read_records`. `seed_file`: a curated seed
    (seed-mode output) whose low-effort rows join a shortest or random selection. `malformed_input_rows`:
    records skipped as malformed before selection (by a judge step), counted in the meta file with
    every other exclusion. A bad record or tokenizer raises before anything is written.
    """
    if seed_file is not None and config.mode not in SEED_TARGET_MODES:
        raise ValueError(f"the seed's low-effort rows join the {' and '.join(SEED_TARGET_MODES)} selections "
                         f"only, not {config.mode}")
    if rows is None:
        rows = read_records(list(inputs), check_tokens=not config.recount)
    selection = select(rows, config)
    if seed_file is not None:
        selection = add_seed_rows(selection, seed_file, config)
    stats = {**selection.stats.to_dict(), "malformed_input_rows": malformed_input_rows}
    meta = write_dataset(output, selection.rows, mode=config.mode,
                         inputs=[*inputs, *([seed_file] if seed_file is not None else [])],
                         curation_tokenizer=config.curation_tokenizer,
                         length_tokenizer=selection.stats.length_tokenizer, stats=stats, config=_settings(config))
    return WrittenDataset(Path(output), meta)


def _settings(config: SelectionConfig) -> dict:
    """The settings the meta file records (besides the tokenizers, recorded on their own)."""
    return {"seed": config.seed, "min_gap": config.min_gap, "rejected_verdicts": sorted(config.rejected_verdicts),
            "keep_effort_prompt": config.keep_effort_prompt, "max_len": config.max_len, "recount": config.recount}
