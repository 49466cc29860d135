from itertools import combinations
from math import comb

import pytest

from rsft.core.records import Group, Prompt, Sample, Score
from rsft.parts.metrics import eval_metrics, majority_correct, pass_at_k


@pytest.mark.parametrize("n,c,k", [(10, 3, 1), (10, 3, 5), (8, 0, 4), (8, 8, 1), (20, 2, 10), (5, 4, 2)])
def test_pass_at_k_matches_the_combinatorial_definition(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k))


def test_pass_at_k_equals_the_fraction_of_k_subsets_with_a_pass():
    flags = [1, 0, 0, 1, 0, 0]
    subsets = list(combinations(flags, 3))
    assert pass_at_k(6, 2, 3) == pytest.approx(sum(any(s) for s in subsets) / len(subsets))


def g(answers_correct):
    p = Prompt("p", text="q")
    samples = tuple(Sample("p", i, a) for i, (a, _) in enumerate(answers_correct))
    scores = tuple(Score(float(c), answer=a) for a, c in answers_correct)
    return Group(p, samples, scores)


def test_majority_vote_uses_extracted_answers():
    grp = g([("5", 0), ("7", 1), ("5", 0), ("7", 1), ("7", 1)])
    assert majority_correct(grp, 5, 1.0) is True
    assert majority_correct(grp, 3, 1.0) is False  # 5,7,5: majority 5 is wrong


def test_eval_metrics_keys():
    m = eval_metrics([g([("1", 1)])], [g([("1", 1), ("2", 0)])], [1, 2], 1.0)
    assert m["greedy_pass@1"] == 1.0 and m["pass@1"] == 0.5 and m["pass@2"] == 1.0 and m["maj@1"] == 1.0


def demo_like_rows():
    ev = {"greedy_pass@1": 0.996, "pass@1": 0.99, "pass@8": 1.0, "maj@8": 0.998, "engine": "ctranslate2",
          "precision": "float32"}
    row = {"round": 12, "eval": ev, "acceptance_rate": 0.867, "coverage": 0.93, "distinct_accepted_per_prompt": 1.52,
           "reward_mean": 0.867, "reward_max_mean": 0.93, "reward_median_mean": 1.0, "entropy_mean": 0.032,
           "tokens_generated": 1_280_000, "tokens_per_s": 12_345.6, "scorer_errors": 0, "kept": 18_620,
           "train_rows": 18_770, "train_loss": 0.01234, "seconds_total": 1234.5}
    return [{"round": "base", "eval": ev}, row]


def test_the_round_table_fits_80_columns_with_no_cell_cut():
    from rich.console import Console

    from rsft.parts.metrics_table import round_table

    console = Console(width=80, record=True)
    console.print(round_table(demo_like_rows(), "rsft · runs/a-long-run-name · after round 12"))
    text = console.export_text()
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    for cell in ("99.6%", "100.0%", "86.7%", "93.0%", "0.032", "18,620", "1234", "ctranslate2 float32", "greedy pass@1"):
        assert cell in text, cell
    assert "maj@8" not in text and "loss" not in text  # behind --wide


def test_the_wide_table_has_every_column():
    from rich.console import Console

    from rsft.parts.metrics_table import round_table

    console = Console(width=240, record=True)
    console.print(round_table(demo_like_rows(), "t", wide=True))
    text = console.export_text()
    assert "…" not in text
    for cell in ("maj@8", "99.8%", "1,280,000", "12,346", "0.0123", "18,770", "0.93/1.00", "1.52"):
        assert cell in text, cell


def test_the_compact_table_fits_80_columns_whatever_the_values():
    from rich.console import Console

    from rsft.parts.metrics_table import round_table

    ev = {"greedy_pass@1": 1.0, "pass@16": 1.0, "pass@1": 1.0, "maj@16": 1.0, "engine": "transformers",
          "precision": "bfloat16"}
    big = {"round": 9999, "eval": ev, "acceptance_rate": 1.0, "coverage": 1.0, "entropy_mean": 12.345,
           "kept": 12_345_678, "seconds_total": 987_654.0}
    console = Console(width=80, record=True)
    console.print(round_table([{"round": "base", "eval": ev}, big], "rsft · runs/x · after round 9999"))
    text = console.export_text()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    for cell in ("9999", "pass@16", "100.0%", "12.345", "12.3M", "11d"):
        assert cell in text, cell
