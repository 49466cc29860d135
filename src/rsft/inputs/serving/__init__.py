"""Talking to OpenAI-compatible servers: a client (client.py) and `vllm serve` started by rsft (managed.py)."""
