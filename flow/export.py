"""QONNX export with the exact A2Q integer weights, verified, plus the per-layer sidecar.

Brevitas' exporter writes a layer's *float* weight with the post-scale and ROUND, which loses the
A2Q pre-scale and round-to-zero: the exported integers differ from the trained ones and can break
the l1 bound. The fix used here: on a deep copy, every quantized layer's weight parameter is
replaced by its quantized value ``q * s``; the post-scale ``s`` does not depend on the weight, so the
exported ``Quant(q * s, s)`` reproduces ``q`` exactly. The export is then checked against the
original torch model (:func:`flow.core.numerics.compare_quantized`, the QONNX side evaluated in float64)
and every constrained layer's integers against its budget.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from brevitas.export import export_qonnx
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.cleanup import cleanup_model
from torch import nn

from flow.artifacts import ExportCheck, LayerRecord, Sidecar
from flow.core import accumulator as acc
from flow.core.errors import FlowError
from flow.core.numerics import compare_quantized
from flow.finn.reference import float64_model, output_step, run_float64
from flow.finn.transformations import IntegerInputFromQuant, graph_input_scale, to_graph_input
from models.inspect import capture_quant_layers, layer_acc_bits, layer_quantizer, quant_layers


def layer_record(name: str, record: dict, acc_bits_target: int | None = None, quantizer: str | None = None) -> LayerRecord:
    """The sidecar record of one captured layer: shapes, widths, target P and the bounds that hold for its
    integers. ``acc_bits_target``/``quantizer`` override what the layer's own quantizer says (a
    post-training method constrains a layer whose quantizer knows no P)."""
    layer = record["layer"]
    flat = record["weights_int"].reshape(record["weights_int"].shape[0], -1)
    channels, k = flat.shape
    own_quantizer = layer_quantizer(layer)
    own_target = layer_acc_bits(layer)
    if acc_bits_target is not None and own_target is not None and acc_bits_target != own_target:
        raise FlowError(f"layer {name}: its {own_quantizer} quantizer targets P={own_target}, not {acc_bits_target}")
    target = own_target if own_target is not None else acc_bits_target
    n, m, signed = record["input_bits"], record["weight_bits"], record["input_signed"]
    bound = acc.l1_bound(own_quantizer, target, n, signed) if own_target is not None else None
    l1_max = int(acc.weight_l1_norms(flat).max())
    exact = acc.exact_acc_bits(flat, n, signed)
    if bound is not None:
        bound_ok = bool(l1_max <= bound)
    elif target is not None:  # no l1 budget of its own: the exact range is the certificate
        bound_ok = bool(exact <= target)
    else:
        bound_ok = None
    groups = getattr(layer, "groups", 1)
    return LayerRecord(
        name=name,
        op=type(layer).__name__,
        depthwise=bool(groups > 1 and groups == channels),
        k=int(k),
        channels=int(channels),
        weight_bits=m,
        input_bits=n,
        input_signed=signed,
        quantizer=quantizer or own_quantizer,
        acc_bits_target=target,
        l1_bound=bound,
        weight_l1_norm_max=l1_max,
        l1_bound_ok=bound_ok,
        acc_bits_datatype_bound=acc.datatype_bound_bits(k, m, n, signed),
        acc_bits_exact=exact,
        zero_weights=bool(l1_max == 0),
        fingerprint=acc.weight_fingerprint(flat),
    )


def onnx_weight_ints(model_wrapper) -> dict[str, np.ndarray]:
    """Integer weights of every weight ``Quant`` node of a QONNX model, keyed by fingerprint."""
    found = {}
    for node in model_wrapper.graph.node:
        if node.op_type != "Quant":
            continue
        weights = model_wrapper.get_initializer(node.input[0])
        scale = model_wrapper.get_initializer(node.input[1])
        if weights is None or scale is None or weights.ndim < 2:
            continue
        ints = np.round(weights / scale).astype(np.int64)
        consumer = model_wrapper.find_consumer(node.output[0])
        if consumer is not None and consumer.op_type == "MatMul":
            ints = ints.T  # MatMul weights are (k, channels)
        flat = ints.reshape(ints.shape[0], -1)
        found[acc.weight_fingerprint(flat)] = flat
    return found


def export_qonnx_exact(
    model: nn.Module,
    sample: torch.Tensor,
    onnx_path: Path,
    meta: dict | None = None,
    check_inputs: torch.Tensor | None = None,
    acc_bits_targets: dict[str, int] | None = None,
    quantizer_label: str | None = None,
) -> Sidecar:
    """Export ``model`` to QONNX at ``onnx_path`` with the exact integer weights and verify it.

    ``sample`` (batch 1) fixes the exported input shape; the export is compared with torch on each
    of ``check_inputs`` (default: ``sample``). ``meta`` sets :class:`~flow.artifacts.Sidecar` fields
    (model, quantizer, task, weights, test metrics, ...). ``acc_bits_targets`` gives a target P to layers
    whose quantizer has none (by module name; ``quantizer_label`` then names their quantizer).

    Writes ``<onnx_path>.a2q.json`` (the sidecar) and returns it. Raises FlowError if the export differs
    from torch beyond float-order rounding ties, or a constrained layer breaks its budget.
    """
    onnx_path = Path(onnx_path)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    records = capture_quant_layers(model, sample)
    unknown = sorted(set(acc_bits_targets or {}) - set(records))
    if unknown:
        raise FlowError(f"accumulator targets name no quantized layer: {unknown}; layers: {sorted(records)}")
    layers = [layer_record(name, record, (acc_bits_targets or {}).get(name),
                           quantizer_label if name in (acc_bits_targets or {}) else None)
              for name, record in records.items()]
    for layer in layers:
        if layer.zero_weights:
            raise FlowError(
                f"layer {layer.name}: every weight quantized to zero at P={layer.acc_bits_target} "
                f"(K={layer.k}, N={layer.input_bits}); raise P or keep this layer outside A2Q"
            )

    export_model = copy.deepcopy(model)
    export_layers = quant_layers(export_model)
    with torch.no_grad():
        for name, record in records.items():
            export_layers[name].weight.copy_(record["weight_value"])
    export_qonnx(export_model, input_t=sample, export_path=str(onnx_path), dynamo=False, opset_version=13)
    wrapper = cleanup_model(ModelWrapper(str(onnx_path)))
    first = next(iter(records.values()))
    binary_input = first["input_bits"] == 1 and not first["input_signed"]
    wrapper = wrapper.transform(IntegerInputFromQuant(unsigned_binary=binary_input))
    input_scale = graph_input_scale(wrapper)
    wrapper.save(str(onnx_path))

    inputs = check_inputs if check_inputs is not None else sample
    reference64 = float64_model(wrapper)
    produced, expected = [], []
    for one in inputs:
        with torch.no_grad():
            out = model(one[None])
        expected.append((out.value if hasattr(out, "value") else out).detach().numpy())
        produced.append(run_float64(reference64, to_graph_input(wrapper, one[None].detach().numpy())))
    comparison = compare_quantized(np.stack(produced), np.stack(expected), output_step(wrapper))

    onnx_ints = onnx_weight_ints(wrapper)
    weights_exact = all(
        layer.fingerprint in onnx_ints
        and np.array_equal(onnx_ints[layer.fingerprint], records[layer.name]["weights_int"].reshape(layer.channels, -1))
        for layer in layers
    )
    l1_ok = all(layer.l1_bound_ok is not False for layer in layers)
    input_name = wrapper.graph.input[0].name
    sidecar = Sidecar(
        **(meta or {}),
        layers=layers,
        onnx=onnx_path.name,
        input_shape=list(sample.shape[1:]),
        input_datatype=wrapper.get_tensor_datatype(input_name).name,
        input_scale=input_scale,
        export_check=ExportCheck(max_abs_diff=comparison.max_abs_diff, l1_bound_ok=l1_ok, weights_exact=weights_exact,
                                 samples=int(len(inputs))),
    )
    sidecar.write(onnx_path)
    if not l1_ok:
        bad = [layer.name for layer in layers if layer.l1_bound_ok is False]
        raise FlowError(f"layers {bad} break their accumulator budget; the accumulator guarantee does not hold")
    if not weights_exact or not comparison.passed:
        raise FlowError(
            f"exported QONNX differs from the torch model (max abs diff {comparison.max_abs_diff:.3g}, "
            f"{comparison.mismatches} of {comparison.elements} output elements differ, {comparison.one_step_diffs} by one "
            f"output step where at most {comparison.allowed_one_step_diffs} rounding-tie flips are allowed; integer "
            f"weights exact: {weights_exact}); see {onnx_path}"
        )
    return sidecar
