"""A2Q -> FINN flow: accumulator math, export, FINN build steps, reports."""
