"""The same seed and config give byte-identical samples; another seed does not."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT, run_cli

MINI = ROOT / "tests" / "e2e" / "mini.yaml"


@pytest.mark.slow  # the default tier's kill-and-resume test compares a whole run byte for byte with its control
def test_same_seed_same_bytes(tmp_path):
    for name in ("a", "b"):
        run_cli("run", str(MINI), f"output_dir={tmp_path}", f"name={name}", "rounds=1", check=True)
    run_cli("run", str(MINI), f"output_dir={tmp_path}", "name=c", "rounds=1", "seed=8", check=True)
    for f in ("samples.jsonl", "scored.jsonl", "selected.jsonl", "model/model.safetensors"):
        a = (tmp_path / "a" / "round-000" / f).read_bytes()
        assert a == (tmp_path / "b" / "round-000" / f).read_bytes(), f
    assert (tmp_path / "a" / "round-000" / "samples.jsonl").read_bytes() != \
        (tmp_path / "c" / "round-000" / "samples.jsonl").read_bytes()
