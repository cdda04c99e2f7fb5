"""The stages of a build, nothing else: checkpoint -> exact QONNX export -> FINN (the flow's steps) ->
checks, open synthesis and RTL simulation -> report and deployment folder.

Every stage reads the previous stage's artifact and writes its own into ``build/<tag>/`` (work files)
and ``hw_reports/<tag>/`` (reports). A build holds a lock on its report folder; when it starts, an older
``summary.json`` there is set aside (``previous_summary.json``), and the new one is written atomically at
the very end, so a ``summary.json`` always describes a build that finished.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import socket
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.cleanup import cleanup_model

from flow.artifacts import SIDECAR_SUFFIX, FinnCheck, FinnOutcome, Sidecar, Summary
from flow.core.digests import file_digest, settings_digest
from flow.core.errors import FlowError
from flow.core.log import log
from flow.export import export_qonnx_exact
from flow.finn.bitfile import bitfile_config, require_tools_for, vivado_figures
from flow.finn.check import finn_check, function_digest
from flow.finn.env import missing_xilinx_tools
from flow.finn.layers import layer_reports, read_finn_report
from flow.finn.run import FinnRun, run_finn
from flow.finn.steps import load_step_list
from flow.finn.transformations import IntegerInputFromQuant, graph_input_scale
from flow.hw.deploy import bitfiles_in, write_deployment
from flow.hw.layer_synthesis import rtlsim_check_build, synthesize_build
from flow.hw.synth import yosys_family_for_part
from flow.options import BuildOptions, BuildPlan, identity_of, resolve_plan
from flow.reports.summary import (
    SUMMARY_JSON,
    SUMMARY_MD,
    BuildFacts,
    load_resource_model,
    make_summary,
    write_report,
)
from flow.training.axe import quantize_axe
from flow.training.checkpoints import (
    CHECKPOINT_FORMAT,
    check_identity,
    checkpoint_name,
    load_checkpoint,
    model_identity,
    save_checkpoint,
)
from flow.training.data import image_classification_channels
from flow.training.train import evaluate, format_metrics, load_dataset, train_model
from models.calibration import calibrate_statistics
from models.quant import AXE_QUANTIZERS, a2q_layers, set_acc_bits

CALIBRATION_SAMPLES = 256
AXE_CALIBRATION_SAMPLES = 1024
PREVIOUS_SUMMARY = "previous_summary.json"
ONNX_CHECK_SAMPLES = 8


@dataclass
class Exported:
    """The export stage's artifact: the QONNX file, its sidecar, the (float) inputs the checks use, and the
    checkpoint the weights came from (None: untrained or not a registry build)."""

    onnx_path: Path
    sidecar: Sidecar
    check_inputs: np.ndarray
    checkpoint: Path | None = None


# --------------------------------------------------------------------------------------------- checkpoint


def in_channels(plan: BuildPlan) -> int | None:
    """Image channels of the plan's data (CIFAR-10: 3, MNIST-format: 1); None for other data sets."""
    if plan.spec is None or plan.spec.dataset != "image-classification":
        return None
    return image_classification_channels(plan.options.data)


def make_model(plan: BuildPlan):
    """The registry model of ``plan``, with seeded initial weights and its per-layer accumulator targets."""
    torch.manual_seed(plan.options.seed)
    model = plan.spec.make(plan.quantizer, plan.acc_bits, weight_bits=plan.weight_bits, act_bits=plan.act_bits,
                           width=plan.options.width, in_channels=in_channels(plan))
    if plan.acc_bits_by_layer and plan.quantizer not in AXE_QUANTIZERS:  # AXE takes them when it quantizes
        set_acc_bits(model, dict(plan.acc_bits_by_layer))
    return model


def plan_identity(plan: BuildPlan) -> dict:
    """What a checkpoint of ``plan`` must have been trained for."""
    init = plan.options.init_checkpoint
    identity = model_identity(plan.name, plan.quantizer, plan.acc_bits, plan.weight_bits, plan.act_bits,
                              plan.options.width, plan.data.digest if plan.data else None, plan.options.seed,
                              init_digest=file_digest(Path(init))[:16] if init and Path(init).is_file() else None)
    if plan.acc_bits_by_layer:
        identity["acc_bits_map"] = settings_digest(dict(plan.acc_bits_by_layer), chars=16)
    return identity


def default_checkpoint(plan: BuildPlan) -> Path:
    spec = plan.spec
    return Path(plan.options.checkpoint_root) / checkpoint_name(plan_identity(plan), (spec.weight_bits, spec.act_bits))


def checkpoint_for(plan: BuildPlan, train: bool) -> tuple[Path | None, bool]:
    """``(path, ready)``: the checkpoint a build of ``plan`` exports and whether it can be used as it is
    (else it must be trained first when ``train``; without training a missing checkpoint means an
    untrained build)."""
    if plan.options.checkpoint:
        return Path(plan.options.checkpoint), True
    path = default_checkpoint(plan)
    if not path.is_file():
        return path, False
    payload = load_checkpoint(path)
    check_identity(payload, plan_identity(plan), path)
    if plan.quantizer in AXE_QUANTIZERS:  # post-training quantization: done or not, no epochs
        return path, True
    if payload.get("recipe") != plan.spec.recipe:
        return path, not train
    return path, payload["epoch"] >= plan.epochs or not train


def trains_on_build(plan: BuildPlan) -> bool:
    """Whether a build of ``plan`` trains a missing checkpoint (else it builds untrained weights)."""
    return plan.options.train and plan.spec.train_on_build


def load_float_init(model, path: Path) -> None:
    """Start from a float (or other) checkpoint's matching tensors, as the paper does for classifiers."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise FlowError(f"initial checkpoint {path} cannot be read: {err}", option="init_checkpoint") from None
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict):
        raise FlowError(f"initial checkpoint {path} holds no state dict", option="init_checkpoint")
    own = model.state_dict()
    matching = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matching:
        raise FlowError(f"initial checkpoint {path} shares no tensor (same name and shape) with the model",
                        option="init_checkpoint")
    model.load_state_dict(matching, strict=False)
    log(f"[build] initialized {len(matching)}/{len(own)} tensors from {path}")


def ensure_checkpoint(plan: BuildPlan, train: bool = True) -> tuple[Path | None, dict | None]:
    """The checkpoint to export: the given one, a complete default one, or a fresh training run.

    Returns ``(path, metrics)``; ``(None, None)`` when training is off and no checkpoint exists."""
    path, ready = checkpoint_for(plan, train)
    if plan.options.checkpoint:
        payload = load_checkpoint(path)
        check_identity(payload, plan_identity(plan), path)
        return path, payload.get("metrics")
    if ready and path.is_file():
        payload = load_checkpoint(path)
        log(f"[build] reusing checkpoint {path} (epoch {payload['epoch']}/{plan.epochs}, {format_metrics(payload['metrics'])})")
        return path, payload["metrics"]
    if plan.quantizer in AXE_QUANTIZERS:
        return path, quantize_after_training(plan, path)
    if not train:
        return None, None
    if path.is_file() and load_checkpoint(path).get("recipe") != plan.spec.recipe:
        log(f"[build] {path} was trained with another recipe than {plan.name}'s current one: retraining")
    log(f"[build] training {plan.name} ({plan.quantizer}, P={plan.acc_bits}) for {plan.epochs} epochs -> {path}")
    model = make_model(plan)
    if plan.options.init_checkpoint:
        load_float_init(model, Path(plan.options.init_checkpoint))
    if not path.is_file() and plan.quantizer in ("a2q", "a2q+"):
        # A2Q's norm and scales from the (initial or loaded float) weights, projected onto the l1 budget
        plan.spec.apply_init_for_a2q(model, sample_inputs(plan, 2, "train"))
    metrics = train_model(plan.spec, model, plan_identity(plan), path, data_dir=plan.options.data, epochs=plan.epochs,
                          device=plan.options.device, seed=plan.options.seed,
                          max_steps_per_epoch=plan.options.max_steps_per_epoch)
    return path, metrics


def axe_targets(plan: BuildPlan) -> dict[str, int]:
    """The layers AXE constrains and their P: those the model's A2Q variant constrains, at the plan's P or
    its per-layer target."""
    a2q_model = plan.spec.make("a2q", plan.acc_bits, weight_bits=plan.weight_bits, act_bits=plan.act_bits,
                               width=plan.options.width, in_channels=in_channels(plan))
    targets = {name: plan.acc_bits for name in a2q_layers(a2q_model)}
    unknown = sorted(set(dict(plan.acc_bits_by_layer)) - set(targets))
    if unknown:
        raise FlowError(f"per-layer accumulator widths name no A2Q layer of {plan.name}: {unknown}; its A2Q layers: "
                        f"{', '.join(targets) or 'none'}", option="acc_bits_map")
    return {**targets, **dict(plan.acc_bits_by_layer)}


def quantize_after_training(plan: BuildPlan, path: Path) -> dict:
    """AXE (accumulator-aware GPFQ/GPTQ) of the float checkpoint ``INIT`` at P, from training-split inputs;
    the result is saved as the plan's checkpoint with its test metrics. Returns the metrics."""
    model = make_model(plan)
    load_float_init(model, Path(plan.options.init_checkpoint))
    calibration = sample_inputs(plan, AXE_CALIBRATION_SAMPLES, "train")
    calibrate_statistics(model, calibration)  # activation scales (AXE reads the input types from them)
    log(f"[build] {plan.quantizer} of {plan.options.init_checkpoint} at P={plan.acc_bits} "
        f"({len(calibration)} calibration inputs) -> {path}")
    quantize_axe(model, plan.quantizer, axe_targets(plan), calibration)
    test_x, test_y = load_dataset(plan.spec.dataset, plan.options.data, "test", plan.spec.sample_shape(in_channels(plan)))
    metrics = evaluate(model, plan.spec.task, test_x, test_y, plan.options.device)
    log(f"[build] {plan.quantizer} P={plan.acc_bits}: {format_metrics(metrics)}")
    save_checkpoint(path, {"format": CHECKPOINT_FORMAT, **plan_identity(plan), "state_dict": model.state_dict(),
                           "epoch": 0, "metrics": metrics, "recipe": {"post_training": plan.quantizer,
                                                                      "calibration_samples": len(calibration)}})
    return metrics


# --------------------------------------------------------------------------------------------- export


def sample_inputs(plan: BuildPlan, count: int, split: str = "test") -> torch.Tensor:
    """Real inputs of the model's own data set (the export and FINN checks use the test split)."""
    shape = plan.spec.sample_shape(in_channels(plan))
    inputs, _ = load_dataset(plan.spec.dataset, plan.options.data, split, shape)
    return torch.as_tensor(inputs[:count])


# the settings an export depends on: builds that differ only in hardware settings share one export
EXPORT_SETTINGS = ("model", "quantizer", "acc_bits", "weight_bits", "act_bits", "width", "data", "checkpoint",
                   "init_checkpoint", "seed")
EXPORT_FILES = ("model.onnx", "model.onnx" + SIDECAR_SUFFIX, "check_inputs.npy")


def export_cache_dir(plan: BuildPlan, checkpoint: Path | None) -> Path:
    """Where the export of ``plan`` from ``checkpoint`` is kept, keyed by everything it is made from."""
    identity = identity_of(plan, checkpoint)
    key = {name: plan.settings[name] for name in EXPORT_SETTINGS}
    key.update(checkpoint=identity["checkpoint"], code=identity["code"], check_samples=plan.options.check_samples)
    return Path(plan.options.work_root) / "export_cache" / settings_digest(key, chars=16)


def export_stage(plan: BuildPlan, checkpoint: Path | None, metrics: dict | None) -> Exported:
    """The plan's registry model (trained, or A2Q-initialized and calibrated) exported to QONNX, or the same
    export of an earlier build with the same model, checkpoint, data and code."""
    cached = export_cache_dir(plan, checkpoint)
    if all((cached / name).is_file() for name in EXPORT_FILES):
        for name in EXPORT_FILES:
            shutil.copyfile(cached / name, plan.work_dir / name)
        log(f"[build] reusing the export of an earlier build with the same inputs ({cached.name})")
        sidecar = Sidecar.read(plan.work_dir / "model.onnx")
        return Exported(plan.work_dir / "model.onnx", sidecar, np.load(plan.work_dir / "check_inputs.npy"), checkpoint)
    exported = export_model(plan, checkpoint, metrics)
    np.save(plan.work_dir / "check_inputs.npy", exported.check_inputs)
    staging = cached.with_name(f".{cached.name}.{os.getpid()}")
    staging.mkdir(parents=True, exist_ok=True)
    for name in EXPORT_FILES:
        shutil.copyfile(plan.work_dir / name, staging / name)
    shutil.rmtree(cached, ignore_errors=True)
    os.replace(staging, cached)
    return exported


def export_model(plan: BuildPlan, checkpoint: Path | None, metrics: dict | None) -> Exported:
    """Export the plan's registry model (trained, or A2Q-initialized and calibrated) to QONNX."""
    model = make_model(plan)
    if checkpoint is not None:
        model.load_state_dict(load_checkpoint(checkpoint)["state_dict"])
    else:
        calibration = sample_inputs(plan, CALIBRATION_SAMPLES)
        initialized = plan.spec.apply_init_for_a2q(model, calibration[:2]) is not None
        log(f"[build] no checkpoint: building untrained weights ({'A2Q-aware init, ' if initialized else ''}"
            "batch-norm statistics from built-in data)")
        calibrate_statistics(model, calibration)
        plan.spec.apply_after_calibration(model, calibration)
    samples = sample_inputs(plan, plan.options.check_samples or plan.spec.check_samples)
    onnx_path = plan.work_dir / "model.onnx"
    log(f"[build] exporting QONNX with exact integer weights -> {onnx_path}")
    targets = axe_targets(plan) if plan.quantizer in AXE_QUANTIZERS else None
    sidecar = export_qonnx_exact(
        model, samples[:1], onnx_path, check_inputs=samples, acc_bits_targets=targets,
        quantizer_label=plan.quantizer if targets else None,
        meta={
            "model": plan.name, "quantizer": plan.quantizer, "acc_bits_target": plan.acc_bits, "task": plan.spec.task,
            "weights": "trained" if checkpoint is not None else "untrained", "weight_bits": plan.weight_bits,
            "act_bits": plan.act_bits, "width": plan.options.width, "data": plan.data.as_dict() if plan.data else None,
            "test_top1": (metrics or {}).get("test_top1"), "test_psnr": (metrics or {}).get("test_psnr"),
        },
    )  # fmt: skip
    check = sidecar.export_check
    log(f"[build] export check: max |QONNX - torch| = {check.max_abs_diff:.3g}, l1 bounds hold: {check.l1_bound_ok}")
    return Exported(onnx_path, sidecar, samples.numpy(), checkpoint)


def infer_task(model) -> str:
    """The task of a model that came without a sidecar: a vector output is a classifier's scores, an image
    output (4 axes) an image-to-image model such as super-resolution."""
    shape = model.get_tensor_shape(model.graph.output[0].name) or []
    return "super_resolution" if len(shape) == 4 else "classification"


def import_onnx_stage(plan: BuildPlan) -> Exported:
    """Bring a user's QONNX file into the build: its sidecar when present, else exact-minimum mode."""
    source = Path(plan.options.onnx)
    try:
        model = ModelWrapper(str(source))
    except Exception as err:
        raise FlowError(f"{source} is not a readable ONNX model: {err}", option="onnx") from None
    if not any(node.op_type in ("Quant", "BipolarQuant", "MultiThreshold") for node in model.graph.node):
        raise FlowError(f"{source} has no quantization nodes (Quant/BipolarQuant): it is a float ONNX model, not "
                        "QONNX. Export a Brevitas model with flow.export (or brevitas.export.export_qonnx)", option="onnx")
    sidecar = Sidecar.read(source)
    if sidecar is None:
        log(f"[build] {source} has no A2Q sidecar ({source}.a2q.json): every accumulator is set to the exact "
            "minimum computed from the weights")
        sidecar = Sidecar(layers=[], model=source.stem, sidecar=False, task=infer_task(model))
    try:
        model = cleanup_model(model)
    except Exception as err:
        raise FlowError(f"{source} is not a valid QONNX model: {err}", option="onnx") from None
    model = model.transform(IntegerInputFromQuant(unsigned_binary=sidecar.input_datatype == "BINARY"))
    onnx_path = plan.work_dir / "model.onnx"
    model.save(str(onnx_path))
    input_name = model.graph.input[0].name
    dtype = model.get_tensor_datatype(input_name)
    shape = model.get_tensor_shape(input_name)
    rng = np.random.default_rng(0)
    count = plan.options.check_samples or ONNX_CHECK_SAMPLES
    if dtype.is_integer():
        # float-domain inputs whose integer form spans the input datatype
        inputs = rng.integers(int(dtype.min()), int(dtype.max()) + 1, size=(count, *shape[1:])) * graph_input_scale(model)
    else:
        inputs = rng.random((count, *shape[1:])).astype(np.float32)
    return Exported(onnx_path, sidecar, np.asarray(inputs, dtype=np.float32))


# --------------------------------------------------------------------------------------------- FINN and after


def checked(final_model: Path, exported: Exported, cache: Path) -> tuple[FinnCheck, np.ndarray, np.ndarray]:
    """The FINN-vs-QONNX check of ``final_model``; a graph that computes the same function as one checked
    before on the same inputs (e.g. it differs only in folding) reuses that check."""
    digest = function_digest(ModelWrapper(str(final_model)))
    key = settings_digest({"function": digest, "onnx": file_digest(exported.onnx_path),
                           "inputs": hashlib.sha256(np.ascontiguousarray(exported.check_inputs).tobytes()).hexdigest(),
                           "task": exported.sidecar.task}, chars=24)
    path = cache / f"{key}.npz"
    if path.is_file():
        stored = np.load(path, allow_pickle=False)
        log("[build] the FINN graph computes the same function as one checked before: reusing that check")
        check = FinnCheck(**json.loads(str(stored["check"])))
        return check, stored["graph_inputs"], stored["finn_outputs"]
    check, graph_inputs, finn_outputs = finn_check(final_model, exported.onnx_path, exported.check_inputs,
                                                   exported.sidecar.task)
    check.function_digest = digest
    cache.mkdir(parents=True, exist_ok=True)
    staging = cache / f".{key}.{os.getpid()}.npz"
    np.savez(staging, check=json.dumps(asdict(check)), graph_inputs=graph_inputs, finn_outputs=finn_outputs)
    os.replace(staging, path)
    return check, graph_inputs, finn_outputs


def finn_stage(exported: Exported, plan: BuildPlan, steps: list, identity: dict) -> Summary:
    """FINN build, FINN-vs-QONNX check, synthesis and RTL simulation when asked, report, deployment folder.

    With ``outputs="bitfile"`` FINN's whole flow runs when the Xilinx tools exist; without them the report is
    written and then the FlowError that names the missing tools and the outputs is raised.
    """
    opts = plan.options
    work_dir, report_dir = plan.work_dir, plan.report_dir
    extra_config = {"standalone_thresholds": plan.standalone_thresholds}
    if opts.outputs == "bitfile" and not missing_xilinx_tools(plan.board.shell_flow):
        steps, bitfile_extra = bitfile_config(plan.board, steps)
        extra_config.update(bitfile_extra)
    run = FinnRun(board=plan.board, folding=plan.folding, target_fps=plan.target_fps, acc_mode=plan.acc_mode,
                  steps=tuple(steps), extra_config=tuple(extra_config.items()),
                  allow_unmatched_sidecar=opts.allow_unmatched_sidecar)
    final_model = run_finn(exported.onnx_path, exported.sidecar, run, work_dir / "finn",
                           prefix_cache=Path(opts.work_root) / "finn_cache")
    check, graph_inputs, finn_outputs = checked(final_model, exported, Path(opts.work_root) / "check_cache")
    log(f"[build] FINN-vs-QONNX check ({check.compared}, {check.samples} samples): max abs diff "
        f"{check.max_abs_diff:.3g}, {check.mismatches} differing elements")
    synth = synthesize_build(final_model, plan.board, work_dir, Path(opts.work_root) / "synth_cache") if plan.synth else None
    rtlsim = rtlsim_check_build(final_model, graph_inputs, work_dir, plan.board.fpga_part) if plan.rtlsim else None

    finn_report_dir = work_dir / "finn" / "report"
    performance = read_finn_report(finn_report_dir, "estimate_network_performance.json")
    outcome = FinnOutcome(final_model=final_model, report_dir=finn_report_dir,
                          layers=layer_reports(ModelWrapper(str(final_model)), exported.sidecar, finn_report_dir),
                          max_cycles=performance.get("max_cycles"))
    facts = BuildFacts(build=plan.tag, board=plan.board, acc_mode=plan.acc_mode,
                       folding=plan.folding.stem if plan.folding else None,
                       target_fps=plan.target_fps, standalone_thresholds=plan.standalone_thresholds,
                       options=opts.as_dict(), identity=identity)
    summary = make_summary(facts, exported.sidecar, outcome, check, synth=synth, rtlsim=rtlsim,
                           vivado=vivado_figures(finn_report_dir),
                           resource_model=load_resource_model(yosys_family_for_part(plan.board.fpga_part)))
    bitfiles = bitfiles_in(work_dir / "finn" / "bitfile")
    deploy_dir = write_deployment(final_model, graph_inputs, finn_outputs, work_dir / "deploy", plan.board,
                                  bitfile=bitfiles[0] if bitfiles else None)
    log(f"[build] PYNQ deployment folder: {deploy_dir}")
    paths = write_report(report_dir, summary, finn_report_dir)
    require_tools_for(opts.outputs, [paths["json"], paths["md"], paths["finn_reports"], exported.onnx_path, final_model,
                                     deploy_dir], plan.board.shell_flow)
    if not check.passed:
        raise FlowError(f"the FINN graph does not match the QONNX model (max abs diff {check.max_abs_diff}, "
                        f"{check.mismatches} differing elements); see {report_dir}")
    return summary


# --------------------------------------------------------------------------------------------- whole builds


@contextmanager
def build_folder(plan: BuildPlan):
    """Hold the lock of the plan's report folder for the duration of a build (one clear error naming the
    holder when another build of the same report runs), set an older summary aside, and remove the folders
    it made again if the build fails before writing anything into them."""
    made = [folder for folder in (plan.report_dir.parent, plan.work_dir.parent, plan.work_dir) if not folder.exists()]
    plan.report_dir.parent.mkdir(parents=True, exist_ok=True)
    lock_path = plan.report_dir.parent / f".{plan.tag}.lock"
    with open(lock_path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise FlowError(f"build {plan.tag} is already running ({holder}); wait for it to finish or stop it") from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        lock.flush()
        old = plan.report_dir / SUMMARY_JSON
        if old.is_file():
            os.replace(old, plan.report_dir / PREVIOUS_SUMMARY)
            (plan.report_dir / SUMMARY_MD).unlink(missing_ok=True)
        plan.work_dir.mkdir(parents=True, exist_ok=True)
        try:
            yield
        except BaseException:
            lock_path.unlink(missing_ok=True)
            for folder in reversed(made):  # innermost first
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
            raise
        finally:
            lock.seek(0)
            lock.truncate()
    lock_path.unlink(missing_ok=True)


def build(opts: BuildOptions) -> Summary:
    """Run the whole build for ``opts``; returns the summary written to ``hw_reports/<tag>/``."""
    return build_plan(resolve_plan(opts))


def build_plan(plan: BuildPlan) -> Summary:
    """Run the whole build of a resolved ``plan``; returns the summary written to its report folder."""
    started = time.time()
    log(f"[build] {plan.tag}: board {plan.board.name} ({plan.board.fpga_part}), accumulator mode {plan.acc_mode}")
    steps = load_step_list(plan.options.steps)  # an unknown step fails here, before any work
    with build_folder(plan):
        if plan.spec is not None:
            checkpoint, metrics = ensure_checkpoint(plan, train=trains_on_build(plan))
            exported = export_stage(plan, checkpoint, metrics)
        else:
            exported = import_onnx_stage(plan)
        summary = finn_stage(exported, plan, steps, identity_of(plan, exported.checkpoint))
    log(f"[build] done in {time.time() - started:.0f} s: {plan.report_dir / SUMMARY_MD}")
    return summary


def build_module(module, sample, name: str, board: str = "pynq-z2", folding: str | None = None,
                 target_fps: int | None = None, acc_mode: str | None = None, task: str = "classification",
                 check_inputs=None, reports_root: Path | None = None, work_root: Path | None = None,
                 steps: list | str | None = None, synth: bool = False, rtlsim: bool = False,
                 acc_bits_by_layer: dict[str, int] | None = None) -> Summary:
    """Bring your own model: export a user's Brevitas ``module`` and run the FINN flow and reports.

    ``sample`` is one input batch (batch size 1 sets the exported shape); ``check_inputs`` (default
    ``sample``) are compared between torch, QONNX and FINN. Per-layer targets P come from each
    layer's A2Q quantizer (``weight_accumulator_bit_width``); other layers get the exact minimum.
    Reports land in ``hw_reports/<name>_<board>[_<folding>]-<digest>/summary.json``; the returned
    :class:`~flow.artifacts.Summary` also reads like that JSON (``summary["totals"]``). ``steps`` overrides
    the flow's step list (a list, or the text form of the ``steps`` build option); ``synth``/``rtlsim`` turn
    on open synthesis and RTL simulation of the RTL layers. ``acc_bits_by_layer`` gives a target P to layers
    whose quantizer has none (the export checks that their integers fit it).
    """
    opts = BuildOptions(model=name, board=board, folding=folding, target_fps=target_fps, acc_mode=acc_mode,
                        steps=steps if isinstance(steps, str) else None, synth=synth, rtlsim=rtlsim,
                        **({"reports_root": Path(reports_root)} if reports_root else {}),
                        **({"work_root": Path(work_root)} if work_root else {}))
    plan = resolve_plan(opts, module_task=task)
    check_inputs = sample if check_inputs is None else check_inputs
    with build_folder(plan):
        sidecar = export_qonnx_exact(module, sample[:1], plan.work_dir / "model.onnx", check_inputs=check_inputs,
                                     meta={"model": name, "quantizer": "user", "task": task, "weights": "user"},
                                     acc_bits_targets=acc_bits_by_layer, quantizer_label="user")
        exported = Exported(plan.work_dir / "model.onnx", sidecar, np.asarray(check_inputs))
        step_list = list(steps) if isinstance(steps, (list, tuple)) else load_step_list(plan.options.steps)
        return finn_stage(exported, plan, step_list, identity_of(plan, None, exported.onnx_path))
