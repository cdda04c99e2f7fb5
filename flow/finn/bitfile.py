"""Full FINN builds with the Xilinx tools: HLS IP, FIFO sizing, stitched IP, out-of-context synthesis,
bitfile, PYNQ driver and deployment package. Whether the tools exist is decided in
:func:`flow.finn.env.missing_xilinx_tools` alone; without them a build stops after the estimate steps
and says which tool is missing and what it produced.
"""

from __future__ import annotations

import json
from pathlib import Path

from finn.builder.build_dataflow_config import DataflowOutputType, ShellFlowType

from flow.core.config import Board
from flow.core.errors import FlowError
from flow.finn.env import TOOL_SETUP, TOOLS_FOR_SHELL, missing_xilinx_tools

# FINN's own default steps after the estimate reports, in FINN's order.
BITFILE_TAIL_STEPS = [
    "step_assign_ddr_weight_offsets",
    "step_generate_hardware",
    "step_create_stitched_ip",
    "step_measure_rtlsim_performance",
    "step_out_of_context_synthesis",
    "step_prepare_synthesis",
    "step_synthesize_bitfile",
    "step_make_driver",
    "step_deployment_package",
]
BITFILE_OUTPUT_NAMES = ["estimate_reports", "stitched_ip", "out_of_context_synth", "bitfile", "pynq_driver",
                        "deployment_package"]


def bitfile_config(board: Board, estimate_steps: list) -> tuple[list, dict]:
    """Steps and the extra ``DataflowBuildConfig`` fields of a bitfile build for a board preset: FINN's
    Zynq shell (bitfile + PYNQ driver), or for an Alveo card its Vitis shell (xclbin for the board's Vitis
    platform + PYNQ driver for XRT)."""
    extra = {
        "board": board.finn_board,
        "shell_flow_type": ShellFlowType(board.shell_flow),
        "generate_outputs": [DataflowOutputType(name) for name in BITFILE_OUTPUT_NAMES],
    }
    if board.shell_flow == "vitis_alveo":
        extra["vitis_platform"] = board.vitis_platform
    return list(estimate_steps) + BITFILE_TAIL_STEPS, extra


def require_tools_for(outputs: str, produced: list[Path], shell_flow: str = "vivado_zynq"):
    """Raise the flow's clear error when ``outputs`` needs Xilinx tools this machine lacks."""
    missing = missing_xilinx_tools(shell_flow)
    if outputs == "bitfile" and missing:
        listing = "\n  ".join(str(p) for p in produced)
        products, commands, variables = zip(*(TOOL_SETUP[tool] for tool in TOOLS_FOR_SHELL[shell_flow]))
        raise FlowError(
            f"outputs 'bitfile' need the Xilinx tools, and this machine lacks: {', '.join(missing)} "
            f"(source the settings64.sh of {', '.join(products)} so that "
            + ", ".join(f"`{command}`" for command in commands)
            + f" are on PATH and {'/'.join(variables)} are set). The build stopped after the estimate steps; it "
            "produced:\n  " + listing
        )


def vivado_figures(finn_report_dir: Path) -> dict:
    """Vivado's out-of-context synthesis figures of a bitfile build (empty when absent)."""
    path = Path(finn_report_dir) / "ooc_synth_and_timing.json"
    if not path.is_file():
        return {}
    ooc = json.loads(path.read_text())
    bram18 = ooc.get("BRAM_18K")
    if bram18 is None and ooc.get("BRAM_36K") is not None:
        bram18 = 2 * float(ooc["BRAM_36K"])
    return {
        "lut_vivado": ooc.get("LUT"),
        "ff_vivado": ooc.get("FF"),
        "bram18_vivado": bram18,
        "dsp_vivado": ooc.get("DSP"),
        "uram_vivado": ooc.get("URAM"),
        "wns_ns": ooc.get("WNS"),
        "fmax_mhz": ooc.get("fmax_mhz"),
    }
