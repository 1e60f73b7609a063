"""JSONL I/O: line-numbered errors, atomic writes, torn-tail repair."""

from __future__ import annotations

from pathlib import Path

import pytest

from tops_plugin.jsonl import (
    JsonlError,
    append_jsonl,
    atomic_writer,
    read_jsonl,
    read_jsonl_numbered,
    repair_tail,
    write_jsonl,
)


def test_read_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"id": 1}\n\n{"id": 2\n')
    with pytest.raises(JsonlError) as info:
        list(read_jsonl(path))
    assert info.value.line == 3 and str(path) in str(info.value)


def test_missing_keys_and_non_objects(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"id": 1, "a": 2}\n[1, 2]\n{"a": 3}\n')
    with pytest.raises(JsonlError, match=r":2: expected a JSON object"):
        list(read_jsonl(path))
    errors: list[JsonlError] = []
    rows = list(read_jsonl(path, require=("id",), skip_bad=True, errors=errors))
    assert rows == [{"id": 1, "a": 2}] and [e.line for e in errors] == [2, 3]


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    write_jsonl(target, [{"a": 1}])

    def rows():
        yield {"a": 2}
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_jsonl(target, rows())
    assert list(read_jsonl(target)) == [{"a": 1}]
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]
    with pytest.raises(ValueError), atomic_writer(tmp_path / "new.jsonl") as handle:
        handle.write(b"partial")
        raise ValueError
    assert not (tmp_path / "new.jsonl").exists()


def test_torn_tail_is_dropped_and_whole_last_line_kept(tmp_path: Path) -> None:
    path = tmp_path / "gen.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": 2}\n{"a": 3, "resp')
    assert repair_tail(path) == len(b'{"a": 3, "resp')
    assert list(read_jsonl(path)) == [{"a": 1}, {"a": 2}]
    path.write_bytes(b'{"a": 1}\n{"a": 2}')  # complete record without its newline
    assert repair_tail(path) == 0 and path.read_bytes().endswith(b"}\n")
    with append_jsonl(path) as write:
        write({"a": 3})
    assert [r["a"] for r in read_jsonl(path)] == [1, 2, 3]


def test_surrogates_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    write_jsonl(path, [{"t": "a\ud800b"}])
    assert list(read_jsonl(path)) == [{"t": "a\ud800b"}]


def test_numbered_rows_name_their_file_line(tmp_path: Path) -> None:
    path = tmp_path / "n.jsonl"
    path.write_text('{"a": 1}\n\n\n{"a": 2}\n')
    assert list(read_jsonl_numbered(path)) == [(1, {"a": 1}), (4, {"a": 2})]
