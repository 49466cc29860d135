"""Sampling engines: one file per engine, all behind the `Engine` protocol."""

from rsft.sampling.base import Engine, SamplingParams, build_engine, sample_seed

__all__ = ["Engine", "SamplingParams", "build_engine", "sample_seed"]
