"""FINN (finn-plus) with or without the Xilinx tools, set up and checked in one place.

:func:`prepare_finn` gives FINN its build folder (``FINN_BUILD_DIR``) and settings; it runs when
``flow.finn`` is imported, so every module of the flow that imports FINN goes through it.
Without Vivado, ``import finn.builder.build_dataflow`` fails on a type-hint import
(``from finn.xsi import SimEngine``, whose lookup demands ``XILINX_VIVADO``), and the builder's exit
path asks for the Vivado root only to record a tool version. Both are bridged in
:func:`import_builder`, for this process only; nothing installed is modified. Everything that truly
needs Vivado stays behind :func:`xilinx_tools`, the single toolchain check of the flow.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from flow.core.errors import FlowError

NO_VIVADO = "not-installed"
DEFAULT_BUILD_DIR = Path(tempfile.gettempdir()) / "finn_build"


def xilinx_tools() -> dict[str, str | None]:
    """Where the Xilinx tools are (None where missing): the single toolchain check of the flow."""
    vivado_root = os.environ.get("XILINX_VIVADO")
    return {
        "vivado": vivado_root if vivado_root and shutil.which("vivado") else None,
        "vitis_hls": os.environ.get("XILINX_HLS") or os.environ.get("HLS_PATH") if shutil.which("vitis_hls") else None,
        "vitis": os.environ.get("XILINX_VITIS") if shutil.which("v++") else None,
    }


# The tools a bitfile build needs, per FINN shell: Vitis (v++) links the kernel of an Alveo card.
TOOLS_FOR_SHELL = {"vivado_zynq": ("vivado", "vitis_hls"), "vitis_alveo": ("vivado", "vitis_hls", "vitis")}
# How a person makes each tool visible: the product whose settings64.sh to source, the command that must be on
# PATH, the variable that must be set.
TOOL_SETUP = {"vivado": ("Vivado", "vivado", "XILINX_VIVADO"), "vitis_hls": ("Vitis HLS", "vitis_hls", "XILINX_HLS"),
              "vitis": ("Vitis", "v++", "XILINX_VITIS")}


def missing_xilinx_tools(shell_flow: str = "vivado_zynq") -> list[str]:
    """Names of the Xilinx tools a bitfile build for FINN's ``shell_flow`` needs that this machine lacks."""
    tools = xilinx_tools()
    return [name for name in TOOLS_FOR_SHELL[shell_flow] if tools[name] is None]


def prepare_finn() -> Path:
    """Set FINN's build folder (``FINN_BUILD_DIR``, default :data:`DEFAULT_BUILD_DIR`) and its global
    settings before any FINN module needs them; idempotent. Returns the build folder."""
    build_dir = Path(os.environ.get("FINN_BUILD_DIR") or DEFAULT_BUILD_DIR)
    build_dir.mkdir(parents=True, exist_ok=True)
    os.environ["FINN_BUILD_DIR"] = str(build_dir)
    from finn.util import settings

    if getattr(settings, "_SETTINGS", None) is None:
        try:
            settings.get_settings()
        except Exception:  # no settings file: FINN's own defaults for a machine without its CLI
            settings.initialize_dummy_settings()
    if xilinx_tools()["vivado"] is None:
        import finn.xsi

        # Only a type hint of FINN's builder steps needs this name at import time; rtlsim stays unavailable.
        if "SimEngine" not in vars(finn.xsi):
            finn.xsi.SimEngine = type("SimEngine", (), {})
    return build_dir


def finn_rtllib_dir() -> Path:
    """Folder of FINN's RTL library as shipped in the finn-plus wheel."""
    from finn.util.settings import get_settings

    return Path(get_settings().finn_rtllib).resolve()


def import_builder():
    """Return ``(build_dataflow module, DataflowBuildConfig class)``, importable without Vivado."""
    try:
        from finn.builder import build_dataflow
        from finn.builder.build_dataflow_config import DataflowBuildConfig
    except Exception as err:
        raise FlowError(f"cannot import FINN's builder (finn-plus): {err}") from err
    if xilinx_tools()["vivado"] is None:
        # The builder records the Vivado version in metadata_builder.json on exit.
        build_dataflow.get_vivado_root = lambda: NO_VIVADO
    return build_dataflow, DataflowBuildConfig
