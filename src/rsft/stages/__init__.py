"""Layer 5, stages: the stages of a round, one file each, the runner that orders them (runner.py),
what they share (run.py) and where their batches run (executors.py). Imports the layers below."""
