"""The FINN side of the flow: FINN's environment, the flow's graph rewrites and build steps, the FINN
build itself, the FINN-vs-QONNX check and the Vivado-only tail. Never imports torch.

Importing this package prepares FINN's environment (:func:`flow.finn.env.prepare_finn`), which FINN
needs before any of its modules is imported.
"""

from flow.finn.env import prepare_finn

prepare_finn()
