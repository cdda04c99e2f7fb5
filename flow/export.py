"""QONNX export with the exact A2Q integer weights, verified, plus the per-layer sidecar JSON.

Brevitas' exporter writes a layer's *float* weight with the post-scale and ROUND, which loses the
A2Q pre-scale and round-to-zero: the exported integers differ from the trained ones and can break
the l1 bound. The fix used here: on a deep copy, every quantized layer's weight parameter is
replaced by its quantized value ``q * s``; the post-scale ``s`` does not depend on the weight, so the
exported ``Quant(q * s, s)`` reproduces ``q`` exactly. The export is then checked against the
original torch model and every A2Q layer's integers against its l1 budget.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from brevitas.quant.base import AccumulatorAwareWeightQuant, AccumulatorAwareZeroCenterWeightQuant
from torch import nn

from flow import accumulator as acc
from flow.errors import FlowError
from flow.transformations import IntegerInputFromQuant, graph_input_scale, to_graph_input

SIDECAR_SUFFIX = ".a2q.json"
# Exported and torch outputs must agree to float32 rounding of the same integer arithmetic.
EXPORT_TOLERANCE = 1e-4


def weight_fingerprint(weights_int: np.ndarray) -> str:
    """Layout-independent key of an integer weight tensor: K and the per-channel l1 norms.

    Survives FINN's transposes and im2col reordering (both keep channels, permute inputs).
    """
    w = np.asarray(weights_int).reshape(len(weights_int), -1)
    key = f"{w.shape[1]}:" + ",".join(str(int(v)) for v in acc.weight_l1_norms(w))
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def layer_quantizer(layer: nn.Module) -> str:
    injector = layer.weight_quant.quant_injector
    if issubclass(injector, AccumulatorAwareZeroCenterWeightQuant):
        return "a2q+"
    if issubclass(injector, AccumulatorAwareWeightQuant):
        return "a2q"
    return "baseline"


def quant_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Brevitas layers with a weight quantizer (QuantLinear, QuantConv2d, ...), by module name."""
    return {
        name: module
        for name, module in model.named_modules()
        if hasattr(module, "weight_quant") and hasattr(module, "quant_weight") and module.weight_quant.is_quant_enabled
    }


@torch.no_grad()
def forward_once(model: nn.Module, sample: torch.Tensor, hooks: list) -> None:
    """One eval-mode forward pass of ``sample`` to feed ``hooks`` (handles); afterwards the hooks are
    removed and the model's training mode is restored, also when the pass fails."""
    was_training = model.training
    model.eval()
    try:
        model(sample)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)


@torch.no_grad()
def capture_quant_layers(model: nn.Module, sample: torch.Tensor) -> dict[str, dict]:
    """Run ``sample`` through ``model`` (eval mode) and record, per quantized layer, the integer
    weights, their scale and the quantized input's bit width and signedness."""
    layers = quant_layers(model)
    if not layers:
        raise FlowError("the model has no Brevitas quantized layer (QuantLinear/QuantConv2d with weight_quant)")
    seen: dict[str, dict] = {}
    hooks = []

    def input_hook(name):
        def hook(module, inputs, output):
            if not hasattr(output, "bit_width") or output.bit_width is None:
                raise FlowError(
                    f"layer {name} receives an unquantized input: give it input_quant= or let the previous "
                    "activation return a quant tensor (return_quant_tensor=True)"
                )
            seen[name] = {"quant_input": output}

        return hook

    for name, layer in layers.items():
        hooks.append(layer.input_quant.register_forward_hook(input_hook(name)))
    forward_once(model, sample, hooks)
    records = {}
    for name, layer in layers.items():
        if name not in seen:
            raise FlowError(f"layer {name} was not used by the forward pass")
        quant_input = seen[name]["quant_input"]
        quant_weight = layer.quant_weight(quant_input=quant_input)
        weights_ratio = (quant_weight.value / quant_weight.scale).detach().cpu().numpy()
        if not np.isfinite(weights_ratio).all():
            raise FlowError(f"layer {name}: quantized weights are not finite (are its float weights all zero?)")
        weights_int = np.round(weights_ratio).astype(np.int64)
        records[name] = {
            "layer": layer,
            "weights_int": weights_int,
            "weight_value": quant_weight.value.detach().clone(),
            "weight_bits": int(quant_weight.bit_width),
            "input_bits": int(quant_input.bit_width),
            "input_signed": bool(quant_input.signed),
        }
    return records


def layer_metadata(name: str, record: dict) -> dict:
    """One sidecar entry: shapes, widths, target P and the bounds that hold for these weights."""
    layer = record["layer"]
    weights_int = record["weights_int"]
    channels = weights_int.shape[0]
    flat = weights_int.reshape(channels, -1)
    k = flat.shape[1]
    quantizer = layer_quantizer(layer)
    acc_bits_target = int(layer.weight_quant.quant_injector.accumulator_bit_width) if quantizer != "baseline" else None
    n, m, signed = record["input_bits"], record["weight_bits"], record["input_signed"]
    bound = acc.l1_bound(quantizer, acc_bits_target, n, signed) if acc_bits_target else None
    l1_max = int(acc.weight_l1_norms(flat).max())
    groups = getattr(layer, "groups", 1)
    return {
        "name": name,
        "op": type(layer).__name__,
        "depthwise": bool(groups > 1 and groups == channels),
        "k": int(k),
        "channels": int(channels),
        "weight_bits": m,
        "input_bits": n,
        "input_signed": signed,
        "quantizer": quantizer,
        "acc_bits_target": acc_bits_target,
        "l1_bound": bound,
        "weight_l1_norm_max": l1_max,
        "l1_bound_ok": None if bound is None else bool(l1_max <= bound),
        "acc_bits_datatype_bound": acc.datatype_bound_bits(k, m, n, signed),
        "acc_bits_exact": acc.exact_acc_bits(flat, n, signed),
        "zero_weights": bool(l1_max == 0),
        "fingerprint": weight_fingerprint(flat),
    }


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
        found[weight_fingerprint(flat)] = flat
    return found


def export_qonnx_exact(
    model: nn.Module,
    sample: torch.Tensor,
    onnx_path: Path,
    extra_meta: dict | None = None,
    check_inputs: torch.Tensor | None = None,
) -> dict:
    """Export ``model`` to QONNX at ``onnx_path`` with the exact integer weights and verify it.

    ``sample`` (batch 1) fixes the exported input shape; the export is compared with torch on each
    of ``check_inputs`` (default: ``sample``).

    Writes ``<onnx_path>.a2q.json`` (the sidecar) and returns its content, which includes
    ``export_check: {max_abs_diff, l1_bound_ok, weights_exact}``. Raises FlowError if the
    export differs from torch or an A2Q layer breaks its l1 budget.
    """
    from brevitas.export import export_qonnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.util.cleanup import cleanup_model

    onnx_path = Path(onnx_path)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    records = capture_quant_layers(model, sample)
    layers_meta = [layer_metadata(name, record) for name, record in records.items()]
    for meta in layers_meta:
        if meta["zero_weights"]:
            raise FlowError(
                f"layer {meta['name']}: every weight quantized to zero at P={meta['acc_bits_target']} "
                f"(K={meta['k']}, N={meta['input_bits']}); raise P or keep this layer outside A2Q"
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

    input_name = wrapper.graph.input[0].name
    output_name = wrapper.graph.output[0].name
    max_abs_diff = 0.0
    for one in check_inputs if check_inputs is not None else sample:
        with torch.no_grad():
            expected = model(one[None])
        expected = (expected.value if hasattr(expected, "value") else expected).detach().numpy()
        produced = execute_onnx(wrapper, {input_name: to_graph_input(wrapper, one[None].detach().numpy())})[output_name]
        max_abs_diff = max(max_abs_diff, float(np.abs(produced - expected).max()))

    onnx_ints = onnx_weight_ints(wrapper)
    weights_exact = all(
        meta["fingerprint"] in onnx_ints and np.array_equal(onnx_ints[meta["fingerprint"]], records[meta["name"]]["weights_int"].reshape(meta["channels"], -1))
        for meta in layers_meta
    )
    l1_ok = all(meta["l1_bound_ok"] is not False for meta in layers_meta)
    sidecar = {
        **(extra_meta or {}),
        "onnx": onnx_path.name,
        "input_shape": list(sample.shape[1:]),
        "input_datatype": wrapper.get_tensor_datatype(input_name).name,
        "input_scale": input_scale,
        "layers": layers_meta,
        "export_check": {"max_abs_diff": max_abs_diff, "l1_bound_ok": l1_ok, "weights_exact": weights_exact},
    }
    sidecar_path(onnx_path).write_text(json.dumps(sidecar, indent=2))
    if not l1_ok:
        bad = [m["name"] for m in layers_meta if m["l1_bound_ok"] is False]
        raise FlowError(f"layers {bad} break their A2Q l1 budget; the accumulator guarantee does not hold")
    if not weights_exact or max_abs_diff > EXPORT_TOLERANCE:
        raise FlowError(
            f"exported QONNX differs from the torch model (max abs diff {max_abs_diff:.3g}, "
            f"integer weights exact: {weights_exact}); see {onnx_path}"
        )
    return sidecar


def sidecar_path(onnx_path: Path) -> Path:
    return Path(str(onnx_path) + SIDECAR_SUFFIX)


def load_sidecar(onnx_path: Path) -> dict | None:
    """The sidecar of an exported ONNX file, or None when there is none."""
    path = sidecar_path(onnx_path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise FlowError(f"sidecar {path} is not valid JSON: {err}") from err
