"""What to build (:class:`BuildOptions`, as given) and how (:class:`BuildPlan`, resolved once).

:func:`resolve_plan` validates every option before any work starts (one clear error naming the value
and what is valid), fills in the model's defaults (``build_configs/models.json``) and fixes the build's
identity: the report folder's name is readable (model, P, quantizer, board, folding) and ends in a short
digest of every resolved setting that changes the result, so two builds that differ in anything get
two reports.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from flow.artifacts import ACC_MODES, Sidecar, read_json_file
from flow.core import accumulator as acc
from flow.core.config import (
    CHECKPOINT_ROOT,
    REPORTS_ROOT,
    WORK_ROOT,
    Board,
    get_board,
    model_defaults,
    resolve_folding,
)
from flow.core.digests import code_digest, file_digest, settings_digest
from flow.core.errors import FlowError
from flow.training.data import DataIdentity, data_identity
from flow.training.device import check_device
from models.quant import AXE_QUANTIZERS, QUANTIZERS, check_quantizer
from models.registry import ModelSpec, get_model_spec

OUTPUTS = ("estimates", "bitfile")
DEFAULT_ACC_BITS = 16
DEFAULT_ACC_MODE = "exact"
MAX_WIDTH = 4.0
BIT_RANGE = (1, 8)


@dataclass(frozen=True)
class BuildOptions:
    """What to build, as the user gave it (None: the model's default). ``acc_bits`` is the target
    accumulator width P in bits (None: 16 for A2Q/A2Q+; baseline has none); ``width`` multiplies the
    model's channels; ``target_fps`` is in frames per second."""

    model: str = "linear"
    quantizer: str = "a2q"
    acc_bits: int | None = None
    board: str | None = None
    folding: str | None = None
    target_fps: int | None = None
    data: str | None = None
    checkpoint: str | None = None
    onnx: str | None = None
    acc_mode: str | None = None
    epochs: int | None = None
    device: str = "cpu"
    seed: int = 0
    train: bool = True
    weight_bits: int | None = None
    act_bits: int | None = None
    width: float = 1.0
    reports_root: Path = field(default=REPORTS_ROOT)
    work_root: Path = field(default=WORK_ROOT)
    checkpoint_root: Path = field(default=CHECKPOINT_ROOT)
    check_samples: int | None = None
    init_checkpoint: str | None = None
    max_steps_per_epoch: int | None = None
    outputs: str = "estimates"
    synth: bool | None = None  # open synthesis of the RTL layers (None: the model's default)
    rtlsim: bool | None = None  # RTL-simulation check of the accumulators (None: the model's default)
    allow_unmatched_sidecar: bool = False
    steps: str | None = None  # an expert's FINN step list (see flow.finn.steps.load_step_list)
    acc_bits_map: str | None = None  # a JSON file {A2Q layer name: P}; other A2Q layers take acc_bits

    def as_dict(self) -> dict:
        """JSON-ready view (paths as strings), as recorded in the summary's ``options``."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class BuildPlan:
    """A build, resolved: everything the stages need, decided once.

    ``acc_bits`` is the validated target P (None for baseline and ONNX files, whose sidecar gives P per
    layer); ``weight_bits``/``act_bits`` the hidden layers' widths; ``tag`` the report folder's name.
    """

    options: BuildOptions
    name: str
    spec: ModelSpec | None
    quantizer: str | None
    acc_bits: int | None
    weight_bits: int | None
    act_bits: int | None
    board: Board
    folding: Path | None
    folding_name: str | None
    target_fps: int | None
    acc_mode: str
    synth: bool
    rtlsim: bool
    standalone_thresholds: bool
    data: DataIdentity | None
    settings: dict
    tag: str
    acc_bits_by_layer: tuple = ()  # ((layer name, P), ...): per-layer targets on top of acc_bits

    @property
    def report_dir(self) -> Path:
        return Path(self.options.reports_root) / self.tag

    @property
    def work_dir(self) -> Path:
        return Path(self.options.work_root) / self.tag

    @property
    def epochs(self) -> int | None:
        if self.spec is None:
            return None
        return self.options.epochs if self.options.epochs is not None else self.spec.recipe["epochs"]


def _positive_int(value, name: str, option: str, allow_none: bool = True) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 1:
        raise FlowError(f"{name} must be a positive whole number, got {value!r}", option=option)
    return int(value)


def check_outputs(outputs: str) -> str:
    if outputs not in OUTPUTS:
        raise FlowError(f"unknown outputs {outputs!r}; valid: {', '.join(OUTPUTS)}", option="outputs")
    return outputs


def check_numbers(opts: BuildOptions) -> None:
    """The numeric options, each against its valid range."""
    _positive_int(opts.target_fps, "the target throughput (frames per second)", "target_fps")
    _positive_int(opts.epochs, "the number of epochs", "epochs")
    _positive_int(opts.check_samples, "the number of check samples", "check_samples")
    _positive_int(opts.max_steps_per_epoch, "the steps per epoch", "max_steps_per_epoch")
    width = opts.width
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not math.isfinite(width) or not 0 < width <= MAX_WIDTH:
        raise FlowError(f"the width multiplier must be in (0, {MAX_WIDTH:g}], got {width!r}", option="width")
    for name, value in (("weight", opts.weight_bits), ("activation", opts.act_bits)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not BIT_RANGE[0] <= value <= BIT_RANGE[1]):
            raise FlowError(f"{name} bits must be a whole number in {BIT_RANGE[0]}..{BIT_RANGE[1]}, got {value!r}",
                            option=f"{name[:3] if name == 'weight' else 'act'}_bits")
    if isinstance(opts.seed, bool) or not isinstance(opts.seed, int):
        raise FlowError(f"the seed must be a whole number, got {opts.seed!r}", option="seed")


def target_acc_bits(opts: BuildOptions, spec: ModelSpec, weight_bits: int, act_bits: int) -> int | None:
    """The validated target P of a registry build (None for the baseline quantizer, which has none)."""
    if opts.quantizer in ("baseline", "float"):
        if opts.acc_bits is not None:
            raise FlowError(
                f"the {opts.quantizer} quantizer has no target accumulator width (P={opts.acc_bits} given): its "
                "accumulators get FINN's exact minimum for the trained weights; leave P out", option="acc_bits")
        return None
    p = DEFAULT_ACC_BITS if opts.acc_bits is None else opts.acc_bits
    # A2Q layers see the previous activation: act_bits unsigned inputs (the linear model's binary pixels)
    return acc.check_acc_bits(p, weight_bits, act_bits, input_signed=False)


def read_acc_bits_map(path: str, quantizer: str, weight_bits: int, act_bits: int) -> tuple:
    """The per-layer targets of a JSON file ``{layer name: P}``, each P validated, sorted by name."""
    if quantizer not in ("a2q", "a2q+", *AXE_QUANTIZERS):
        raise FlowError(f"per-layer accumulator widths need an accumulator-aware quantizer (a2q, a2q+, "
                        f"{', '.join(AXE_QUANTIZERS)}), not {quantizer!r}",
                        option="acc_bits_map")
    data = read_json_file(Path(path), "per-layer accumulator widths")
    if not isinstance(data, dict) or not data or not all(isinstance(name, str) for name in data):
        raise FlowError(f"per-layer accumulator widths {path}: give a JSON object {{layer name: P}}", option="acc_bits_map")
    return tuple(sorted((name, acc.check_acc_bits(p, weight_bits, act_bits)) for name, p in data.items()))


def resolve_plan(opts: BuildOptions, module_task: str | None = None, training: bool = False) -> BuildPlan:
    """Validate ``opts`` and resolve it into a :class:`BuildPlan` (reads no model, trains nothing).

    ``module_task`` marks a build of a user's own module (``build_module``): ``opts.model`` is then only
    its name, and P comes from the module's layers. ``training``: the plan is for training only (a "float"
    model can be trained, not built)."""
    check_outputs(opts.outputs)
    check_numbers(opts)
    for option, path in (("checkpoint", opts.checkpoint), ("init_checkpoint", opts.init_checkpoint)):
        if path and not Path(path).is_file():
            raise FlowError(f"checkpoint {path} does not exist", option=option)
    if opts.acc_mode is not None and opts.acc_mode not in ACC_MODES:
        raise FlowError(f"unknown accumulator mode {opts.acc_mode!r}; valid: {', '.join(ACC_MODES)}", option="acc_mode")
    defaults: dict = {}
    spec = quantizer = p = weight_bits = act_bits = data = None
    by_layer: tuple = ()
    sidecar: Sidecar | None = None
    if module_task is not None:
        name = opts.model
    elif opts.onnx:
        onnx_path = Path(opts.onnx)
        if not onnx_path.is_file():
            raise FlowError(f"ONNX file {onnx_path} does not exist", option="onnx")
        sidecar = Sidecar.read(onnx_path)
        name = onnx_path.stem
        if sidecar is not None:
            quantizer, p = sidecar.quantizer, sidecar.acc_bits_target
    else:
        check_quantizer(opts.quantizer)
        if opts.quantizer == "float" and not training:
            raise FlowError("a float model has no hardware form: train it (make train QUANT=float) and start "
                            "quantized training from its checkpoint (INIT=...)", option="quantizer")
        if opts.quantizer in AXE_QUANTIZERS and not opts.init_checkpoint:
            raise FlowError(f"{opts.quantizer} quantizes a trained float model without retraining: give its "
                            "checkpoint (make train QUANT=float writes one)", option="init_checkpoint")
        spec = get_model_spec(opts.model)
        defaults = model_defaults(opts.model)
        name = spec.name
        quantizer = opts.quantizer
        weight_bits, act_bits = opts.weight_bits or spec.weight_bits, opts.act_bits or spec.act_bits
        p = target_acc_bits(opts, spec, weight_bits, act_bits)
        if opts.acc_bits_map:
            by_layer = read_acc_bits_map(opts.acc_bits_map, quantizer, weight_bits, act_bits)
        data = data_identity(spec.dataset, opts.data)
        check_device(opts.device)
    board = get_board(opts.board or defaults.get("board", "pynq-z2"))
    folding_arg = opts.folding or (None if opts.target_fps else defaults.get("folding"))
    folding = resolve_folding(folding_arg) if folding_arg else None
    target_fps = None if folding else (opts.target_fps or defaults.get("target_fps"))
    if folding is None and target_fps is None:
        raise FlowError("give a folding (a FINN folding JSON file or the name of one in build_configs/folding/) or a "
                        "target throughput in frames per second", option="folding")
    synth = bool(opts.synth if opts.synth is not None else defaults.get("synth", False))
    rtlsim = bool(opts.rtlsim if opts.rtlsim is not None else defaults.get("rtlsim", False))
    # standalone thresholds give MVAU_rtl + Thresholding_rtl, the layers open synthesis and RTL simulation read
    standalone = bool(defaults.get("standalone_thresholds", False) or synth or rtlsim)
    acc_mode = opts.acc_mode or defaults.get("acc_mode", DEFAULT_ACC_MODE)
    settings = {
        "model": name,
        "onnx": file_digest(Path(opts.onnx)) if opts.onnx else None,
        "quantizer": quantizer,
        "acc_bits": p,
        "weight_bits": weight_bits,
        "act_bits": act_bits,
        "width": opts.width if spec is not None else None,
        "data": data.digest if data else None,
        "checkpoint": str(Path(opts.checkpoint).resolve()) if opts.checkpoint else None,
        "init_checkpoint": str(Path(opts.init_checkpoint).resolve()) if opts.init_checkpoint else None,
        "seed": opts.seed if spec is not None else None,
        "task": module_task,
        "board": board.name,
        "folding": file_digest(folding) if folding else None,
        "target_fps": target_fps,
        "acc_mode": acc_mode,
        "synth": synth,
        "rtlsim": rtlsim,
        "standalone_thresholds": standalone,
        "outputs": opts.outputs,
        "allow_unmatched_sidecar": opts.allow_unmatched_sidecar,
        "steps": opts.steps,
        "acc_bits_map": dict(by_layer) or None,
    }
    folding_name = folding.stem if folding and opts.folding else None
    width = "" if spec is None or opts.width == 1.0 else f"_w{opts.width:g}"
    p_part = f"_P{p}" if p is not None else ""
    if by_layer:  # per-layer targets: the range of widths in the name, the map itself in the digest
        widths = [value for _, value in by_layer] + [p]
        p_part = f"_P{min(widths)}-{max(widths)}"
    quant_part = f"_{quantizer.replace('+', 'plus')}" if quantizer else ("" if module_task else "_exact")
    tag = (f"{name}{width}{p_part}{quant_part}_{board.name}" + (f"_{folding_name}" if folding_name else "")
           + f"-{settings_digest(settings)}")
    return BuildPlan(
        options=opts, name=name, spec=spec, quantizer=quantizer, acc_bits=p, weight_bits=weight_bits,
        act_bits=act_bits, board=board, folding=folding, folding_name=folding_name, target_fps=target_fps,
        acc_mode=acc_mode, synth=synth, rtlsim=rtlsim, standalone_thresholds=standalone, data=data,
        settings=settings, tag=tag, acc_bits_by_layer=by_layer,
    )  # fmt: skip


def identity_of(plan: BuildPlan, checkpoint: Path | None, onnx: Path | None = None) -> dict:
    """The digests of everything a build was made from: its resolved settings, data set, checkpoint (or
    exported ONNX file), and the code. Two builds with equal identities produce the same report."""
    identity = {"settings": settings_digest(plan.settings), "code": code_digest(),
                "data": plan.data.as_dict() if plan.data else None, "checkpoint": None, "onnx": None}
    if checkpoint is not None and Path(checkpoint).is_file():
        identity["checkpoint"] = {"path": str(checkpoint), "digest": file_digest(Path(checkpoint))[:16]}
    if onnx is not None and Path(onnx).is_file():
        identity["onnx"] = file_digest(Path(onnx))[:16]
    return identity


__all__ = ["BuildOptions", "BuildPlan", "OUTPUTS", "QUANTIZERS", "resolve_plan", "check_outputs", "file_digest", "identity_of"]
