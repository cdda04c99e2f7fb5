"""The documented Python entry points, kept where the README has always pointed:
``from flow.build import build_module`` (bring your own Brevitas model), ``build`` and ``BuildOptions``."""

from flow.options import BuildOptions
from flow.pipeline import build, build_module

__all__ = ["BuildOptions", "build", "build_module"]
