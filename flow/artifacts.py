"""Typed hand-offs between the stages of a build, each with a JSON round trip and a format version.

* :class:`Sidecar` (``model.onnx.a2q.json``): what the export knows that ONNX does not hold, per layer
  a :class:`LayerRecord` (K, bit widths, quantizer, target P, l1 budget and bounds, weight fingerprint).
* :class:`AccumulatorDecision`: what the FINN step chose for one MVAU/VVAU node.
* :class:`LayerReport` / :class:`Summary` (``summary.json``): the build report. Its format is documented
  in README.md; fields are only ever added.

The ONNX metadata-property names the stages use to pass data through FINN's builder are the
``PROP_*`` constants here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from flow.core.errors import FlowError

SIDECAR_FORMAT = 1
SUMMARY_FORMAT = 1
SIDECAR_SUFFIX = ".a2q.json"

# ONNX metadata properties (set on the model that enters FINN's builder, read by the flow's steps)
PROP_SIDECAR = "a2q_sidecar"
PROP_ACC_MODE = "a2q_acc_mode"
PROP_TASK = "a2q_task"
PROP_ACCUMULATORS = "a2q_accumulators"
PROP_INPUT_SCALE = "input_scale"
PROP_ALLOW_UNMATCHED = "a2q_allow_unmatched_sidecar"

ACC_MODES = ("exact", "target")
TASKS = ("classification", "super_resolution")


def _from_dict(cls, data: Any, what: str):
    """``cls(**data)`` with a clear error for a non-object, a missing required field or an unknown field
    (unknown fields of a newer format are an error: the reader would drop what it does not know)."""
    if not isinstance(data, dict):
        raise FlowError(f"{what}: expected a JSON object, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise FlowError(f"{what}: unknown fields {unknown}; valid: {sorted(names)}")
    required = [f.name for f in fields(cls) if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [name for name in required if name not in data]
    if missing:
        raise FlowError(f"{what}: missing fields {missing}")
    return cls(**data)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_json_file(path: Path, what: str):
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FlowError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FlowError(f"{what} {path} is not valid JSON: {err}") from None


# --------------------------------------------------------------------------------------------- export


@dataclass
class LayerRecord:
    """One quantized layer as exported: widths in bits, ``k`` the dot-product length."""

    name: str
    op: str
    k: int
    channels: int
    weight_bits: int
    input_bits: int
    input_signed: bool
    quantizer: str  # "a2q", "a2q+", "baseline" or a post-training method ("axe-gpfq", ...)
    acc_bits_target: int | None
    l1_bound: float | None
    weight_l1_norm_max: int
    l1_bound_ok: bool | None
    acc_bits_datatype_bound: int
    acc_bits_exact: int
    zero_weights: bool
    fingerprint: str
    depthwise: bool = False


@dataclass
class ExportCheck:
    """The export against torch: largest output difference (in output units, both sides evaluated in
    float64), whether every constrained layer's integers fit its budget and whether the ONNX integers
    equal Brevitas's."""

    max_abs_diff: float
    l1_bound_ok: bool
    weights_exact: bool
    samples: int | None = None


@dataclass
class Sidecar:
    """What a QONNX file's ``.a2q.json`` sidecar says about the model and each quantized layer."""

    layers: list[LayerRecord]
    model: str | None = None
    quantizer: str | None = None
    acc_bits_target: int | None = None
    task: str = "classification"
    weights: str = "unknown"  # "trained", "untrained", "user" or "unknown"
    weight_bits: int | None = None
    act_bits: int | None = None
    width: float | None = None
    test_top1: float | None = None  # fraction
    test_psnr: float | None = None  # dB
    onnx: str | None = None
    input_shape: list[int] | None = None
    input_datatype: str | None = None
    input_scale: float | None = None
    export_check: ExportCheck | None = None
    sidecar: bool = True  # False: made up for an ONNX file that came without one
    data: dict | None = None  # the data set the weights were trained on: {"path", "digest"}
    format: int = SIDECAR_FORMAT

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict, source: str = "sidecar") -> "Sidecar":
        if not isinstance(data, dict):
            raise FlowError(f"{source}: expected a JSON object")
        version = data.get("format", SIDECAR_FORMAT)
        if version != SIDECAR_FORMAT:
            raise FlowError(f"{source}: sidecar format {version!r} is not supported (this flow reads {SIDECAR_FORMAT})")
        data = dict(data)
        layers = data.pop("layers", None)
        if not isinstance(layers, list):
            raise FlowError(f"{source}: 'layers' must be a list of layer records")
        check = data.pop("export_check", None)
        sidecar = _from_dict(cls, {**data, "layers": []}, source)
        sidecar.layers = [_from_dict(LayerRecord, layer, f"{source}, layer {i}") for i, layer in enumerate(layers)]
        sidecar.export_check = _from_dict(ExportCheck, check, f"{source}, export_check") if check is not None else None
        return sidecar

    @classmethod
    def from_json(cls, text: str, source: str = "sidecar") -> "Sidecar":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise FlowError(f"{source} is not valid JSON: {err}") from None
        return cls.from_dict(data, source)

    def write(self, onnx_path: Path) -> Path:
        path = sidecar_path(onnx_path)
        write_text_atomic(path, self.to_json())
        return path

    @classmethod
    def read(cls, onnx_path: Path) -> "Sidecar | None":
        """The sidecar of an ONNX file, or None when there is none."""
        path = sidecar_path(onnx_path)
        if not path.is_file():
            return None
        return cls.from_dict(read_json_file(path, "sidecar"), f"sidecar {path}")

    def by_fingerprint(self) -> dict[str, LayerRecord]:
        return {layer.fingerprint: layer for layer in self.layers}


def sidecar_path(onnx_path: Path) -> Path:
    return Path(str(onnx_path) + SIDECAR_SUFFIX)


# --------------------------------------------------------------------------------------------- FINN


@dataclass
class AccumulatorDecision:
    """The accumulator chosen for one MVAU/VVAU node: ``acc_range`` is the exact [min, max] of every
    partial sum, ``acc_source`` "target" (INT<P> as trained) or "exact" (smallest type for the range)."""

    layer: str | None
    acc_bits_target: int | None
    acc_bits_exact: int
    acc_range: list[int]
    acc_datatype: str
    acc_source: str


def decisions_to_json(decisions: dict[str, AccumulatorDecision]) -> str:
    return json.dumps({name: dataclasses.asdict(d) for name, d in decisions.items()})


def decisions_from_json(text: str | None) -> dict[str, AccumulatorDecision]:
    data = json.loads(text or "{}")
    return {name: _from_dict(AccumulatorDecision, d, f"accumulator decision of {name}") for name, d in data.items()}


@dataclass
class FinnCheck:
    """The final FINN graph (Python execution) against the QONNX export on the same inputs.

    ``compared`` says what: "output" (the graph outputs), or "integer logits" (classification: the
    integers entering TopK/LabelSelect against the QONNX logits divided by the output scale, equal up
    to the constant offset FINN absorbs into TopK). ``mismatches`` counts differing elements."""

    max_abs_diff: float
    samples: int
    passed: bool
    compared: str
    mismatches: int = 0
    function_digest: str | None = None  # what was checked (flow.finn.check.function_digest)


@dataclass
class FinnOutcome:
    """What a finished FINN build hands to the reports: the final graph, FINN's report folder, one
    :class:`LayerReport` per HW layer and the slowest layer's cycles per frame."""

    final_model: Path
    report_dir: Path
    layers: list["LayerReport"]
    max_cycles: int | None


# --------------------------------------------------------------------------------------------- report


@dataclass
class RtlsimCheck:
    """RTL simulation of one MVAU_rtl/Thresholding_rtl layer (see ``flow.hw.layer_synthesis``)."""

    samples: int
    samples_exact: bool
    passed: bool
    acc_bits: int | None = None
    acc_bits_exact: int | None = None
    exact_at_p: bool | None = None
    overflow_detected_at_p_minus_1: bool | None = None


@dataclass
class LayerReport:
    """One HW layer of the final FINN graph, in graph order. Widths in bits, ``cycles`` per frame;
    ``lut``/``bram18``/``uram``/``dsp`` are FINN's estimates, ``*_synth`` Yosys's counts."""

    name: str
    op_type: str
    layer: str | None = None
    mw: int | None = None
    mh: int | None = None
    pe: int | None = None
    simd: int | None = None
    k: int | None = None
    weight_bits: int | None = None
    weight_datatype: str | None = None
    input_bits: int | None = None
    input_datatype: str | None = None
    quantizer: str | None = None
    acc_bits_target: int | None = None
    acc_bits_datatype_bound: int | None = None
    acc_bits_exact: int | None = None
    acc_datatype: str | None = None
    acc_source: str | None = None
    threshold_datatype: str | None = None
    thresholds: int | None = None  # thresholds per channel (MVAU with activation, Thresholding)
    # rows of the threshold tensor: the channels, or 1 when all channels share one set (FINN then stores one
    # set per PE)
    threshold_rows: int | None = None
    weight_memory_depth: int | None = None  # words of PE x SIMD weights in the layer (None: weights external)
    # the A2Q layers (by name) whose accumulators this layer's thresholds compare against: their P sets
    # the threshold width (an MVAU with its activation inside: itself; a Thresholding layer: the MVAU/VVAU
    # layers upstream of it, through additions and stream copies)
    acc_layers: list[str] | None = None
    lut: float | None = None
    bram18: float | None = None
    uram: float | None = None
    dsp: float | None = None
    cycles: int | None = None
    lut_synth: int | None = None
    ff_synth: int | None = None
    lutram_synth: int | None = None
    carry_synth: int | None = None
    bram18_synth: int | None = None
    dsp_synth: int | None = None
    # the P-aware resource model (flow.core.resource_model): datapath, thresholds and weight memory
    lut_model: int | None = None
    ff_model: int | None = None
    model_basis: str | None = None  # "rtl_fit" | "rtl_equivalent" (an HLS layer, figured as its RTL form)
    resource_source: str = "finn_estimate"  # "open_synthesis" | "synthesis_failed" | "finn_estimate"
    synthesis_error: str | None = None  # why synthesis failed (the figures are then FINN's estimate)
    rtlsim_check: RtlsimCheck | None = None


@dataclass
class Summary:
    """``summary.json`` (format :data:`SUMMARY_FORMAT`, documented in README.md)."""

    model: str | None
    quantizer: str | None
    acc_bits_target: int | None
    acc_mode: str
    board: str
    fpga_part: str
    clock_ns: float
    folding: str | None
    target_fps: int | None
    weights: str | None
    test_top1: float | None
    export_check: ExportCheck | None
    finn_check: FinnCheck
    layers: list[LayerReport]
    totals: dict
    board_fit: dict
    resource_source: str
    standalone_thresholds: bool
    estimate_note: str
    options: dict
    test_psnr: float | None = None
    build: str | None = None  # the report folder's name
    identity: dict = field(default_factory=dict)  # digests of what the build was made from
    created: str | None = None
    format: int = SUMMARY_FORMAT

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def __getitem__(self, key: str):
        """``summary["totals"]`` reads like the JSON file (the documented ``build_module`` return value)."""
        return self.to_dict()[key]

    @classmethod
    def from_dict(cls, data: Any, source: str = "summary") -> "Summary":
        if not isinstance(data, dict):
            raise FlowError(f"{source} does not hold a build summary (a JSON object); got {type(data).__name__}")
        version = data.get("format")
        if version != SUMMARY_FORMAT:
            raise FlowError(f"{source}: summary format {version!r} is not supported (this flow reads {SUMMARY_FORMAT})")
        data = dict(data)
        try:
            layers = [dict(layer) for layer in data.pop("layers")]
            finn_check = data.pop("finn_check")
        except (KeyError, TypeError, ValueError):
            raise FlowError(f"{source}: 'layers' and 'finn_check' are required") from None
        export_check = data.pop("export_check", None)
        summary = _from_dict(cls, {**data, "layers": [], "finn_check": None, "export_check": None}, source)
        summary.finn_check = _from_dict(FinnCheck, finn_check, f"{source}, finn_check")
        summary.export_check = _from_dict(ExportCheck, export_check, f"{source}, export_check") if export_check else None
        for i, layer in enumerate(layers):
            rtlsim = layer.pop("rtlsim_check", None)
            record = _from_dict(LayerReport, layer, f"{source}, layer {i}")
            record.rtlsim_check = _from_dict(RtlsimCheck, rtlsim, f"{source}, layer {i} rtlsim_check") if rtlsim else None
            summary.layers.append(record)
        return summary

    @classmethod
    def read(cls, path: Path) -> "Summary":
        return cls.from_dict(read_json_file(path, "summary"), str(path))
