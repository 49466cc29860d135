"""Scorers: plain callables with TRL GRPO's reward signature, plus the machinery that runs them."""
