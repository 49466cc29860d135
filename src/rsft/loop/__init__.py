"""Layer 6, loop: the round loop (`rounds.py`, which reads sample → score → select → train → evaluate),
the checks before a run (`preflight.py`), the demo, and the public functions behind the commands
(`commands/`). Imports every layer below; only `rsft.cli` sits above.
"""
