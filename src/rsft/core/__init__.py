"""Layer 1, core: what every other layer stands on and that imports nothing of rsft above it.

Errors, the typed records passed between stages, the config schema, the one registry (which
names the other layers' factories as strings, so it imports none of them), the run directory's
files and layout, the metrics schema, progress bars and the run lock.
"""
