"""Layer 4, learning: training (SFT, preference, the warm start, multi-process launches), held-out
evaluation, and monitoring (triggers, the report, trackers, graduation to GRPO). Imports the layers
below.
"""
