"""Per-layer facts of a finished FINN build: one :class:`~flow.artifacts.LayerReport` per HW layer of the
final graph, in graph order, with the A2Q data of its sidecar record and FINN's own estimates."""

from __future__ import annotations

import json
from pathlib import Path

from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from flow.artifacts import PROP_ACCUMULATORS, LayerReport, Sidecar, decisions_from_json
from flow.core import accumulator as acc
from flow.finn.transformations import is_dot_product_layer, layer_weights_by_channel

FINN_DOMAIN = "finn.custom_op.fpgadataflow"
ESTIMATE_FILES = ("estimate_layer_resources.json", "estimate_layer_cycles.json", "estimate_network_performance.json")


def _attr(inst, name):
    try:
        return inst.get_nodeattr(name)
    except Exception:  # qonnx raises AttributeError or a plain Exception for an unknown attribute
        return None


def read_finn_report(report_dir: Path, name: str) -> dict:
    path = Path(report_dir) / name
    return json.loads(path.read_text()) if path.is_file() else {}


def layer_reports(model: ModelWrapper, sidecar: Sidecar, finn_report_dir: Path) -> list[LayerReport]:
    """One report per HW layer of ``model`` (the final FINN graph), in graph order."""
    resources = read_finn_report(finn_report_dir, "estimate_layer_resources.json")
    cycles = read_finn_report(finn_report_dir, "estimate_layer_cycles.json")
    decisions = decisions_from_json(model.get_metadata_prop(PROP_ACCUMULATORS))
    by_fingerprint = sidecar.by_fingerprint()
    rows = []
    for node in model.graph.node:
        if not node.domain.startswith(FINN_DOMAIN):
            continue
        inst = getCustomOp(node)
        estimate = resources.get(node.name, {})
        row = LayerReport(
            name=node.name, op_type=node.op_type,
            mw=_attr(inst, "MW"), mh=_attr(inst, "MH"), pe=_attr(inst, "PE"), simd=_attr(inst, "SIMD"),
            lut=estimate.get("LUT"), bram18=estimate.get("BRAM_18K"), uram=estimate.get("URAM"),
            dsp=estimate.get("DSP"), cycles=cycles.get(node.name),
        )  # fmt: skip
        if is_dot_product_layer(node):
            weights = layer_weights_by_channel(model, node)
            record = by_fingerprint.get(acc.weight_fingerprint(weights))
            idt, wdt = inst.get_input_datatype(0), inst.get_input_datatype(1)
            decision = decisions.get(node.name)
            k = int(weights.shape[1])
            weight_bits = record.weight_bits if record else wdt.bitwidth()
            row.layer = record.name if record else None
            row.k = k
            row.weight_bits = weight_bits
            row.weight_datatype = wdt.name
            row.input_bits = idt.bitwidth()
            row.input_datatype = idt.name
            row.quantizer = record.quantizer if record else None
            row.acc_bits_target = record.acc_bits_target if record else None
            row.acc_bits_datatype_bound = acc.datatype_bound_bits(k, weight_bits, idt.bitwidth(), idt.signed())
            row.acc_bits_exact = (decision.acc_bits_exact if decision
                                  else acc.exact_acc_bits(weights, idt.bitwidth(), idt.signed()))
            row.acc_datatype = _attr(inst, "accDataType")
            row.acc_source = decision.acc_source if decision else None
            if _attr(inst, "mem_mode") != "external":
                row.weight_memory_depth = int(inst.calc_wmem())
            if not _attr(inst, "noActivation") and len(node.input) > 2:
                row.threshold_datatype = model.get_tensor_datatype(node.input[2]).name
                row.thresholds = int(model.get_initializer(node.input[2]).shape[1])
                row.threshold_rows = int(model.get_initializer(node.input[2]).shape[0])
                row.acc_layers = [record.name] if record and record.acc_bits_target is not None else None
        elif node.op_type.startswith("Thresholding"):
            row.threshold_datatype = model.get_tensor_datatype(node.input[1]).name
            row.input_datatype = inst.get_input_datatype(0).name
            row.mh = _attr(inst, "NumChannels")
            row.thresholds = _attr(inst, "numSteps")
            row.threshold_rows = int(model.get_initializer(node.input[1]).shape[0])
            names = set()
            for producer in accumulating_producers(model, node.input[0]):
                record = by_fingerprint.get(acc.weight_fingerprint(layer_weights_by_channel(model, producer)))
                if record and record.acc_bits_target is not None:
                    names.add(record.name)
            row.acc_layers = sorted(names) or None
        rows.append(row)
    return rows


def accumulating_producers(model: ModelWrapper, tensor: str) -> list:
    """The MVAU/VVAU nodes whose accumulators reach ``tensor`` without being requantized on the way: the
    search walks upstream through every other node (additions, stream copies, FIFOs, padding) and stops at
    a dot-product layer, a Thresholding layer or a graph input."""
    found, seen, todo = [], set(), [tensor]
    while todo:
        producer = model.find_producer(todo.pop())
        if producer is None or producer.name in seen:
            continue
        seen.add(producer.name)
        if is_dot_product_layer(producer):
            found.append(producer)
        elif not producer.op_type.startswith("Thresholding"):
            todo += [name for name in producer.input if model.get_initializer(name) is None]
    return found
