"""`rsft sample | score | select | train` each run one stage on a run directory."""

from __future__ import annotations

from tests.conftest import ROOT, run_cli

MINI = ROOT / "tests" / "e2e" / "mini.yaml"


def test_stages_one_by_one(tmp_path):
    run_cli("run", str(MINI), f"output_dir={tmp_path}", "rounds=0", check=True)
    run_dir = tmp_path / "mini"
    early = run_cli("score", str(run_dir))
    assert early.returncode == 2 and "stage 'sample' has not finished" in early.stderr
    for stage in ("sample", "score", "select", "train"):
        proc = run_cli(stage, str(run_dir), "--round", "0", check=True)
        assert f"round 0 {stage}: done" in proc.stdout
        assert (run_dir / "round-000" / f"{stage}.done").exists()
    again = run_cli("sample", str(run_dir), "--round", "0", check=True)
    assert "already done" in again.stdout
    assert (run_dir / "round-000" / "model" / "config.json").exists()
