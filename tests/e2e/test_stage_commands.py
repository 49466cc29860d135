"""`rsft sample | score | select | train` each run one stage on a run directory.

The run is made by a real `rsft run` process; the stage commands go through the CLI's own entry point
in this process (`invoke`: argv, exit code, stdout and stderr as a shell sees them), which spares each
one the interpreter's start and the imports (tests/core/test_runlock.py runs `rsft sample` as a
process)."""

from __future__ import annotations

from tests.conftest import ROOT, invoke, run_cli

MINI = ROOT / "tests" / "e2e" / "mini.yaml"


def test_stages_one_by_one(tmp_path):
    run_cli("run", str(MINI), f"output_dir={tmp_path}", "rounds=0", check=True)
    run_dir = tmp_path / "mini"
    rc, _, err = invoke(["score", str(run_dir)], tmp_path)
    assert rc == 2 and "stage 'sample' has not finished" in err
    for stage in ("sample", "score", "select", "train"):
        rc, out, err = invoke([stage, str(run_dir), "--round", "0"], tmp_path)
        assert rc == 0, err
        assert f"round 0 {stage}: done" in out
        assert (run_dir / "round-000" / f"{stage}.done").exists()
    rc, out, _ = invoke(["sample", str(run_dir), "--round", "0"], tmp_path)
    assert rc == 0 and "already done" in out
    assert (run_dir / "round-000" / "model" / "config.json").exists()
