from itertools import combinations
from math import comb

import pytest

from rsft.metrics import eval_metrics, majority_correct, pass_at_k
from rsft.records import Group, Prompt, Sample, Score


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
