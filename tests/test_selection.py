"""Selection modes (the method's steps 1, 4 and 6: seed curation, selection, iteration), seed curation, statistics and the select command."""

from __future__ import annotations

import json
import random
import re

import pytest

from tops_plugin.cli.select import main
from tops_plugin.jsonl import JsonlError, read_jsonl, write_jsonl
from tops_plugin.jsonl import sha256_file
from tops_plugin.judging.rows import judge_rows
from tops_plugin.prompts import EFFORT_PROMPTS
from tops_plugin.selection.modes import SelectionConfig, read_records, select
from tops_plugin.selection.openrlhf import meta_path
from tops_plugin.selection.seeds import SeedCurationConfig, curate_seed


def gen(pid, effort, sample, tokens, verdict, response=None, **extra):
    messages = [{"role": "user", "content": f"Problem {pid}"}]
    if effort:
        messages.insert(0, {"role": "system", "content": EFFORT_PROMPTS[effort]})
    return {
        "id": pid, "problem": f"Problem {pid}", "answer": "1", "effort": effort, "sample": sample,
        "messages": messages, "response": response or f"{pid}/{effort}/{sample}", "tokens": tokens,
        "verdict": verdict, "correct": verdict == "correct", **extra,
    }


def chosen(selection):
    return {row["id"]: row["response"][0]["content"] for row in selection.rows}


def test_shortest_picks_fewest_tokens_and_drops_problems_without_correct():
    rows = [
        gen("a", "high", 0, 900, "correct"), gen("a", "low", 0, 300, "correct"), gen("a", "medium", 0, 100, "wrong"),
        gen("b", "low", 0, 50, "wrong"), gen("b", "high", 0, 70, "timeout"),
        gen("c", "medium", 1, 400, "correct"),
    ]
    result = select(rows, SelectionConfig(mode="shortest"))
    assert chosen(result) == {"a": "a/low/0", "c": "c/medium/1"}
    assert result.stats.dropped == {"no_correct": 1}
    assert (result.stats.problems_in, result.stats.problems_out, result.stats.rows_in) == (3, 2, 6)
    assert result.stats.effort_selected == {"low": 1, "medium": 1}
    assert result.stats.chosen_tokens == {"n": 2, "mean": 350.0, "median": 350.0}
    row = next(r for r in result.rows if r["id"] == "a")
    # TOPS self-improvement trains without the effort prompt.
    assert row["prompt"] == [{"role": "user", "content": "Problem a"}]
    assert row["tokens"] == 300 and row["effort"] == "low"


def test_ties_break_by_sample_then_effort_order_and_input_order_does_not_matter():
    rows = [
        gen("a", "high", 0, 100, "correct"), gen("a", "medium", 1, 100, "correct"),
        gen("a", "low", 1, 100, "correct"), gen("a", "low", 2, 100, "correct"),
    ]
    for seed in range(5):
        random.Random(seed).shuffle(rows)
        assert chosen(select(rows, SelectionConfig(mode="shortest"))) == {"a": "a/high/0"}
        assert chosen(select(rows, SelectionConfig(mode="iter-sft"))) == {"a": "a/high/0"}
    rows = [gen("a", "high", 1, 100, "correct"), gen("a", "medium", 1, 100, "correct"), gen("a", "low", 1, 100, "correct")]
    assert chosen(select(rows[::-1], SelectionConfig(mode="shortest"))) == {"a": "a/low/1"}


def test_random_is_seeded_order_independent_and_only_correct():
    rows = [gen(f"p{i}", None, s, 10 * s + 1, "correct" if s % 3 else "wrong") for i in range(40) for s in range(6)]
    first = chosen(select(rows, SelectionConfig(mode="random", seed=1)))
    shuffled = rows[:]
    random.Random(7).shuffle(shuffled)
    assert chosen(select(shuffled, SelectionConfig(mode="random", seed=1))) == first
    assert all(int(resp.split("/")[-1]) % 3 for resp in first.values())
    other = chosen(select(rows, SelectionConfig(mode="random", seed=2)))
    assert other != first and other.keys() == first.keys()
    shortest = chosen(select(rows, SelectionConfig(mode="shortest")))
    assert first != shortest  # not the shortest rule in disguise


def pairs_of(rows, **config):
    result = select(rows, SelectionConfig(mode="iter-dpo", **config))
    return [(r["id"], r["pair"], r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in result.rows], result


def test_iter_dpo_pair_rules():
    rows = [
        # p: correct 500 (s1), 300 (s2); wrong 800 (s0), 100 (s3), 200 (s4) -> two pairs
        gen("p", None, 0, 800, "wrong"), gen("p", None, 1, 500, "correct"), gen("p", None, 2, 300, "correct"),
        gen("p", None, 3, 100, "wrong"), gen("p", None, 4, 200, "wrong"),
        # q: one wrong response, shorter than the chosen -> one pair only (never the same pair twice)
        gen("q", None, 0, 50, "wrong"), gen("q", None, 1, 400, "correct"),
        # r: wrong responses all longer than the chosen -> only the longest-wrong pair
        gen("r", None, 0, 100, "correct"), gen("r", None, 1, 200, "wrong"), gen("r", None, 2, 300, "wrong"),
        # s: all correct; t: all wrong -> none
        gen("s", None, 0, 10, "correct"), gen("s", None, 1, 20, "correct"),
        gen("t", None, 0, 10, "wrong"), gen("t", None, 1, 20, "wrong"),
    ]
    pairs, result = pairs_of(rows)
    assert sorted(pairs) == [
        ("p", "longest_wrong", "p/None/2", "p/None/0"),
        ("p", "shorter_wrong", "p/None/2", "p/None/3"),
        ("q", "longest_wrong", "q/None/1", "q/None/0"),
        ("r", "longest_wrong", "r/None/0", "r/None/2"),
    ]
    assert result.stats.pairs == {"longest_wrong": 3, "shorter_wrong": 1}
    assert result.stats.dropped == {"no_correct": 1, "no_rejectable": 1}
    assert result.stats.problems_out == 3
    assert result.stats.rejected_tokens["n"] == 4
    row = next(r for r in result.rows if r["pair"] == "shorter_wrong")
    assert (row["chosen_tokens"], row["rejected_tokens"]) == (300, 100)


def test_iter_dpo_unknown_labels_are_never_rejected_by_default():
    rows = [gen("p", None, 0, 100, "correct"), gen("p", None, 1, 900, "timeout"),
            gen("p", None, 2, 800, "error"), gen("p", None, 3, 700, "no_answer")]
    assert pairs_of(rows)[0] == []
    assert pairs_of(rows, rejected_verdicts=frozenset({"wrong", "no_answer"}))[0] == [
        ("p", "longest_wrong", "p/None/0", "p/None/3")]
    assert pairs_of(rows, rejected_verdicts=frozenset({"wrong", "timeout"}))[0][0][3] == "p/None/1"


def test_iter_dpo_skips_duplicate_rejected_text():
    rows = [gen("p", None, 0, 500, "correct"), gen("p", None, 1, 900, "wrong", response="same"),
            gen("p", None, 2, 100, "wrong", response="same")]
    pairs, _ = pairs_of(rows)
    assert [p[1] for p in pairs] == ["longest_wrong"]


def seed_rows(pid, lengths, verdicts=("correct",) * 3, **extra):
    return [gen(pid, effort, 0, n, v, **extra) for effort, n, v in zip(("low", "medium", "high"), lengths, verdicts)]


def test_seed_curation_resorts_by_length_and_requires_both_gaps():
    rows = (
        seed_rows("keep", [1000, 200, 1700])  # prompt order ignored: medium shortest, low middle
        + seed_rows("gap", [100, 400, 1000])  # medium - low == 300: not > 300
        + seed_rows("wrong", [100, 500, 900], ("correct", "wrong", "correct"))
        + seed_rows("ok", [100, 401, 702])
        + [gen("missing", "low", 0, 10, "correct")]
    )
    curated = curate_seed(rows, SeedCurationConfig(min_gap=300))
    stats = curated.stats
    assert stats.kept == 2 and stats.problems_in == 5
    assert stats.dropped == {"missing_effort": 1, "not_all_correct": 1, "not_usable": 0, "gap_too_small": 1,
                             "over_max_len": 0}
    keep = {row["effort"]: row for row in curated.rows if row["id"] == "keep"}
    assert keep["low"]["response"][0]["content"] == "keep/medium/0"
    assert keep["medium"]["response"][0]["content"] == "keep/low/0"
    assert keep["high"]["response"][0]["content"] == "keep/high/0"
    for effort, row in keep.items():
        assert row["prompt"][0] == {"role": "system", "content": EFFORT_PROMPTS[effort]}
        assert row["prompt"][1:] == [{"role": "user", "content": "Problem keep"}]
    assert stats.tokens_by_effort == {"low": 150.0, "medium": 700.5, "high": 1201.0}
    # Table 7: which prompt produced which rank (kept problems), and over every all-correct problem
    assert stats.rank_by_prompt_kept["medium"]["shortest"] == 1 and stats.rank_by_prompt_kept["low"]["middle"] == 1
    assert stats.rank_by_prompt_kept["low"]["shortest"] == 1
    assert sum(stats.rank_by_prompt_all_correct["high"].values()) == 3
    assert len(curate_seed(rows, SeedCurationConfig(min_gap=299)).rows) == 9


def test_seed_curation_recounts_with_a_tokenizer():
    rows = seed_rows("p", [0, 0, 0])
    for row, words in zip(rows, (10, 400, 900)):
        row["response"] = " x" * words
    assert curate_seed(rows).stats.kept == 0  # row tokens kept as they are
    from tops_plugin.tokens import default_tokenizer_dir

    with_tok = curate_seed(rows, SeedCurationConfig(curation_tokenizer=str(default_tokenizer_dir())))
    assert with_tok.stats.kept == 1
    # Gaps in the curation tokenizer's tokens; the reported `tokens` stay the rows' own (Qwen2.5) counts.
    assert [r["curation_tokens"] for r in with_tok.rows] == [10, 400, 900]
    assert [r["tokens"] for r in with_tok.rows] == [0, 0, 0]


def test_effort_breakdown_by_benchmark_and_level():
    rows = [gen("a", "low", 0, 10, "correct", benchmark="math", level=1),
            gen("b", "high", 0, 10, "correct", benchmark="math", level=5),
            gen("c", "high", 0, 10, "correct", benchmark="gsm8k")]
    stats = select(rows, SelectionConfig()).stats
    assert stats.effort_by_group["benchmark"] == {"math": {"low": 1, "high": 1}, "gsm8k": {"high": 1}}
    assert stats.effort_by_group["level"] == {"1": {"low": 1}, "5": {"high": 1}}


def test_missing_tokens_are_counted():
    row = gen("a", None, 0, 0, "correct", response=" x x x")
    del row["tokens"]
    assert select([row]).rows[0]["tokens"] == 3


def test_read_records_names_file_and_line(tmp_path):
    path = tmp_path / "gens.jsonl"
    good = gen("a", None, 0, 5, "correct")
    bad = {k: v for k, v in good.items() if k not in ("verdict", "correct")}
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(dict(bad, sample=1)) + "\n")
    with pytest.raises(JsonlError, match=r"gens.jsonl:3: no verdict"):
        list(read_records(path))
    assert len(list(read_records(path, need_verdict=False))) == 2
    path.write_text(json.dumps({"id": "a", "verdict": "correct"}) + "\n")
    with pytest.raises(JsonlError, match=r":1: missing key\(s\) 'response'"):
        list(read_records(path))
    path.write_text(json.dumps({"id": ["a"], "verdict": "correct", "response": "x", "problem": "p"}) + "\n")
    with pytest.raises(JsonlError, match=r":1: 'id' must be"):
        list(read_records(path))
    path.write_text(json.dumps({"id": "a", "verdict": "correct", "response": "x"}) + "\n")
    with pytest.raises(JsonlError, match=r":1: neither 'messages' nor 'problem'"):
        list(read_records(path))
    path.write_text(json.dumps({"id": "a", "response": "x", "problem": "p"}) + "\n")
    with pytest.raises(JsonlError, match=r":1: no gold answer \('answer' or 'gold'\) to judge against"):
        list(read_records(path, need_verdict=False))


@pytest.mark.parametrize("change, reason", [
    ({"tokens": -1}, "'tokens' must be a non-negative integer, got -1"),
    ({"tokens": True}, "'tokens' must be a non-negative integer, got True"),
    ({"tokens": 3.0}, "'tokens' must be a non-negative integer"),
    ({"effort": "ultra"}, "unknown effort 'ultra'"),
    ({"effort": "../x"}, "unknown effort '../x'"),
    ({"sample": "0"}, "'sample' must be a non-negative integer"),
    ({"response": ["x"]}, "'response' must be a string"),
    ({"messages": [{"role": "system", "content": EFFORT_PROMPTS["low"] + " "},
                   {"role": "user", "content": "p"}]}, "not the low effort prompt"),
    ({"effort": None}, "effort system prompt but no 'effort'"),
    ({"verdict": "Correct"}, "unknown verdict 'Correct'"),
    ({"verdict": "wrong"}, "'verdict' 'wrong' contradicts 'correct' true"),
    ({"verdict": None, "correct": "yes"}, "no verdict"),
    ({"truncated": "false"}, "'truncated' must be true or false"),
    ({"messages": None, "problem": ["q"]}, "'problem' must be a string"),
    ({"messages": [{"role": "assistant", "content": "x"}]}, "no user message: no prompt to train on"),
])
def test_untrustworthy_fields_are_refused_with_file_and_line(tmp_path, change, reason):
    path = tmp_path / "gens.jsonl"
    rows = [gen("a", "low", 0, 5, "correct"), dict(gen("b", "low", 0, 5, "correct"), **change)]
    write_jsonl(path, rows)
    with pytest.raises(JsonlError, match=rf"gens.jsonl:2: .*{re.escape(reason)}"):
        list(read_records(path))


def test_duplicate_records_name_both_lines_and_tokens_can_be_recounted(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_jsonl(a, [gen("p", "low", 0, 5, "correct"), gen("p", "low", 1, 5, "correct")])
    write_jsonl(b, [gen("q", None, 0, 5, "correct"), gen("p", "low", 1, 9, "wrong")])
    with pytest.raises(JsonlError, match=rf"b.jsonl:2: duplicate of {re.escape(str(a))}:2"):
        list(read_records([a, b]))
    write_jsonl(b, [dict(gen("q", None, 0, -1, "correct"), response=" x x")])
    with pytest.raises(JsonlError, match="'tokens' must be"):
        list(read_records(b))
    [row] = select(read_records(b, check_tokens=False), SelectionConfig(recount=True)).rows
    assert row["tokens"] == 2


def test_a_500_word_response_with_bad_tokens_is_not_the_shortest_pick(tmp_path, capsys):
    rows = [gen("a", None, 0, -1, "correct", response="word " * 500), gen("a", None, 1, 40, "correct")]
    code, _, out = run_cli(tmp_path, rows, "--mode", "shortest")
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "in.jsonl:1: 'tokens' must be a non-negative integer" in err
    assert not out.exists()
    code, _, out = run_cli(tmp_path, rows, "--mode", "shortest", "--recount")
    assert code == 0 and [r["sample"] for r in read_jsonl(out)] == [1]


def fake_judge_many(seen):
    """Stands in for a Verifier's judge_many: judges by exact match and records the calls."""
    from tops_plugin.judging.answers import Verdict

    def judge_many(items):
        for response, gold, truncated in items:
            seen.append((response, gold, truncated))
            yield Verdict("correct" if response.endswith(gold) else "wrong", pred=response[-1:])

    return judge_many


def test_judge_rows_keeps_verdicts_when_asked_judges_the_rest_in_order():
    rows = [{"id": i, "response": f"answer {i % 2}", "answer": "1"} for i in range(7)]
    rows[2].update(verdict="wrong", correct=False)
    rows[3]["finish_reason"] = "length"
    seen = []
    out = list(judge_rows(iter(rows), fake_judge_many(seen), keep_verdicts=True, batch_size=3))
    assert [r["id"] for r in out] == list(range(7))
    assert len(seen) == 6 and seen[2] == ("answer 1", "1", True)
    assert [r["verdict"] for r in out] == ["wrong", "correct", "wrong", "correct", "wrong", "correct", "wrong"]
    assert [r["truncated"] for r in out] == [False, False, False, True, False, False, False]
    assert "judge_key" in out[0] and "judge_key" not in out[2]
    with pytest.raises(ValueError, match="no gold answer"):
        list(judge_rows([{"id": "x", "response": "1"}], fake_judge_many([])))


def run_cli(tmp_path, rows, *args):
    src = tmp_path / "in.jsonl"
    write_jsonl(src, rows)
    out = tmp_path / "out.jsonl"
    code = main([str(src), "-o", str(out), *args])
    return code, src, out


def test_cli_writes_rows_and_sidecar(tmp_path, capsys):
    rows = [gen("a", None, 0, 800, "wrong"), gen("a", None, 1, 200, "correct"), gen("b", None, 0, 5, "wrong")]
    code, src, out = run_cli(tmp_path, rows, "--mode", "iter-dpo")
    assert code == 0
    written = list(read_jsonl(out))
    assert [(r["id"], r["pair"]) for r in written] == [("a", "longest_wrong")]
    meta = json.loads(meta_path(out).read_text())
    assert meta["rows"] == 1 and meta["mode"] == "iter-dpo" and meta["format"] == "dpo"
    assert meta["inputs"] == [{"path": str(src), "sha256": sha256_file(src)}]
    assert meta["stats"]["pairs"] == {"longest_wrong": 1, "shorter_wrong": 0}
    assert "selection: iter-dpo" in capsys.readouterr().out


def test_cli_empty_input_warns_and_writes_empty_output(tmp_path, capsys):
    code, _, out = run_cli(tmp_path, [], "--mode", "shortest")
    assert code == 0 and out.read_text() == ""
    assert json.loads(meta_path(out).read_text())["rows"] == 0
    assert "warning" in capsys.readouterr().err


def test_cli_bad_row_is_an_error_not_a_crash(tmp_path, capsys):
    bad = gen("a", None, 0, 5, "correct")
    del bad["verdict"], bad["correct"]
    code, _, out = run_cli(tmp_path, [gen("b", None, 0, 5, "correct"), bad], "--mode", "shortest")
    assert code == 2 and not out.exists()
    assert "in.jsonl:2" in capsys.readouterr().err


def test_cli_seed_then_shortest_with_low_effort_seed_rows(tmp_path, capsys):
    seed_src = seed_rows("s1", [100, 500, 900]) + seed_rows("s2", [100, 150, 900])
    code, _, seed_out = run_cli(tmp_path, seed_src, "--mode", "seed")
    assert code == 0 and len(list(read_jsonl(seed_out))) == 3
    assert "Table 7" in capsys.readouterr().out
    main_dir = tmp_path / "main"
    main_dir.mkdir()
    code, _, out = run_cli(main_dir, [gen("p", "high", 0, 50, "correct")], "--mode", "shortest",
                           "--add-seed", str(seed_out))
    assert code == 0
    written = list(read_jsonl(out))
    assert [r["id"] for r in written] == ["p", "s1"]
    assert written[1]["prompt"] == [{"role": "user", "content": "Problem s1"}]  # effort prompt removed
    assert written[1]["response"][0]["content"] == "s1/low/0"


def test_cli_judge_with_the_verifier(tmp_path):
    pytest.importorskip("tops_plugin.judging.verifier")
    rows = [{"id": "a", "problem": "3 + 4?", "response": "So the answer is \\boxed{7}.", "answer": "7", "sample": 0},
            {"id": "a", "problem": "3 + 4?", "response": "The answer is \\boxed{3}. " * 20, "answer": "7", "sample": 1}]
    code, _, out = run_cli(tmp_path, rows, "--mode", "iter-dpo", "--judge", "--workers", "1")
    assert code == 0
    written = list(read_jsonl(out))
    assert len(written) == 1 and written[0]["chosen"][0]["content"].endswith("\\boxed{7}.")


def test_cli_judge_passes_truncation_so_a_cut_response_is_not_picked(tmp_path):
    """The reported case: cut at the token limit, ending "...checking with 204", gold 204. Judged as
    truncated it has no answer; judged without the flag its last number would have made it the pick."""
    cut = {"id": "a", "problem": "p", "answer": "204", "sample": 0, "finish_reason": "length",
           "response": "We get 12 * 17 = 204. Let me verify this by checking with 204"}
    done = {"id": "a", "problem": "p", "answer": "204", "sample": 1, "finish_reason": "stop",
            "response": "Careful work. " * 40 + "So the answer is \\boxed{204}."}
    code, _, out = run_cli(tmp_path, [cut, done], "--mode", "shortest", "--judge", "--workers", "1")
    assert code == 0 and [r["sample"] for r in read_jsonl(out)] == [1]


def test_cli_keep_effort_prompt_with_an_unknown_effort_is_a_named_error(tmp_path, capsys):
    rows = [gen("a", "low", 0, 5, "correct"), dict(gen("a", "low", 1, 5, "correct"), effort="ultra")]
    code, _, out = run_cli(tmp_path, rows, "--mode", "shortest", "--keep-effort-prompt")
    assert code == 2 and "in.jsonl:2: unknown effort 'ultra'" in " ".join(capsys.readouterr().err.split())
    assert not out.exists()


def test_cli_missing_tokenizer_path_is_an_error(tmp_path, capsys):
    code, _, out = run_cli(tmp_path, [gen("a", None, 0, 5, "correct")], "--mode", "shortest",
                           "--tokenizer", str(tmp_path / "no-such-tokenizer"))
    assert code == 2 and not out.exists()
    assert "does not exist" in capsys.readouterr().err


def test_truncated_responses_are_never_targets_but_may_be_rejected_when_allowed():
    cut = dict(finish_reason="length")
    rows = [
        gen("a", None, 0, 50, "correct", **cut),  # shortest correct, but cut off: not a target
        gen("a", None, 1, 400, "correct"),
        gen("a", None, 2, 900, "wrong", **cut),  # longest wrong, cut off: a rejected response is allowed
        gen("b", None, 0, 30, "correct", response="<think>so \\boxed{1}, let me chec"),  # unclosed: cut
        gen("b", None, 1, 60, "no_answer", **cut),
    ]
    shortest = select(rows, SelectionConfig(mode="shortest"))
    assert chosen(shortest) == {"a": "a/None/1"}
    assert shortest.stats.dropped == {"no_correct": 0, "only_truncated_correct": 1}
    assert shortest.stats.excluded == {"truncated_correct": 2}
    assert chosen(select(rows, SelectionConfig(mode="iter-sft"))) == {"a": "a/None/1"}
    random_pick = select(rows, SelectionConfig(mode="random", seed=3))
    assert chosen(random_pick) == {"a": "a/None/1"}
    pairs, result = pairs_of(rows)
    assert pairs == [("a", "longest_wrong", "a/None/1", "a/None/2")]
    assert result.stats.excluded == {"truncated_correct": 2}
    assert result.stats.truncated == {"correct": 2, "eligible_as_rejected": 1, "no_answer": 1, "wrong": 1}
    # A truncated no_answer is rejected only where --rejected-verdicts allows no_answer.
    pairs, _ = pairs_of([*rows, gen("b", None, 2, 80, "correct")], rejected_verdicts=frozenset({"wrong", "no_answer"}))
    assert ("b", "longest_wrong", "b/None/2", "b/None/1") in pairs


def test_seed_problems_with_a_truncated_response_are_dropped():
    rows = seed_rows("keep", [100, 500, 900]) + seed_rows("cut", [100, 500, 900])
    rows[-1]["finish_reason"] = "length"
    result = select(rows, SelectionConfig(mode="seed"))
    assert {row["id"] for row in result.rows} == {"keep"}
    assert result.stats.dropped["not_usable"] == 1 and result.stats.excluded == {"truncated": 1}


def test_a_cut_response_stays_cut_whatever_its_truncated_flag_or_finish_reason_says():
    """`truncated: false` beside `finish_reason: length` (or an unclosed reasoning block) is still a cut
    response, and a reason other than a normal stop (`max_tokens`, `abort`) is not a finished one."""
    rows = [
        gen("a", None, 0, 5, "correct", finish_reason="length", truncated=False),
        gen("b", None, 0, 5, "correct", response="<think>so \\boxed{1}", truncated=False),
        gen("c", None, 0, 5, "correct", finish_reason="max_tokens"),
        gen("d", None, 0, 5, "correct", finish_reason="abort"),
        gen("e", None, 0, 5, "correct", finish_reason="stop"),
        gen("f", None, 0, 5, "correct", finish_reason="STOP"),  # Gemini's spelling
        gen("g", None, 0, 5, "correct", finish_reason="MAX_TOKENS"),
    ]
    result = select(rows, SelectionConfig(mode="shortest"))
    assert chosen(result) == {"e": "e/None/0", "f": "f/None/0"}
    assert result.stats.excluded == {"truncated_correct": 5}


def test_cli_judge_names_the_line_of_a_record_without_gold(tmp_path, capsys):
    rows = [{"id": "a", "problem": "p", "response": "\\boxed{7}", "answer": "7"},
            {"id": "b", "problem": "p", "response": "\\boxed{7}"}]
    code, _, out = run_cli(tmp_path, rows, "--mode", "shortest", "--judge", "--workers", "1")
    assert code == 2 and not out.exists()
    assert "in.jsonl:2: no gold answer" in " ".join(capsys.readouterr().err.split())


def test_cli_added_seed_rows_obey_max_len_and_a_bad_seed_line_is_named(tmp_path, capsys):
    seed = tmp_path / "seed.jsonl"
    prompt = [{"role": "user", "content": "Problem s"}]
    write_jsonl(seed, [
        {"prompt": prompt, "response": [{"role": "assistant", "content": "short \\boxed{1}"}], "id": "s1",
         "tokens": 4, "effort": "low"},
        {"prompt": prompt, "response": [{"role": "assistant", "content": "word " * 400}], "id": "s2",
         "tokens": 400, "effort": "low"},
    ])
    code, _, out = run_cli(tmp_path, [gen("p", None, 0, 5, "correct")], "--mode", "shortest", "--max-len", "128",
                           "--add-seed", str(seed))
    assert code == 0 and [r["id"] for r in read_jsonl(out)] == ["p", "s1"]
    stats = json.loads(meta_path(out).read_text())["stats"]
    assert stats["excluded"] == {"over_max_len_seed": 1} and stats["seed"]["low_effort_rows_added"] == 1
    seed.write_text(json.dumps({"prompt": "Problem s", "response": "x", "id": "s3", "effort": "low"}) + "\n")
    code, _, _ = run_cli(tmp_path, [gen("p", None, 0, 5, "correct")], "--mode", "shortest", "--add-seed", str(seed))
    assert code == 2 and "seed.jsonl:1: not a seed-mode SFT row" in " ".join(capsys.readouterr().err.split())


def test_iter_dpo_with_effort_prompts_never_emits_a_rejected_that_no_longer_fits_under_the_chosen_prompt():
    """With --keep-effort-prompt the pair takes the chosen response's (longer, high-effort) prompt: a
    rejected response measured under its own shorter low-effort prompt may not fit any more."""
    from tops_plugin.selection.openrlhf import TrainLength, prompt_messages

    rejected = "word " * 200
    rows = [gen("a", "high", 0, 5, "correct", response="\\boxed{1}"), gen("a", "low", 0, 201, "wrong", response=rejected)]
    limit = TrainLength(4096)
    fits_alone = limit.measure(prompt_messages(rows[1], "low"), rejected)[1]
    assert limit.measure(prompt_messages(rows[1], "high"), rejected)[1] > fits_alone
    result = select(rows, SelectionConfig(mode="iter-dpo", keep_effort_prompt=True, max_len=fits_alone))
    assert result.rows == []
    assert result.stats.excluded == {"over_max_len_rejected": 1}
    assert result.stats.dropped["no_rejectable_that_fits"] == 1
    [pair] = select(rows, SelectionConfig(mode="iter-dpo", keep_effort_prompt=True, max_len=fits_alone + 60)).rows
    assert pair["rejected"][0]["content"] == rejected


def test_iter_dpo_drop_reasons_name_the_role_that_was_excluded():
    """An over-length *wrong* response does not make a problem without any correct one 'only over-length
    correct', and an over-length *correct* one does not make a problem 'no rejectable that fits'."""
    long = "word " * 600
    rows = [
        gen("none", None, 0, 600, "wrong", response=long),  # no correct at all; its wrong is over-length
        gen("rej", None, 0, 600, "correct", response=long),  # a correct one over-length, one that fits
        gen("rej", None, 1, 5, "correct"),  # ... and no wrong response at all
    ]
    result = select(rows, SelectionConfig(mode="iter-dpo", max_len=256))
    assert result.rows == []
    assert result.stats.dropped == {"no_correct": 1, "no_rejectable": 1}
    assert result.stats.excluded == {"over_max_len_correct": 1, "over_max_len_rejected": 1}


@pytest.mark.parametrize("value, message", [(",", "names no verdict"), ("wrong,correct", "unknown verdict(s) ['correct']")])
def test_cli_meaningless_rejected_verdicts_are_refused(tmp_path, capsys, value, message):
    code, _, out = run_cli(tmp_path, [gen("a", None, 0, 5, "correct")], "--mode", "iter-dpo",
                           "--rejected-verdicts", value)
    assert code == 2 and not out.exists() and message in " ".join(capsys.readouterr().err.split())


def test_the_stand_in_chat_template_counts_qwen25s_default_system_prompt():
    """Qwen2.5-Instruct's template adds "You are Qwen, created by Alibaba Cloud..." to a prompt without a
    system message; a stand-in without it under-measures every row by that much, and OpenRLHF cuts the
    rows near the limit."""
    from tops_plugin.selection.openrlhf import QWEN25_DEFAULT_SYSTEM, TrainLength

    limit = TrainLength(4096)
    user = [{"role": "user", "content": "What is 1 + 1?"}]
    with_default = [{"role": "system", "content": QWEN25_DEFAULT_SYSTEM}, *user]
    assert limit.measure(user, "2") == limit.measure(with_default, "2")
    text = limit.tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    assert text == (f"<|im_start|>system\n{QWEN25_DEFAULT_SYSTEM}<|im_end|>\n"
                    "<|im_start|>user\nWhat is 1 + 1?<|im_end|>\n<|im_start|>assistant\n")


def test_seed_rows_join_only_the_shortest_and_random_selections(tmp_path):
    from tops_plugin.selection.dataset import write_selection

    src, seed, out = tmp_path / "in.jsonl", tmp_path / "seed.jsonl", tmp_path / "out.jsonl"
    write_jsonl(src, [gen("p", None, 0, 5, "correct")])
    write_jsonl(seed, [])
    with pytest.raises(ValueError, match="not iter-sft"):
        write_selection([src], out, SelectionConfig(mode="iter-sft"), seed_file=seed)
    assert not out.exists() and not meta_path(out).exists()
    written = write_selection([src], out, SelectionConfig(mode="shortest"), seed_file=seed)
    assert written.rows == 1 and written.stats["seed"]["low_effort_rows_added"] == 0
    assert [i["path"] for i in json.loads(meta_path(out).read_text())["inputs"]] == [str(src), str(seed)]
