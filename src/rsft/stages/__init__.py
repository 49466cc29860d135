"""The stages of a round, one file each, and the runner that orders them (runner.py)."""
