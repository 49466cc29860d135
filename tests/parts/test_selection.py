from rsft.core.records import Group, Prompt, Sample, Score
from rsft.parts.selection import CapRule, DedupRule, DropUniformRule, PassesRule, TopKRule, select


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


def test_errored_samples_are_never_kept_whatever_the_rules():
    g = group([("a", None), ("b", 0.2), ("c", None)])
    for rules in ([TopKRule(rule="top_k", k=3)], [CapRule(rule="cap", n=3)], [DedupRule(rule="dedup")], []):
        assert kept(select([g], rules)) == [["b"]], rules
    all_errors = group([("a", None), ("b", None)])
    assert kept(select([all_errors], [DropUniformRule(rule="drop_uniform")])) == [[]]
    assert kept(select([all_errors], [TopKRule(rule="top_k", k=1)])) == [[]]


def test_drop_uniform_looks_only_at_the_scores_that_exist():
    # two equal real scores and an error: no signal between the samples that scored
    g = group([("a", 1.0), ("b", 1.0), ("c", None)])
    assert kept(select([g], [DropUniformRule(rule="drop_uniform")])) == [[]]


def test_drop_truncated_keeps_only_samples_that_ended_on_their_own():
    from rsft.parts.selection import DropTruncatedRule

    p = Prompt("p", text="q")
    samples = (Sample("p", 0, "a", finish_reason="stop"), Sample("p", 1, "b", finish_reason="length"),
               Sample("p", 2, "c", finish_reason="stop"))
    g = Group(p, samples, (Score(1.0), Score(1.0), Score(0.0)))
    sel = select([g], [DropTruncatedRule(), PassesRule()])
    assert kept(sel) == [["a"]] and sel.survivors == [("drop_truncated", 2), ("passes", 1)]


def test_the_default_chain_drops_truncated_samples():
    from rsft.core.config import load_config

    assert [r.rule for r in load_config(None).selection.rules] == ["passes", "drop_truncated", "dedup", "cap"]
