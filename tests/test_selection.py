from rsft.selection import CapRule, DedupRule, DropUniformRule, PassesRule, TopKRule
from rsft.records import Group, Prompt, Sample, Score
from rsft.selection import select


def group(texts_scores, pid="p"):
    p = Prompt(pid, text="q")
    samples = tuple(Sample(pid, i, t) for i, (t, _) in enumerate(texts_scores))
    scores = tuple(Score(v) if v is not None else Score(None, error="boom") for _, v in texts_scores)
    return Group(p, samples, scores)


def kept(sel):
    return [[s.text for s in g.samples] for g in sel.groups]


def test_passes_drops_failures_and_errors():
    g = group([("a", 1.0), ("b", 0.0), ("c", None), ("d", 1.0)])
    assert kept(select([g], [PassesRule(rule="passes", min=1.0)])) == [["a", "d"]]


def test_dedup_keeps_the_best_of_each_normalized_text():
    g = group([("Ans  1", 0.5), ("ans 1", 1.0), ("other", 0.2)])
    sel = select([g], [DedupRule(rule="dedup")])
    assert kept(sel) == [["ans 1", "other"]]


def test_cap_and_top_k_rank_by_score_then_index():
    g = group([("a", 0.1), ("b", 0.9), ("c", 0.9), ("d", 0.5)])
    assert kept(select([g], [CapRule(rule="cap", n=2)])) == [["b", "c"]]
    assert kept(select([g], [TopKRule(rule="top_k", k=1)])) == [["b"]]


def test_drop_uniform_drops_groups_without_signal():
    same = group([("a", 1.0), ("b", 1.0)], "same")
    mixed = group([("a", 1.0), ("b", 0.0)], "mixed")
    sel = select([same, mixed], [DropUniformRule(rule="drop_uniform")])
    assert kept(sel) == [[], ["a", "b"]]


def test_chain_reports_survivors_after_each_rule():
    g = group([("x", 1.0), ("x", 1.0), ("y", 1.0), ("z", 0.0)])
    sel = select([g], [PassesRule(rule="passes"), DedupRule(rule="dedup"), CapRule(rule="cap", n=1)])
    assert sel.survivors == [("passes", 3), ("dedup", 2), ("cap", 1)]
