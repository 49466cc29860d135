"""Loading prompts and rendering them for models and trainers."""
