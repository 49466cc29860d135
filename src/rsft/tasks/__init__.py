"""Tasks: prompts plus their default scorer. Built-ins and a user's dataset are the same kind of thing."""

from rsft.tasks.base import Task, load_task

__all__ = ["Task", "load_task"]
