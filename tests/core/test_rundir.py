import json

import pytest

from rsft.core.errors import DataError
from rsft.core.rundir.files import append_jsonl, atomic_write_json, read_jsonl, truncate_lines, truncate_torn_tail
from rsft.core.rundir.layout import RoundDir


def test_atomic_write_leaves_no_temp_files(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_torn_tail_is_cut_to_the_last_whole_line(tmp_path):
    p = tmp_path / "s.jsonl"
    append_jsonl(p, [{"a": 1}, {"a": 2}])
    with open(p, "a") as f:
        f.write('{"a": 3')
    truncate_torn_tail(p)
    assert list(read_jsonl(p)) == [{"a": 1}, {"a": 2}]


def test_bad_jsonl_line_names_file_and_line(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"a": 1}\n\n{"a": \n')
    with pytest.raises(DataError, match=r"d\.jsonl:3: invalid JSON"):
        list(read_jsonl(p))


def test_done_markers(tmp_path):
    rd = RoundDir(tmp_path, 2)
    assert rd.path.name == "round-002" and not rd.done("sample")
    rd.mark_done("sample")
    assert rd.done("sample")


def test_truncate_lines_keeps_bytes(tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_bytes(b'{"a": 1.10}\n{"b": "\xc3\xa9"}\n{"c": 3}\n')
    truncate_lines(p, 2)
    assert p.read_bytes() == b'{"a": 1.10}\n{"b": "\xc3\xa9"}\n'
