"""Agent tasks: environments whose tools run in the sandbox (see rsft.sampling.rollout)."""
