"""Tasks: prompts plus their default scorer. Built-ins and a user's dataset are the same kind of thing."""
