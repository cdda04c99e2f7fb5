"""Experiments built from whole builds and trainings: sweeps across P, the overflow study."""
