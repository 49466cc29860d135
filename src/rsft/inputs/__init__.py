"""Layer 2, inputs: what a run works on. Prompts and their files, the tasks (ctf, the agent task,
included), models and tokenizers (and GGUF conversion), the client of a model server, and the
sandbox in which tasks' and scorers' programs run. Imports only `rsft.core`.
"""
