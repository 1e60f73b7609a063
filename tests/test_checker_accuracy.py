"""Agreement with the labelled dev set, source by source, against plain math-verify in the same run.

Plain math-verify, used the usual way (``verify(parse("$"+gold+"$"), parse(response))``), is the bar: the
checker must agree with the labels at least as often on every source. The labels come from automatic
graders; the rows in ``data/labeled_dev_adjudicated.jsonl`` were read by hand and found to be label errors
(each with the reason). The adjudicated labels are applied to both sides alike; agreement on the raw labels
is asserted overall.
"""

from __future__ import annotations

import json
import multiprocessing as mp
from collections import Counter
from pathlib import Path

import pytest

from tops_plugin.jsonl import read_jsonl
from tops_plugin.judging.verifier import Verifier

ADJUDICATED = Path(__file__).parent / "data" / "labeled_dev_adjudicated.jsonl"


def _plain_math_verify(row: dict) -> bool:
    from math_verify import parse, verify

    try:
        return bool(verify(parse("$" + row["gold"] + "$"), parse(row["response"])))
    except BaseException:  # its TimeoutException is a BaseException
        return False


@pytest.mark.slow
def test_agreement_is_at_least_plain_math_verify_on_every_source(labeled_path: Path) -> None:
    rows = list(read_jsonl(labeled_path))
    with Verifier(workers=2, timeout=5) as verifier:
        ours = [v.correct for v in verifier.judge_many((r["response"], r["gold"]) for r in rows)]
    with mp.get_context("fork").Pool(2) as pool:
        plain = pool.map(_plain_math_verify, rows, chunksize=16)

    corrected = {fix["id"]: fix["label"] for fix in map(json.loads, ADJUDICATED.read_text().splitlines())}
    assert set(corrected) <= {r["id"] for r in rows}, "adjudication names an id that is not in the dev set"

    def agreement(verdicts: list[bool], labels: list[bool]) -> dict[str, float]:
        hits, totals = Counter(), Counter()
        for row, verdict, label in zip(rows, verdicts, labels):
            totals[row["source"]] += 1
            hits[row["source"]] += verdict == label
        return {source: hits[source] / totals[source] for source in totals}

    raw = [r["label"] for r in rows]
    fixed = [corrected.get(r["id"], r["label"]) for r in rows]
    ours_fixed, plain_fixed = agreement(ours, fixed), agreement(plain, fixed)
    report = {s: (round(ours_fixed[s], 4), round(plain_fixed[s], 4)) for s in ours_fixed}
    for source in ours_fixed:
        assert ours_fixed[source] >= plain_fixed[source], report
    ours_raw = sum(o == l for o, l in zip(ours, raw)) / len(rows)
    plain_raw = sum(p == l for p, l in zip(plain, raw)) / len(rows)
    assert ours_raw >= plain_raw, (ours_raw, plain_raw)
    assert ours_raw >= 0.985


#: Real finished responses of the dev set whose final answer is a sentence, not a box (Sky-T1 on MATH500).
PROSE_CASES = (
    "test/prealgebra/1512.json:Sky_T1_math_correct_5K_27B",  # "Therefore, the difference is indeed 7π."
    "test/number_theory/368.json:Sky_T1_math_correct_5K_27B",  # "... 999 in decimal is 4343_6."
    "test/algebra/518.json:Sky_T1_math_correct_5K_27B",  # "the ratio is indeed 150/200, which simplifies to 3/4."
    "test/precalculus/43.json:Sky_T1_math_correct_5K_27B",  # "So, the point is \\((15, -29)\\)."
    "test/intermediate_algebra/752.json:Sky_T1_math_correct_5K_27B",  # "the value of the given product is 3."
)


def test_real_answers_stated_in_prose(labeled_path: Path) -> None:
    from tops_plugin.judging.answers import judge

    rows = {row["id"]: row for row in read_jsonl(labeled_path) if row["id"] in PROSE_CASES}
    assert set(rows) == set(PROSE_CASES)
    corrected = {fix["id"]: fix["label"] for fix in map(json.loads, ADJUDICATED.read_text().splitlines())}
    for pid in PROSE_CASES:
        verdict = judge(rows[pid]["response"], rows[pid]["gold"])
        assert (verdict.correct, verdict.answer_from) == (corrected.get(pid, rows[pid]["label"]), "final:prose"), pid
