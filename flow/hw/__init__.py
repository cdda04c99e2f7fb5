"""Hardware truth without Vivado: open synthesis and RTL simulation of FINN's RTL layers, deployment files.
Never imports torch. Importing this package prepares FINN's environment (through :mod:`flow.finn`)."""

import flow.finn  # noqa: F401
