"""The FINN-vs-QONNX check: the final FINN graph, executed in Python, against the QONNX export.

FINN's specialized ``*_hls``/``*_rtl`` nodes refuse Python execution, so the graph runs as a copy with
the HW-abstract op types (:func:`python_executable_copy`). The reference is the QONNX export evaluated
in float64 (:mod:`flow.finn.reference`). Classification graphs end in TopK/LabelSelect, whose label
output hides most errors; their check compares the integers that enter TopK/LabelSelect with the
reference's logits in units of the output quantizer's step, which must agree up to the one constant
offset FINN folds into TopK.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx

from flow.artifacts import FinnCheck
from flow.core.numerics import compare_quantized
from flow.finn.reference import float64_model, output_step, run_float64
from flow.finn.transformations import to_graph_input

FINN_DOMAIN = "finn.custom_op.fpgadataflow"
LABEL_OPS = ("LabelSelect", "TopK")
# node attributes that say how a layer is built, not what it computes (folding, memories, code generation)
BUILD_ATTRIBUTES = {
    "PE", "SIMD", "parallel_window", "ram_style", "ram_style_thresholds", "ram_style_mask", "mem_mode",
    "runtime_writeable_weights", "resType", "mac_resource", "depth_trigger_uram", "depth_trigger_bram",
    "impl_style", "preferred_impl_style", "code_gen_dir_cppsim", "code_gen_dir_ipgen", "ipgen_path", "ip_path",
    "ip_vlnv", "executable_path", "res_estimate", "res_hls", "res_synth", "cycles_estimate", "cycles_rtlsim",
    "rtlsim_trace", "rtlsim_so", "partition_id", "device_id", "slr", "mem_port", "inFIFODepths", "outFIFODepths",
}  # fmt: skip


def python_executable_copy(model: ModelWrapper) -> ModelWrapper:
    """A copy of a FINN graph whose specialized ``*_hls``/``*_rtl`` nodes are turned back into their
    HW-abstract ops (which execute in Python), keeping every attribute."""
    clone = ModelWrapper(copy.deepcopy(model.model))
    for node in clone.graph.node:
        if node.domain.startswith(FINN_DOMAIN):
            node.domain = FINN_DOMAIN
            for suffix in ("_hls", "_rtl"):
                if node.op_type.endswith(suffix):
                    node.op_type = node.op_type[: -len(suffix)]
    return clone


def function_digest(model: ModelWrapper) -> str:
    """Digest of what a FINN graph computes: its HW-abstract nodes without the attributes that only say how
    a layer is built (:data:`BUILD_ATTRIBUTES`), its initializers and tensor types. Two builds that differ
    only in folding have the same digest."""
    clone = python_executable_copy(model)
    for node in clone.graph.node:
        kept = [attribute for attribute in node.attribute if attribute.name not in BUILD_ATTRIBUTES]
        del node.attribute[:]
        node.attribute.extend(kept)
    return hashlib.sha256(clone.graph.SerializeToString(deterministic=True)).hexdigest()[:24]


def to_layout(array: np.ndarray, shape) -> np.ndarray:
    """``array`` in ``shape``: unchanged, NCHW <-> NHWC when that is the difference, else reshaped."""
    shape = tuple(shape)
    if array.shape == shape:
        return array
    if array.ndim == 4 and len(shape) == 4:
        if (array.shape[0], array.shape[2], array.shape[3], array.shape[1]) == shape:
            return array.transpose(0, 2, 3, 1)
        if (array.shape[0], array.shape[3], array.shape[1], array.shape[2]) == shape:
            return array.transpose(0, 3, 1, 2)
    return array.reshape(shape)


def _label_input(model: ModelWrapper) -> str | None:
    """Name of the tensor entering the graph's TopK/LabelSelect, if it has one."""
    for node in model.graph.node:
        if node.op_type.startswith(LABEL_OPS):
            return node.input[0]
    return None


def finn_check(final_model_path: Path, onnx_path: Path, inputs: np.ndarray, task: str) -> tuple[FinnCheck, np.ndarray, np.ndarray]:
    """Run the final FINN graph in Python against the QONNX export on the same (float) ``inputs``.

    Returns the check, the graph inputs (integers of the FINN graph's input type) and the FINN graph's
    outputs for them (batch first).
    """
    reference = ModelWrapper(str(onnx_path))
    reference64 = float64_model(reference)
    step = output_step(reference)
    finn_model = python_executable_copy(ModelWrapper(str(final_model_path)))
    ref_in = reference.graph.input[0].name
    finn_in, finn_out = finn_model.graph.input[0].name, finn_model.graph.output[0].name
    finn_shape = finn_model.get_tensor_shape(finn_in)
    label_tensor = _label_input(finn_model) if task == "classification" else None
    graph_inputs, finn_outputs, produced, expected = [], [], [], []
    for sample in inputs:
        graph_input = to_layout(to_graph_input(reference, sample[None]), finn_shape)
        reference_out = run_float64(reference64, to_layout(graph_input, reference.get_tensor_shape(ref_in)))
        context = execute_onnx(finn_model, {finn_in: graph_input}, return_full_exec_context=label_tensor is not None)
        graph_inputs.append(graph_input)
        finn_outputs.append(context[finn_out])
        produced.append(context[label_tensor] if label_tensor is not None else context[finn_out])
        expected.append(reference_out)
    if label_tensor is not None and step is not None:
        scores = np.stack([p.reshape(-1) for p in produced]).astype(np.float64)
        logits = np.stack([e.reshape(-1) for e in expected])
        # FINN absorbs the output quantizer's scale and zero-point offset into TopK: its integers equal
        # logits / step up to one constant offset
        offset = float(np.round(np.median(logits / step - scores)))
        comparison = compare_quantized((scores + offset) * step, logits, step)
        compared = "integer logits"
    elif label_tensor is not None:
        # no quantized logits to compare: the labels, which a float-scored classifier leaves to TopK
        labels = np.stack([np.asarray(o).reshape(-1) for o in finn_outputs])
        reference_labels = np.stack([np.argsort(-e.reshape(-1), kind="stable")[: labels.shape[1]] for e in expected])
        comparison = compare_quantized(labels, reference_labels, 1.0)
        comparison.passed = bool(np.array_equal(labels, reference_labels))
        compared = "top-1 label"
    else:
        comparison = compare_quantized(np.stack([to_layout(p, e.shape) for p, e in zip(produced, expected)]),
                                       np.stack(expected), step)
        compared = "output"
    check = FinnCheck(max_abs_diff=comparison.max_abs_diff, samples=int(len(inputs)), passed=comparison.passed,
                      compared=compared, mismatches=comparison.mismatches)
    return check, np.stack(graph_inputs), np.stack(finn_outputs)
