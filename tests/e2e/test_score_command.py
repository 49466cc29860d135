"""`rsft score FILE` scores and filters a user's dataset on its own."""

from __future__ import annotations

import json

from tests.conftest import run_cli


def test_score_and_filter_a_jsonl(tmp_path):
    rows = [{"question": "q1", "completion": "#### 5", "answer": "5", "id": 1},
            {"question": "q2", "completion": "#### 7", "answer": "5", "id": 2},
            {"question": "q3", "completion": "nothing", "answer": "5", "id": 3}]
    f = tmp_path / "data.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = run_cli("score", str(f), "--scorer", "{name: numeric, kwargs: {fallback_last_number: false}}",
                   "--prompt-column", "question", check=True)
    out = [json.loads(x) for x in (tmp_path / "data.scored.jsonl").read_text().splitlines()]
    assert [r["score"] for r in out] == [1.0, 0.0, 0.0]
    assert out[2]["score_parts"]["format"] == 0.0 and out[1]["score_parts"]["format"] == 1.0
    assert out[0]["id"] == 1 and "scored 3 rows" in proc.stdout
    run_cli("score", str(f), "--scorer", "numeric", "--prompt-column", "question", "--min", "1",
            "--output", str(tmp_path / "kept.jsonl"), check=True)
    kept = [json.loads(x) for x in (tmp_path / "kept.jsonl").read_text().splitlines()]
    assert [r["id"] for r in kept] == [1]


def test_score_file_errors_are_one_line(tmp_path):
    f = tmp_path / "data.jsonl"
    f.write_text(json.dumps({"prompt": "p"}) + "\n")
    proc = run_cli("score", str(f), "--scorer", "numeric")
    assert proc.returncode == 2 and "missing column 'completion'" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("score", str(f))
    assert proc.returncode == 2 and "needs --scorer" in proc.stderr
