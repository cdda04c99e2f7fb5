"""Hardware truth for a build: open synthesis of every RTL layer and the RTL-simulation check of the
A2Q guarantee on every MVAU_rtl, as per-layer results keyed by node name.

Synthesis results are cached by the layers' generated HDL (``flow.hw.synth``), so rebuilding or sweeping
never synthesizes the same layer twice; jobs run in parallel on the available cores.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
from finn.util.fpgadataflow import is_rtl_node
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.custom_op.registry import getCustomOp

from flow.artifacts import RtlsimCheck
from flow.core.accumulator import exact_acc_bits
from flow.core.config import Board
from flow.core.errors import FlowError
from flow.core.log import log
from flow.finn.check import python_executable_copy
from flow.finn.transformations import layer_weights_by_channel
from flow.hw.rtlsim import adversarial_inputs, rtlsim_node
from flow.hw.synth import SynthJob, generate_layer_hdl, synthesize_layers, yosys_family_for_part


def rtl_nodes(model) -> list:
    return [node for node in model.graph.node if is_rtl_node(node)]


def synthesize_build(final_model_path: Path, board: Board, work_dir: Path, cache_dir: Path) -> dict[str, dict]:
    """Synthesize each RTL layer of the final FINN graph out of context; ``{node name: figures}``, where a
    layer Yosys fails on has ``{"error": <reason>}`` (the build goes on with FINN's estimate for it)."""
    model = ModelWrapper(str(final_model_path))
    nodes = rtl_nodes(model)
    if not nodes:
        log("[synth] no RTL layer in this build (HLS layers keep FINN's estimates)")
        return {}
    family = yosys_family_for_part(board.fpga_part)
    jobs = []
    for node in nodes:
        hdl_dir = generate_layer_hdl(model, node, work_dir / "hdl", fpgapart=board.fpga_part, clk_ns=board.clock_ns)
        jobs.append(SynthJob(hdl_dir=hdl_dir, top_module=None, part_family=family, cache_dir=cache_dir, name=node.name))
    log(f"[synth] {len(jobs)} RTL layers, Yosys synth_xilinx -family {family}, {os.cpu_count()} workers")
    results = synthesize_layers(jobs, log=log, keep_going=True)
    return {node.name: result for node, result in zip(nodes, results)}


def rtlsim_check_build(final_model_path: Path, graph_inputs: np.ndarray, work_dir: Path, fpgapart: str) -> dict[str, RtlsimCheck]:
    """RTL simulation (Verilator) of every MVAU_rtl and Thresholding_rtl layer of the final graph.

    * ``samples_exact``: on the activations that ``graph_inputs`` produce at the layer, the RTL output
      equals FINN's Python execution bit for bit.
    * MVAU_rtl only: on the adversarial inputs that reach the exact accumulator extremes, the layer at
      its accumulator width P is exact (``exact_at_p``); where the exact minimum equals P, simulating
      P - 1 bits gets at least one output wrong (``overflow_detected_at_p_minus_1``: the width is tight).
    Returns ``{node name: check}``; a FlowError if the RTL contradicts the analysis.
    """
    model = ModelWrapper(str(final_model_path))
    targets = [node for node in model.graph.node if node.op_type in ("MVAU_rtl", "Thresholding_rtl")]
    if not targets:
        return {}
    executable = python_executable_copy(model)
    contexts = [execute_onnx(executable, {executable.graph.input[0].name: x}, return_full_exec_context=True)
                for x in graph_inputs]
    checks = {}
    for node in targets:
        layer_in = np.stack([context[node.input[0]] for context in contexts])
        layer_out = np.stack([context[node.output[0]] for context in contexts])
        log(f"[rtlsim] {node.name}: {len(layer_in)} sample inputs")
        simulated = rtlsim_node(model, node, layer_in, work_dir / "rtlsim" / node.name, fpgapart=fpgapart)
        check = RtlsimCheck(samples=int(len(layer_in)), passed=False,
                            samples_exact=bool(np.array_equal(simulated.reshape(layer_out.shape), layer_out)))
        if node.op_type == "MVAU_rtl":
            inst = getCustomOp(node)
            idt = inst.get_input_datatype(0)
            acc_dtype = DataType[inst.get_nodeattr("accDataType")]
            width = acc_dtype.bitwidth()
            weights = layer_weights_by_channel(model, node)
            exact = exact_acc_bits(weights, idt.bitwidth(), idt.signed())
            adversarial = adversarial_inputs(weights, idt, layout="channels_k").astype(np.float32)
            expected = adversarial.astype(np.float64) @ weights.T.astype(np.float64)
            log(f"[rtlsim] {node.name}: {len(adversarial)} adversarial inputs at ACCU_WIDTH={width} (exact minimum {exact})")
            at_p = rtlsim_node(model, node, adversarial, work_dir / "rtlsim" / node.name, fpgapart=fpgapart)
            check.acc_bits, check.acc_bits_exact = width, exact
            check.exact_at_p = bool(np.array_equal(at_p, expected))
            if acc_dtype.signed() and exact == width:
                narrow = rtlsim_node(model, node, adversarial, work_dir / "rtlsim" / node.name, acc_bits=width - 1,
                                     fpgapart=fpgapart)
                check.overflow_detected_at_p_minus_1 = bool(not np.array_equal(narrow, expected))
        check.passed = check.samples_exact and check.exact_at_p is not False \
            and check.overflow_detected_at_p_minus_1 is not False
        checks[node.name] = check
        if not check.passed:
            raise FlowError(f"RTL simulation of {node.name} contradicts FINN's execution or the accumulator analysis: "
                            f"{asdict(check)}")
    return checks
