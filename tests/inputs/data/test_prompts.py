import json

import pytest

from rsft.core.config import TaskConfig
from rsft.core.errors import DataError
from rsft.inputs.tasks.base import build_task


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_jsonl_with_column_mapping(tmp_path):
    f = write_jsonl(tmp_path / "t.jsonl", [{"q": "1+1=", "uid": "a", "answer": 2, "gold": "2"},
                                           {"q": [{"role": "user", "content": "hi"}], "uid": "b", "answer": 0, "gold": "0"}])
    task = build_task(TaskConfig(name="dataset", train=str(f), prompt_column="q", id_column="uid",
                                   completion_column="gold"))
    a, b = task.train
    assert a.id == "a" and a.text == "1+1=" and a.fields == {"answer": 2}
    assert b.is_chat and b.messages[0]["content"] == "hi"
    assert task.gold[0][1] == "2"


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"prompt": ["a", "b"], "answer": ["1", "2"]}), tmp_path / "t.parquet")
    task = build_task(TaskConfig(name="dataset", train=str(tmp_path / "t.parquet")))
    assert [p.id for p in task.train] == ["0", "1"] and task.train[1].fields == {"answer": "2"}


def test_saved_hf_dataset_directory(tmp_path):
    from datasets import Dataset, DatasetDict

    DatasetDict({"train": Dataset.from_list([{"prompt": "x", "answer": "1"}])}).save_to_disk(str(tmp_path / "ds"))
    task = build_task(TaskConfig(name="dataset", train=str(tmp_path / "ds")))
    assert task.train[0].text == "x"


def test_missing_column_names_file_line_and_column(tmp_path):
    f = write_jsonl(tmp_path / "t.jsonl", [{"prompt": "a"}, {"question": "b"}])
    with pytest.raises(DataError, match=r"t\.jsonl:2: missing column 'prompt'"):
        build_task(TaskConfig(name="dataset", train=str(f)))


def test_malformed_line_names_file_and_line(tmp_path):
    f = tmp_path / "t.jsonl"
    f.write_text('{"prompt": "a"}\n{"prompt": \n')
    with pytest.raises(DataError, match=r"t\.jsonl:2: invalid JSON"):
        build_task(TaskConfig(name="dataset", train=str(f)))


def test_missing_file_and_wrong_prompt_type(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        build_task(TaskConfig(name="dataset", train=str(tmp_path / "nope.jsonl")))
    f = write_jsonl(tmp_path / "t.jsonl", [{"prompt": 3}])
    with pytest.raises(DataError, match="must be a string or a list"):
        build_task(TaskConfig(name="dataset", train=str(f)))
