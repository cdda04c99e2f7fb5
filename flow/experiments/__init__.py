"""Experiments built from whole builds and trainings: sweeps across P, the overflow study, and the execution
layer that runs their points here, on a local Ray instance or on a Ray cluster."""
