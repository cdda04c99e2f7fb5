"""A P-aware resource model of the layers whose cost depends on the accumulator width P.

Where P costs hardware (see the README): an MVAU's accumulators and the adders and registers around them
(PE x P bits), and a Thresholding layer's threshold memory and comparators ((2^N - 1) thresholds x P bits
per channel, PE comparators each). An MVAU's weight memory and its streamer do not depend on P but are most
of a small layer's flip-flops; they are their own figure (``weight_memory``), so that a layer's total
compares with the synthesis of the whole layer. Block RAM and DSPs are left to FINN's estimate and to
synthesis.

Each figure is a combination (:data:`FORMS`) of a few structural features of the layer (below), fitted to
open synthesis (Yosys ``synth_xilinx``) of FINN's own RTL over a grid of shapes: MVAU_rtl with its weights as
a stream (the datapath alone), FINN's weight streamer (``memstream``) as what it adds to its layer (the layer
with the streamer less its datapath), Thresholding_rtl whole.
``make calibrate`` runs the grid and writes the fit, the grid, the tool versions and the held-out errors to
``build_configs/resource_model.json``.

Units: LUT sites and flip-flops. A layer that FINN keeps in HLS (thresholds inside the MVAU, 1-bit inputs)
gets the figure its RTL form would have (MVAU datapath and weight streamer plus a Thresholding layer of the
same shape), and says so in ``model_basis``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from flow.core.config import CONFIG_DIR
from flow.core.errors import FlowError

RESOURCE_MODEL_FILE = CONFIG_DIR / "resource_model.json"  # the 7-series fit; other families: resource_model_<family>.json
RESOURCE_MODEL_FORMAT = 3
# Yosys (synth_xilinx) keeps a threshold memory of up to this many bits in LUTs and puts a larger one in block
# RAM (hw_reports/threshold_memory_probe: 512 x 16 bits in 599 LUTs, 512 x 24 bits in one BRAM18 and 30 LUTs),
# so a narrower P can move a memory from BRAM into LUTs.
LUT_MEMORY_MAX_BITS = 8192
# Yosys builds FINN's weight memory (memstream, a RAM) of distributed RAM when it is at most this deep and
# takes at most this many LUTs per BRAM18 it would otherwise fill, else of block RAM: the rule that splits the
# 17 memories of scripts/probe_weight_memory.py (hw_reports/weight_memory_probe/) as Yosys did
WEIGHT_LUTRAM_MAX_DEPTH = 256
WEIGHT_LUTRAM_MAX_LUTS_PER_BRAM18 = 40
# the streamer's figures: registers and muxes per bit of the stream, LUTRAM for a small memory (64 words per LUT)
WEIGHT_MEMORY_FEATURES = ("one", "width", "lutram_luts")
OPS = ("mvau", "thresholding", "weight_memory")
FIGURES = ("lut", "ff")


def resource_model_file(family: str) -> Path:
    """The model file of a Yosys family (``xc7``: :data:`RESOURCE_MODEL_FILE`)."""
    return RESOURCE_MODEL_FILE if family == "xc7" else CONFIG_DIR / f"resource_model_{family}.json"


@dataclass(frozen=True)
class LayerShape:
    """What the model reads of a layer. ``op``: "mvau" (datapath: PE rows of SIMD lanes), "thresholding"
    (``channels`` channels, ``thresholds`` per channel, each ``acc_bits`` wide, PE channels at a time) or
    "weight_memory" (an MVAU's weight streamer: ``depth`` words of PE x SIMD x ``weight_bits`` bits; no P)."""

    op: str
    pe: int
    acc_bits: int
    simd: int = 1
    weight_bits: int = 0
    input_bits: int = 0
    channels: int = 0
    thresholds: int = 0
    depth: int = 0


FEATURE_NAMES = {
    "mvau": ("one", "pe_acc", "pe_simd_acc", "acc", "pe_acc_narrow", "pe_acc_log_simd", "pe_simd_weight_bits", "pe"),
    "thresholding": ("one", "ln_acc", "ln_pe", "ln_pe_stages_acc", "ln_lut_threshold_bits",
                     "ln_compare_and_lut_memory"),
    "weight_memory": WEIGHT_MEMORY_FEATURES,
}
# "linear": figure = coefficients . features (non-negative coefficients); "log-linear": ln figure =
# coefficients . features, a power law. FINN's RTL MVU is a sum of per-PE parts; its thresholding
# (a binary-search pipeline of log2(thresholds + 1) stages reading threshold ROMs) is not.
FORMS = {"mvau": "linear", "thresholding": "log-linear", "weight_memory": "linear"}
# the features each figure is fitted on (the others get coefficient 0): chosen by the leave-one-shape-out errors
FIGURE_FEATURES = {
    "mvau": {"lut": ("one", "pe_acc", "pe_simd_acc", "pe_acc_narrow", "pe_acc_log_simd", "pe_simd_weight_bits"),
             "ff": ("one", "pe_acc", "pe_simd_acc", "acc", "pe", "pe_simd_weight_bits")},
    "thresholding": {"lut": ("one", "ln_acc", "ln_compare_and_lut_memory"),
                     "ff": ("one", "ln_acc", "ln_pe", "ln_pe_stages_acc", "ln_lut_threshold_bits")},
    "weight_memory": {"lut": WEIGHT_MEMORY_FEATURES, "ff": ("one", "width")},
}


def weight_memory_lutram_luts(shape: LayerShape) -> int:
    """LUTs of an MVAU's weight memory (FINN's memstream) built of distributed RAM: 64 words per LUT (32 in the
    paired RAM32M form at depth <= 32); 0 when Yosys builds it of block RAM."""
    width = shape.pe * shape.simd * shape.weight_bits
    luts = width * math.ceil(shape.depth / 64) // (2 if shape.depth <= 32 else 1)
    bram18 = math.ceil(width / 18) * math.ceil(shape.depth / 1024)
    in_lutram = shape.depth <= WEIGHT_LUTRAM_MAX_DEPTH and luts <= WEIGHT_LUTRAM_MAX_LUTS_PER_BRAM18 * bram18
    return luts if in_lutram else 0


def threshold_memory_depths(shape: LayerShape) -> list[int]:
    """Depth of each pipeline stage's threshold memory in FINN's Thresholding_rtl (one per stage and PE):
    stage s holds 2^s thresholds of each of the channels/PE channels a PE serves."""
    stages = max(1, math.ceil(math.log2(shape.thresholds + 1)))
    channel_fold = max(1, shape.channels // shape.pe)
    return [channel_fold * 2**stage for stage in range(stages)]


def features(shape: LayerShape) -> list[float]:
    """The model's inputs for ``shape``, in the order of :data:`FEATURE_NAMES`."""
    pe, p = shape.pe, shape.acc_bits
    if shape.op == "mvau":
        # FINN's RTL MVU packs several products of <= 4-bit operands into one DSP: another datapath around them
        narrow = shape.weight_bits <= 4 and shape.input_bits <= 4
        return [1.0, pe * p, pe * shape.simd * p, p, pe * p * narrow, pe * p * math.log2(2 * shape.simd),
                pe * shape.simd * shape.weight_bits, pe]
    if shape.op == "thresholding":
        depths = threshold_memory_depths(shape)
        in_luts = sum(depth for depth in depths if depth * p <= LUT_MEMORY_MAX_BITS)
        comparator_bits = pe * len(depths) * p  # one P-bit comparator per stage and PE
        # bits of the memories kept in LUTs (plus one word per PE, so that all-BRAM stays finite); comparators
        # and LUT memory together, a LUT6 holding about 32 bits of a random threshold ROM
        return [1.0, math.log(p), math.log(pe), math.log(comparator_bits), math.log(pe * p * (1 + in_luts)),
                math.log(comparator_bits + pe * p * in_luts / 32)]
    if shape.op == "weight_memory":
        width = pe * shape.simd * shape.weight_bits
        return [1.0, width, weight_memory_lutram_luts(shape)]
    raise FlowError(f"no resource model for {shape.op!r}; valid: {', '.join(OPS)}")


@dataclass
class ResourceModel:
    """Coefficients per op and figure (``coefficients[op][figure]``, one per feature), with what they were
    fitted to: the Yosys family and versions, the grid, and the errors on held-out shapes."""

    family: str
    coefficients: dict
    tools: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    validation: dict = field(default_factory=dict)
    format: int = RESOURCE_MODEL_FORMAT

    def predict(self, shape: LayerShape) -> dict[str, int]:
        """``{"lut": ..., "ff": ...}`` for ``shape`` (rounded to whole cells)."""
        x = features(shape)
        figures = {}
        for figure in FIGURES:
            value = sum(c * v for c, v in zip(self.coefficients[shape.op][figure], x))
            figures[figure] = round(math.exp(value) if FORMS[shape.op] == "log-linear" else value)
        return figures

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def read(cls, path: Path = RESOURCE_MODEL_FILE) -> ResourceModel:
        try:
            data = json.loads(Path(path).read_text())
            model = cls(**data)
        except (OSError, ValueError, TypeError) as err:
            raise FlowError(f"resource model {path} is unreadable ({err}); `make calibrate` writes it") from err
        if model.format != RESOURCE_MODEL_FORMAT:
            raise FlowError(f"resource model {path} has format {model.format}, expected {RESOURCE_MODEL_FORMAT}; "
                            f"run `make calibrate`")
        for op in OPS:
            for figure in FIGURES:
                if len(model.coefficients.get(op, {}).get(figure, [])) != len(FEATURE_NAMES[op]):
                    raise FlowError(f"resource model {path}: {op} {figure} needs {len(FEATURE_NAMES[op])} "
                                    f"coefficients; run `make calibrate`")
        return model


def validation_table(validation: dict) -> str:
    """The model's errors against synthesis as a Markdown table: held-out shapes, then every shape held out once
    (leave-one-shape-out cross-validation), then the fitted shapes."""
    lines = ["| set | op | figure | points | median abs error | worst abs error | worst P=32->P ratio error |",
             "|---|---|---|---|---|---|---|"]
    for subset in ("held_out", "cross_validation", "fit"):
        for op, by_figure in validation.get(subset, {}).items():
            for figure, e in by_figure.items():
                cells = [e["median_abs_error"], e["worst_abs_error"], e["worst_reduction_ratio_error"]]
                text = ["-" if c is None else f"{100 * c:.1f} %" for c in cells]
                lines.append(f"| {subset} | {op} | {figure} | {e['points']} | " + " | ".join(text) + " |")
    return "\n".join(lines)


def bits_of(datatype: str | None) -> int | None:
    """The bit width of a FINN/qonnx datatype name (INT12 -> 12, UINT4 -> 4, BIPOLAR/BINARY -> 1)."""
    if not datatype:
        return None
    if datatype in ("BIPOLAR", "BINARY", "TERNARY"):
        return 1 if datatype != "TERNARY" else 2
    digits = "".join(ch for ch in datatype if ch.isdigit())
    return int(digits) if digits and not datatype.startswith("FLOAT") else None
