"""Command line of the flow: ``python -m flow <command> ...``; the Makefile is a thin layer over it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flow.errors import FlowError


def _optional_int(text: str):
    return None if text in ("", "none", "None") else int(text)


def add_model_args(parser: argparse.ArgumentParser):
    parser.add_argument("--model", default="linear", help="registry name (see `python -m flow models`)")
    parser.add_argument("--quant", dest="quantizer", default="a2q", help="baseline, a2q or a2q+")
    parser.add_argument("--P", "--acc-bits", dest="acc_bits", default="16",
                        help="target accumulator width in bits (A2Q's P); 'none' for baseline")
    parser.add_argument("--data", default=None, help="data set folder (default: the model's built-in data)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the model's recipe)")
    parser.add_argument("--device", default="cpu", help="torch device for training, e.g. cuda")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=float, default=1.0, help="width multiplier of the model's channels")
    parser.add_argument("--weight-bits", type=int, default=None, help="hidden layers' weight bits (default: per model)")
    parser.add_argument("--act-bits", type=int, default=None, help="hidden layers' activation bits (default: per model)")
    parser.add_argument("--init", default=None,
                        help="start training from this (float) checkpoint: tensors with matching names and shapes")


def parse_acc_bits(text):
    if text is None or str(text).lower() in ("", "none"):
        return None
    try:
        return int(text)
    except ValueError:
        raise FlowError(f"P must be an integer number of bits, got {text!r}") from None


def build_options(args):
    from flow.build import BuildOptions

    return BuildOptions(
        model=args.model,
        quantizer=args.quantizer,
        acc_bits=parse_acc_bits(args.acc_bits),
        board=args.board or None,
        folding=args.folding or None,
        target_fps=args.fps,
        data=args.data or None,
        checkpoint=args.ckpt or None,
        onnx=args.onnx or None,
        acc_mode=args.acc_mode or None,
        epochs=args.epochs,
        device=args.device,
        seed=args.seed,
        train=not args.no_train,
        outputs=args.outputs,
        synth=args.synth,
        rtlsim=args.rtlsim,
        width=args.width,
        weight_bits=args.weight_bits,
        act_bits=args.act_bits,
        init_checkpoint=args.init,
    )


def cmd_build(args) -> int:
    from flow.build import build

    build(build_options(args))
    return 0


def cmd_sweep(args) -> int:
    from flow.sweep import run_sweep

    opts = build_options(args)
    acc_bits_list = [parse_acc_bits(p) for p in " ".join(args.ps).split()]
    foldings = " ".join(args.foldings).split() if args.foldings else [None]
    out_dir = Path(args.out) if args.out else Path("hw_reports") / f"sweep_{args.model}_{args.quantizer.replace('+', 'plus')}"
    rows = run_sweep(opts, acc_bits_list, foldings, out_dir)
    for row in rows:
        ratio = row.get("acc_layers_lut_synth_ratio") or row.get("lut_ratio")
        print(f"[sweep] P={row['acc_bits']:>2} folding={row['folding']}: LUT {row['lut']} (FINN), "
              f"accumulator layers LUT {row['acc_layers_lut_synth']} (Yosys), reduction x{ratio:.2f}" if ratio else
              f"[sweep] P={row['acc_bits']:>2} folding={row['folding']}: LUT {row['lut']}")
    print(f"[sweep] table and plot in {out_dir}")
    return 0


def cmd_train(args) -> int:
    from flow.build import BuildOptions, ensure_checkpoint, validate_acc_bits
    from flow.train import format_metrics
    from models import get_model_spec
    from models.quant import check_quantizer

    check_quantizer(args.quantizer)
    spec = get_model_spec(args.model)
    opts = BuildOptions(model=args.model, quantizer=args.quantizer, data=args.data or None, epochs=args.epochs,
                        device=args.device, seed=args.seed, width=args.width, weight_bits=args.weight_bits,
                        act_bits=args.act_bits, init_checkpoint=args.init)
    opts.acc_bits = validate_acc_bits(parse_acc_bits(args.acc_bits), spec, args.quantizer)
    path, metrics = ensure_checkpoint(opts, spec, train=True)
    print(f"[train] checkpoint {path}: {format_metrics(metrics)}")
    return 0


def cmd_models(args) -> int:
    from models import MODELS

    for name, spec in MODELS.items():
        print(f"{name:12s} {spec.task:18s} {spec.dataset:14s} {spec.description}")
    return 0


def cmd_boards(args) -> int:
    from flow.config import load_boards

    for name, board in load_boards().items():
        r = board["resources"]
        print(f"{name:10s} {board['fpga_part']:22s} LUT {r['lut']:7d}  BRAM18 {r['bram18']:5d}  URAM {r['uram']:3d}  DSP {r['dsp']:5d}")
    return 0


def cmd_compare(args) -> int:
    from flow.compare import collect, write_comparison

    reports = [Path(p) for p in args.reports] if args.reports else [Path("hw_reports")]
    rows = collect(reports)
    paths = write_comparison(rows, Path(args.out))
    print(f"[compare] {len(rows)} builds -> " + ", ".join(str(p) for p in paths.values()))
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m flow", description="A2Q -> FINN flow")
    sub = parser.add_subparsers(dest="command", required=True)

    build = sub.add_parser("build", help="train (if needed), export, run FINN and write reports")
    add_model_args(build)
    build.add_argument("--board", default=None, help="board preset (see `python -m flow boards`)")
    build.add_argument("--folding", default=None, help="folding JSON file or name in build_configs/folding/")
    build.add_argument("--fps", type=_optional_int, default=None, help="target frames/s (FINN chooses the folding)")
    build.add_argument("--ckpt", default=None, help="checkpoint to export instead of the default one")
    build.add_argument("--onnx", default=None, help="build an exported QONNX file (its .a2q.json sidecar gives P)")
    build.add_argument("--acc-mode", default=None, choices=["target", "exact"],
                       help="accumulator written to FINN: INT<P> (target, default) or the exact minimum")
    build.add_argument("--outputs", default="estimates", help="estimates (default) or bitfile (needs Vivado)")
    build.add_argument("--synth", action=argparse.BooleanOptionalAction, default=None,
                       help="open synthesis (Yosys) of the RTL layers (default: per model, build_configs/models.json)")
    build.add_argument("--rtlsim", action=argparse.BooleanOptionalAction, default=None,
                       help="RTL simulation of the accumulator guarantee on adversarial inputs (default: per model)")
    build.add_argument("--no-train", action="store_true", help="never train; build untrained weights if no checkpoint")
    build.set_defaults(func=cmd_build)

    sweep = sub.add_parser("sweep", help="build across P values and foldings; one table and plots")
    for action in build._actions:
        if action.dest not in ("help",):
            sweep._add_action(action)
    sweep.add_argument("--ps", nargs="+", required=True, help="accumulator widths, e.g. 32 24 16 12")
    sweep.add_argument("--foldings", nargs="*", default=None, help="folding files or names (default: the model's)")
    sweep.add_argument("--out", default=None, help="output folder (default: hw_reports/sweep_<model>_<quant>)")
    sweep.set_defaults(func=cmd_sweep)

    train = sub.add_parser("train", help="train a model (resumes an interrupted run)")
    add_model_args(train)
    train.set_defaults(func=cmd_train)

    compare = sub.add_parser("compare", help="one table and plots over many build reports")
    compare.add_argument("reports", nargs="*", help="report folders or summary.json files (default: hw_reports/)")
    compare.add_argument("--out", default="hw_reports/comparison", help="output folder")
    compare.set_defaults(func=cmd_compare)

    sub.add_parser("models", help="list the registry").set_defaults(func=cmd_models)
    sub.add_parser("boards", help="list the board presets").set_defaults(func=cmd_boards)
    return parser


def main(argv=None) -> int:
    args = make_parser().parse_args(argv)
    try:
        return args.func(args)
    except FlowError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume (finished checkpoints are kept)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
