"""Experiments over many builds (sweeps, Pareto searches) and the executor that runs their points."""
