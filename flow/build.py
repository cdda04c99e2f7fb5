"""The build driver: checkpoint -> exact QONNX export -> FINN (our steps) -> checks -> reports.

Every stage reads the previous stage's artifact from disk and writes its own into
``build/<tag>/`` (work files) and ``hw_reports/<tag>/`` (reports), so any stage can be rerun.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from flow import accumulator as acc
from flow.config import REPO_ROOT, get_board, model_defaults, resolve_folding
from flow.errors import FlowError
from flow.steps import ACC_MODE_PROP, ESTIMATE_STEPS, SIDECAR_PROP, TASK_PROP, load_step_list

MAX_ACC_BITS = 32


@dataclass
class BuildOptions:
    """What to build. ``acc_bits`` is the target accumulator width P in bits."""

    model: str = "linear"
    quantizer: str = "a2q"
    acc_bits: int | None = 16
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
    reports_root: Path = field(default_factory=lambda: REPO_ROOT / "hw_reports")
    work_root: Path = field(default_factory=lambda: REPO_ROOT / "build")
    checkpoint_root: Path = field(default_factory=lambda: REPO_ROOT / "checkpoints")
    check_samples: int | None = None
    init_checkpoint: str | None = None
    max_steps_per_epoch: int | None = None
    outputs: str = "estimates"
    synth: bool | None = None  # open synthesis of the RTL layers (None: the model's default)
    rtlsim: bool | None = None  # RTL-simulation check of the accumulators (None: the model's default)


CALIBRATION_SAMPLES = 256


def effective_bits(opts: BuildOptions, spec) -> tuple[int, int]:
    """(weight_bits, act_bits) of the hidden layers: the options' values or the model's defaults."""
    return opts.weight_bits or spec.weight_bits, opts.act_bits or spec.act_bits


def make_model(opts: BuildOptions, spec):
    """The registry model for ``opts``, with seeded initial weights."""
    import torch

    torch.manual_seed(opts.seed)
    weight_bits, act_bits = effective_bits(opts, spec)
    return spec.make(opts.quantizer, opts.acc_bits, weight_bits=weight_bits, act_bits=act_bits, width=opts.width,
                     data_dir=opts.data)


def calibrate_statistics(model, inputs, batch_size: int = 32):
    """Forward ``inputs`` in train mode without gradients: batch-norm running statistics become the
    exact average over these batches (and statistics-based quantizer scales follow the data)."""
    import torch
    from torch import nn

    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average instead of an exponential one
    model.train()
    with torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            model(inputs[start : start + batch_size])
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.eval()


def load_float_init(model, path: Path):
    """Start from a float (or other) checkpoint's matching tensors, as the paper does for classifiers."""
    import torch


    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise FlowError(f"initial checkpoint {path} cannot be read: {err}") from err
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict):
        raise FlowError(f"initial checkpoint {path} holds no state dict")
    own = model.state_dict()
    matching = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matching:
        raise FlowError(f"initial checkpoint {path} shares no tensor (same name and shape) with the model")
    model.load_state_dict(matching, strict=False)
    log(f"[build] initialized {len(matching)}/{len(own)} tensors from {path}")


def log(message: str):
    print(message, flush=True)


def min_useful_acc_bits(weight_bits: int, input_bits: int, input_signed: bool) -> int:
    """Smallest P that holds one product of a full-range (narrow) weight and input: below it a
    layer cannot keep even one weight at full magnitude, so A2Q would zero the layer."""
    w_max = 2 ** (weight_bits - 1) - 1
    x_min, x_max = acc.input_range(input_bits, input_signed)
    return acc.signed_bits_for_range(min(-w_max * x_max, w_max * x_min), max(w_max * x_max, -w_max * x_min))


def validate_acc_bits(acc_bits, spec, quantizer: str) -> int | None:
    if quantizer == "baseline" and acc_bits is None:
        return None
    if acc_bits is None:
        raise FlowError(f"quantizer {quantizer!r} needs a target accumulator width P")
    try:
        acc_bits = int(acc_bits)
    except (TypeError, ValueError):
        raise FlowError(f"P must be an integer number of bits, got {acc_bits!r}") from None
    lowest = min_useful_acc_bits(spec.weight_bits, spec.act_bits, False)
    if not lowest <= acc_bits <= MAX_ACC_BITS:
        raise FlowError(
            f"P={acc_bits} is out of range for model {spec.name!r}: with {spec.weight_bits}-bit weights a single "
            f"product needs {lowest} bits, so valid P is {lowest}..{MAX_ACC_BITS}"
        )
    return acc_bits


def build_tag(opts: BuildOptions, board: str, folding_name: str | None) -> str:
    quant = opts.quantizer.replace("+", "plus")
    name = Path(opts.onnx).stem if opts.onnx else opts.model
    width = "" if opts.width == 1.0 else f"_w{opts.width:g}"
    p = f"P{opts.acc_bits}" if opts.acc_bits is not None else "Pexact"
    return f"{name}{width}_{p}_{quant}_{board}" + (f"_{folding_name}" if folding_name else "")


def ensure_checkpoint(opts: BuildOptions, spec, train: bool = True) -> tuple[Path | None, dict | None]:
    """The checkpoint to export: ``opts.checkpoint``, a complete default one, or a fresh training run.

    Returns ``(path, metrics)``; ``(None, None)`` when training is off and no checkpoint exists.
    """
    from flow.train import check_identity, format_metrics, load_checkpoint, model_identity, train_model

    identity = model_identity(spec, opts.quantizer, opts.acc_bits, *effective_bits(opts, spec), opts.width)
    if opts.checkpoint:
        path = Path(opts.checkpoint)
        payload = load_checkpoint(path)
        check_identity(payload, identity, path)
        return path, payload.get("metrics")
    quant = opts.quantizer.replace("+", "plus")
    width = "" if opts.width == 1.0 else f"_w{opts.width:g}"
    path = opts.checkpoint_root / f"{spec.name}{width}_{quant}_P{opts.acc_bits}.pt"
    epochs = opts.epochs if opts.epochs is not None else spec.recipe["epochs"]
    if path.is_file():
        payload = load_checkpoint(path)
        check_identity(payload, identity, path)
        if payload.get("recipe") != spec.recipe and train:
            log(f"[build] {path} was trained with another recipe than {spec.name}'s current one: retraining")
        elif payload["epoch"] >= epochs or not train:
            log(f"[build] reusing checkpoint {path} (epoch {payload['epoch']}/{epochs}, {format_metrics(payload['metrics'])})")
            return path, payload["metrics"]
    if not train:
        return None, None
    log(f"[build] training {spec.name} ({opts.quantizer}, P={opts.acc_bits}) for {epochs} epochs -> {path}")
    model = make_model(opts, spec)
    if opts.init_checkpoint:
        load_float_init(model, Path(opts.init_checkpoint))
    elif not path.is_file():
        spec.init_for_a2q(model)
    metrics = train_model(spec, model, identity, path, data_dir=opts.data, epochs=epochs, device=opts.device,
                          seed=opts.seed, max_steps_per_epoch=opts.max_steps_per_epoch)
    return path, metrics


def sample_inputs(spec, opts: BuildOptions, count: int):
    """Real test inputs for the export and FINN checks (the model's own data set)."""
    import torch

    from flow.train import load_dataset

    inputs, _ = load_dataset(spec.dataset, opts.data, "test", spec.sample_shape(opts.data))
    return torch.as_tensor(inputs[:count])


def export_model(opts: BuildOptions, spec, checkpoint: Path | None, work_dir: Path, metrics: dict | None) -> tuple[Path, dict]:
    from flow.export import export_qonnx_exact
    from flow.train import load_checkpoint

    model = make_model(opts, spec)
    if checkpoint is not None:
        model.load_state_dict(load_checkpoint(checkpoint)["state_dict"])
    else:
        initialized = spec.init_for_a2q(model)
        log(f"[build] no checkpoint: building untrained weights ({'A2Q-aware init, ' if initialized else ''}"
            "batch-norm statistics from built-in data)")
        calibration = sample_inputs(spec, opts, CALIBRATION_SAMPLES)
        calibrate_statistics(model, calibration)
        spec.after_calibration(model, calibration)
    samples = sample_inputs(spec, opts, max(opts.check_samples or spec.check_samples, 1))
    onnx_path = work_dir / "model.onnx"
    log(f"[build] exporting QONNX with exact integer weights -> {onnx_path}")
    sidecar = export_qonnx_exact(
        model,
        samples[:1],
        onnx_path,
        check_inputs=samples,
        extra_meta={
            "model": spec.name,
            "quantizer": opts.quantizer,
            "acc_bits_target": opts.acc_bits,
            "task": spec.task,
            "weights": "trained" if checkpoint is not None else "untrained",
            "weight_bits": effective_bits(opts, spec)[0],
            "act_bits": effective_bits(opts, spec)[1],
            "width": opts.width,
            "test_top1": (metrics or {}).get("test_top1"),
            "test_psnr": (metrics or {}).get("test_psnr"),
        },
    )
    check = sidecar["export_check"]
    log(f"[build] export check: max |QONNX - torch| = {check['max_abs_diff']:.3g}, l1 bounds hold: {check['l1_bound_ok']}")
    np.save(work_dir / "check_inputs.npy", samples.numpy())
    return onnx_path, sidecar


def run_finn(onnx_path: Path, sidecar: dict, board: dict, folding: Path | None, target_fps: int | None,
             acc_mode: str, out_dir: Path, steps: list | None = None, extra_config: dict | None = None) -> Path:
    """Run FINN's builder with the flow's step list; returns the final intermediate model path."""
    from flow.finn_env import import_builder

    build_dataflow, DataflowBuildConfig = import_builder()
    from finn.builder.build_dataflow_config import DataflowOutputType
    from qonnx.core.modelwrapper import ModelWrapper

    model = ModelWrapper(str(onnx_path))
    model.set_metadata_prop(SIDECAR_PROP, json.dumps(sidecar))
    model.set_metadata_prop(ACC_MODE_PROP, acc_mode)
    model.set_metadata_prop(TASK_PROP, sidecar.get("task", "classification"))
    finn_input = out_dir.parent / "finn_input.onnx"
    model.save(str(finn_input))

    failures: list[tuple[str, BaseException]] = []
    steps = list(steps or ESTIMATE_STEPS)

    def recorded(step):
        """Remember the exception of a failing step, so the driver can report it cleanly."""
        if isinstance(step, str):
            from finn.builder.build_dataflow_steps import build_dataflow_step_lookup

            step_fn, name = build_dataflow_step_lookup[step], step
        else:
            step_fn, name = step, step.__name__

        def run(model, cfg):
            try:
                return step_fn(model, cfg)
            except BaseException as err:
                failures.append((name, err))
                raise

        run.__name__ = name
        return run

    if out_dir.exists():
        shutil.rmtree(out_dir)
    config = {
        "output_dir": str(out_dir),
        "synth_clk_period_ns": board["clock_ns"],
        "fpga_part": board["fpga_part"],
        "generate_outputs": [DataflowOutputType.ESTIMATE_REPORTS],
        "folding_config_file": str(folding) if folding else None,
        "target_fps": None if folding else target_fps,
        "save_intermediate_models": True,
        **(extra_config or {}),
    }
    cfg = DataflowBuildConfig(steps=[recorded(step) for step in steps], **config)
    log(f"[build] FINN build ({len(steps)} steps) -> {out_dir}")
    stdout, stderr = sys.stdout, sys.stderr
    try:
        exit_code = build_dataflow.build_dataflow_cfg(str(finn_input), cfg)
    finally:
        sys.stdout, sys.stderr = stdout, stderr  # the builder mirrors these into its log
    if failures:
        name, err = failures[-1]
        if isinstance(err, FlowError):
            raise FlowError(f"FINN step {name}: {err}") from err
        raise FlowError(f"FINN step {name} failed: {type(err).__name__}: {err} (build log: {out_dir / 'build_dataflow.log'})") from err
    if exit_code != 0:
        raise FlowError(f"FINN build failed with exit code {exit_code}; see {out_dir / 'build_dataflow.log'}")
    last = steps[-1] if isinstance(steps[-1], str) else steps[-1].__name__
    final = out_dir / "intermediate_models" / f"{last}.onnx"
    if not final.is_file():
        raise FlowError(f"FINN build left no final model at {final}")
    return final


def python_executable_copy(model):
    """A copy of a FINN graph whose specialized ``*_hls``/``*_rtl`` nodes are turned back into their
    HW-abstract ops (which execute in Python), keeping every attribute."""
    import copy

    from qonnx.core.modelwrapper import ModelWrapper

    clone = ModelWrapper(copy.deepcopy(model.model))
    for node in clone.graph.node:
        if node.domain.startswith("finn.custom_op.fpgadataflow"):
            node.domain = "finn.custom_op.fpgadataflow"
            for suffix in ("_hls", "_rtl"):
                if node.op_type.endswith(suffix):
                    node.op_type = node.op_type[: -len(suffix)]
    return clone


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


def finn_check(final_model_path: Path, onnx_path: Path, inputs: np.ndarray, task: str) -> tuple[dict, np.ndarray, np.ndarray]:
    """Run the final FINN graph in Python against the QONNX export on the same (float) inputs.

    Returns the check, the graph inputs (integers) and the FINN graph's outputs for them.
    """
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.transformation.insert_topk import InsertTopK

    from flow.transformations import to_graph_input

    reference = ModelWrapper(str(onnx_path))
    if task == "classification":
        reference = reference.transform(InsertTopK(k=1)).transform(InferShapes())
    finn_model = python_executable_copy(ModelWrapper(str(final_model_path)))
    ref_in, ref_out = reference.graph.input[0].name, reference.graph.output[0].name
    finn_in, finn_out = finn_model.graph.input[0].name, finn_model.graph.output[0].name
    finn_shape = finn_model.get_tensor_shape(finn_in)
    max_abs_diff, graph_inputs, finn_outputs = 0.0, [], []
    for sample in inputs:
        graph_input = to_layout(to_graph_input(reference, sample[None]), finn_shape)
        expected = execute_onnx(reference, {ref_in: to_layout(graph_input, reference.get_tensor_shape(ref_in))})[ref_out]
        produced = execute_onnx(finn_model, {finn_in: graph_input})[finn_out]
        max_abs_diff = max(max_abs_diff, float(np.abs(to_layout(produced, expected.shape) - expected).max()))
        graph_inputs.append(graph_input)
        finn_outputs.append(produced)
    check = {"max_abs_diff": max_abs_diff, "samples": int(len(inputs)), "passed": max_abs_diff <= 1e-4,
             "compared": "top-1 label" if task == "classification" else "output"}
    return check, np.stack(graph_inputs), np.stack(finn_outputs)


def resolve_settings(opts: BuildOptions) -> dict:
    """Validate ``opts`` and fill in the model's defaults: board, folding or target fps, accumulator mode."""
    from models import get_model_spec
    from models.quant import check_quantizer

    from flow.vivado import check_outputs

    check_outputs(opts.outputs)
    check_quantizer(opts.quantizer)
    spec = None if opts.onnx else get_model_spec(opts.model)
    defaults = model_defaults(opts.model) if not opts.onnx else {}
    board = get_board(opts.board or defaults.get("board", "pynq-z2"))
    folding_arg = opts.folding or (None if opts.target_fps else defaults.get("folding"))
    folding = resolve_folding(folding_arg) if folding_arg else None
    target_fps = opts.target_fps or defaults.get("target_fps")
    if folding is None and target_fps is None:
        raise FlowError("give a folding (FOLDING=file or name) or a target throughput (FPS=frames per second)")
    if spec is not None:
        opts.acc_bits = validate_acc_bits(opts.acc_bits, spec, opts.quantizer)
    tag = build_tag(opts, board["name"], folding.stem if folding and opts.folding else None)
    return {"spec": spec, "defaults": defaults, "board": board, "folding": folding, "target_fps": target_fps,
            "acc_mode": opts.acc_mode or defaults.get("acc_mode", "target"), "tag": tag}


def board_and_tag(opts: BuildOptions) -> tuple[dict, str]:
    """The board preset and the report folder name a build of ``opts`` uses."""
    settings = resolve_settings(opts)
    return settings["board"], settings["tag"]


def build(opts: BuildOptions) -> dict:
    """Run the whole build for ``opts``; returns the summary written to ``hw_reports/<tag>/``."""
    started = time.time()
    settings = resolve_settings(opts)
    spec, defaults, board, folding = settings["spec"], settings["defaults"], settings["board"], settings["folding"]
    target_fps, acc_mode, tag = settings["target_fps"], settings["acc_mode"], settings["tag"]

    if opts.onnx:
        onnx_src = Path(opts.onnx)
        if not onnx_src.is_file():
            raise FlowError(f"ONNX file {onnx_src} does not exist")
    work_dir = opts.work_root / tag
    report_dir = opts.reports_root / tag
    work_dir.mkdir(parents=True, exist_ok=True)
    log(f"[build] {tag}: board {board['name']} ({board['fpga_part']}), accumulator mode {acc_mode}")

    if spec is not None:
        checkpoint, metrics = ensure_checkpoint(opts, spec, train=opts.train and spec.train_on_build)
        onnx_path, sidecar = export_model(opts, spec, checkpoint, work_dir, metrics)
        check_inputs = np.load(work_dir / "check_inputs.npy")
    else:
        onnx_path, sidecar, check_inputs = import_onnx(onnx_src, work_dir, opts.check_samples or 8)

    steps = load_step_list(spec.finn_steps if spec is not None else None)
    summary = finn_and_report(onnx_path, sidecar, check_inputs, board, folding, target_fps, acc_mode, work_dir,
                              report_dir, options={k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
                              steps=steps, outputs=opts.outputs,
                              synth=opts.synth if opts.synth is not None else defaults.get("synth", False),
                              rtlsim=opts.rtlsim if opts.rtlsim is not None else defaults.get("rtlsim", False),
                              standalone_thresholds=defaults.get("standalone_thresholds", False),
                              cache_dir=opts.work_root / "synth_cache")
    log(f"[build] done in {time.time() - started:.0f} s: {report_dir / 'summary.md'}")
    return summary


def import_onnx(onnx_src: Path, work_dir: Path, samples: int) -> tuple[Path, dict, np.ndarray]:
    """Bring a user's QONNX file into the build: its sidecar when present, else exact-minimum mode."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    from flow.export import load_sidecar
    from flow.transformations import IntegerInputFromQuant, graph_input_scale

    try:
        model = ModelWrapper(str(onnx_src))
    except Exception as err:
        raise FlowError(f"{onnx_src} is not a readable ONNX model: {err}") from err
    sidecar = load_sidecar(onnx_src)
    if sidecar is None:
        log(f"[build] {onnx_src} has no A2Q sidecar ({onnx_src}.a2q.json): every accumulator is set to the "
            "exact minimum computed from the weights")
        sidecar = {"model": onnx_src.stem, "quantizer": None, "acc_bits_target": None, "layers": [],
                   "task": "classification", "weights": "unknown", "sidecar": False}
    try:
        model = cleanup_model(model)
    except Exception as err:
        raise FlowError(f"{onnx_src} is not a valid QONNX model: {err}") from err
    model = model.transform(IntegerInputFromQuant(unsigned_binary=sidecar.get("input_datatype") == "BINARY"))
    onnx_path = work_dir / "model.onnx"
    model.save(str(onnx_path))
    input_name = model.graph.input[0].name
    dtype = model.get_tensor_datatype(input_name)
    shape = model.get_tensor_shape(input_name)
    rng = np.random.default_rng(0)
    if dtype.is_integer():
        # float-domain inputs whose integer form spans the input datatype
        inputs = rng.integers(int(dtype.min()), int(dtype.max()) + 1, size=(samples, *shape[1:])) * graph_input_scale(model)
    else:
        inputs = rng.random((samples, *shape[1:])).astype(np.float32)
    return onnx_path, sidecar, inputs


def finn_and_report(onnx_path: Path, sidecar: dict, check_inputs: np.ndarray, board: dict, folding: Path | None,
                    target_fps: int | None, acc_mode: str, work_dir: Path, report_dir: Path, options: dict,
                    steps: list | None = None, outputs: str = "estimates", synth: bool = False,
                    rtlsim: bool = False, standalone_thresholds: bool = False,
                    cache_dir: Path | None = None) -> dict:
    """FINN build, FINN-vs-QONNX check and summary for an exported model (shared by all entry points).

    ``outputs="bitfile"`` runs FINN's whole flow when the Xilinx tools exist; without them it writes the
    estimate report and then raises the FlowError that names the missing tools and the outputs.
    """
    from flow.reports import write_summary
    from flow.vivado import bitfile_config, check_outputs, require_tools_for, vivado_figures

    check_outputs(outputs)
    steps = list(steps or ESTIMATE_STEPS)
    # Standalone thresholds give MVAU_rtl + Thresholding_rtl, the layers open synthesis can read.
    extra_config = {"standalone_thresholds": bool(standalone_thresholds or synth or rtlsim)}
    from flow.finn_env import missing_xilinx_tools

    if outputs == "bitfile" and not missing_xilinx_tools():
        steps, bitfile_extra = bitfile_config(board, steps)
        extra_config.update(bitfile_extra)
    final_model = run_finn(onnx_path, sidecar, board, folding, target_fps, acc_mode, work_dir / "finn", steps=steps,
                           extra_config=extra_config)
    check, graph_inputs, finn_outputs = finn_check(final_model, onnx_path, check_inputs, sidecar.get("task", "classification"))
    log(f"[build] FINN-vs-QONNX check ({check['compared']}, {check['samples']} samples): max abs diff {check['max_abs_diff']:.3g}")
    from flow.layer_synthesis import rtlsim_check_build, synthesize_build

    synth_results = synthesize_build(final_model, board, work_dir, cache_dir or work_dir.parent / "synth_cache", log=log) if synth else None
    rtlsim_results = rtlsim_check_build(final_model, graph_inputs, work_dir, board["fpga_part"], log=log) if rtlsim else None
    summary = write_summary(
        report_dir=report_dir,
        final_model_path=final_model,
        finn_report_dir=work_dir / "finn" / "report",
        sidecar=sidecar,
        board=board,
        acc_mode=acc_mode,
        folding=folding,
        target_fps=target_fps,
        finn_check=check,
        options=options,
        vivado=vivado_figures(work_dir / "finn" / "report"),
        synth=synth_results,
        rtlsim=rtlsim_results,
        standalone_thresholds=extra_config["standalone_thresholds"],
    )
    from flow.deploy import write_deployment

    bitfiles = sorted((work_dir / "finn" / "bitfile").glob("*.bit"))
    deploy_dir = write_deployment(final_model, graph_inputs, finn_outputs, work_dir / "deploy", board["clock_ns"],
                                  bitfile=bitfiles[0] if bitfiles else None)
    log(f"[build] PYNQ deployment folder: {deploy_dir}")
    require_tools_for(outputs, [report_dir / "summary.json", report_dir / "summary.md", report_dir / "finn_reports",
                                work_dir / "model.onnx", final_model, deploy_dir])
    if not check["passed"]:
        raise FlowError(f"the FINN graph does not match the QONNX model (max abs diff {check['max_abs_diff']}); see {report_dir}")
    return summary


def build_module(module, sample, name: str, board: str = "pynq-z2", folding: str | None = None,
                 target_fps: int | None = None, acc_mode: str = "target", task: str = "classification",
                 check_inputs=None, reports_root: Path | None = None, work_root: Path | None = None,
                 steps: list | None = None) -> dict:
    """Bring your own model: export a user's Brevitas ``module`` and run the FINN flow and reports.

    ``sample`` is one input batch (batch size 1 sets the exported shape); ``check_inputs`` (default
    ``sample``) are compared between torch, QONNX and FINN. Per-layer targets P come from each
    layer's A2Q quantizer (``weight_accumulator_bit_width``); other layers get the exact minimum.
    Reports land in ``hw_reports/<name>_<board>[_<folding>]/summary.json``.
    """
    from flow.export import export_qonnx_exact

    acc_mode = acc_mode or "target"
    board_preset = get_board(board)
    folding_path = resolve_folding(folding) if folding else None
    if folding_path is None and target_fps is None:
        raise FlowError("give a folding (JSON file or name) or a target_fps")
    tag = f"{name}_{board_preset['name']}" + (f"_{folding_path.stem}" if folding_path else "")
    work_dir = (work_root or REPO_ROOT / "build") / tag
    report_dir = (reports_root or REPO_ROOT / "hw_reports") / tag
    work_dir.mkdir(parents=True, exist_ok=True)
    check_inputs = sample if check_inputs is None else check_inputs
    sidecar = export_qonnx_exact(module, sample[:1], work_dir / "model.onnx", check_inputs=check_inputs,
                                 extra_meta={"model": name, "quantizer": "user", "acc_bits_target": None,
                                             "task": task, "weights": "user", "test_top1": None})
    return finn_and_report(work_dir / "model.onnx", sidecar, np.asarray(check_inputs), board_preset, folding_path,
                           target_fps, acc_mode, work_dir, report_dir,
                           options={"model": name, "board": board, "folding": folding, "target_fps": target_fps},
                           steps=steps)
