"""Public functions behind the CLI commands that are not the round loop: best-of-N, scoring a file, exports, evaluation."""
