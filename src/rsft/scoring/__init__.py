"""Scorers: plain callables with TRL GRPO's reward signature, plus the machinery that runs them."""

from rsft.scoring.base import Scorer, score_groups

__all__ = ["Scorer", "score_groups"]
