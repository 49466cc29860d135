"""Layer 3, parts: the pieces a round is made of. Sampling engines, the allocation strategies and the
multi-turn rollout; scorers; selection rules and decontamination; metric formulas and their table;
the Ray pool. Imports `rsft.core` and `rsft.inputs`.
"""
