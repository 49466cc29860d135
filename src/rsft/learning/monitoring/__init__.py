"""Watching a run: triggers and their actions, graduation to GRPO, the HTML report, experiment trackers."""
