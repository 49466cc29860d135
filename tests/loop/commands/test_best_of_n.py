"""Inference-time best-of-N on the real tiny model, through the API and the CLI."""

from __future__ import annotations

import json

from rsft.loop.commands.best_of_n import best_of_n
from tests.conftest import invoke, run_cli


def length_scorer(prompts, completions, **kwargs):
    return [float(len(c)) for c in completions]


def test_best_is_the_highest_scoring_candidate(model_dir):
    results = best_of_n(str(model_dir), length_scorer, prompts=["1+2=", "33+4="], n=6, max_new_tokens=8,
                        return_all=True)
    assert len(results) == 2
    for r in results:
        values = [c.value for c in r.candidates.scores]
        assert r.score.value == max(values)
        assert r.best.index == values.index(max(values))  # ties go to the lowest index
        row = r.to_json()
        assert row["completion"] == r.best.text and len(row["candidates"]) == 6


def test_same_seed_same_answer(model_dir):
    a = best_of_n(str(model_dir), length_scorer, prompts=["5+5="], n=4, max_new_tokens=6, seed=3)
    b = best_of_n(str(model_dir), length_scorer, prompts=["5+5="], n=4, max_new_tokens=6, seed=3)
    assert a[0].best == b[0].best


def test_cli_with_input_file_and_fields(tmp_path, model_dir):
    """Through the CLI's entry point in this process (argv, exit code, stdout as a shell sees them)."""
    f = tmp_path / "prompts.jsonl"
    f.write_text("".join(json.dumps({"prompt": f"{i}+{i}=", "answer": 2 * i}) + "\n" for i in range(3)))
    rc, out, err = invoke(["best-of-n", "--model", str(model_dir), "--scorer", "addition", "--n", "4", "--input",
                           str(f), "--max-new-tokens", "4", "--all"], tmp_path)
    assert rc == 0, err
    rows = [json.loads(x) for x in out.splitlines()]
    assert [r["answer"] for r in rows] == [0, 2, 4]
    assert all(len(r["candidates"]) == 4 and "completion" in r for r in rows)
    rc, out, err = invoke(["best-of-n", "--model", str(model_dir), "--scorer",
                           "tests.loop.commands.test_best_of_n:length_scorer", "--prompt", "7+1=", "--n", "3",
                           "--max-new-tokens", "4"], tmp_path)
    assert rc == 0 and len(out.splitlines()) == 1, err
    bad = run_cli("best-of-n", "--model", str(model_dir), "--scorer", "addition")  # a real process: exit 2
    assert bad.returncode == 2 and "exactly one of --prompt" in bad.stderr
