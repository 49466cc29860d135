"""Sampling engines: one file per engine, all behind the `Engine` protocol (base.py); built by engines.py."""
