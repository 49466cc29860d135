"""Training on what selection kept (SFT), and beside it, preference models."""
