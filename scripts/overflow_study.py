"""The A2Q paper's overflow study (supplementary Figures 2 and 3) on the 1-layer linear QNN.

Trains the linear model once with a 32-bit accumulator (quantizer "baseline") and once with A2Q per
P, evaluates wraparound, saturation and A2Q with a P-bit accumulator, then re-orders the additions
of the saturating baseline at one low P. Writes hw_reports/overflow_study/{results.json,
results.md, overflow_vs_acc_bits.png, reordering_histograms.png}; checkpoints go to
checkpoints/overflow_study/. Rerunning resumes: P values already in results.json with the same
settings are skipped. --quick (tests/CI) writes to hw_reports/overflow_study_quick/ instead.
The logic lives in flow/overflow_study.py.

Run from the repository root: ``python scripts/overflow_study.py [--quick] [--ps 19-10] ...``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flow import overflow_study as study  # noqa: E402
from flow.errors import FlowError  # noqa: E402


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ps", default=None,
                        help="accumulator widths P to evaluate, e.g. 19-10 or 16,12,10 "
                             f"(default {study.DEFAULT_PS[0]}-{study.DEFAULT_PS[-1]}; --quick: "
                             f"{','.join(map(str, study.QUICK['ps']))})")
    parser.add_argument("--order-p", type=int, default=None,
                        help=f"P of the order-of-additions experiment (default {study.DEFAULT_ORDER_P}; "
                             f"--quick: {study.QUICK['order_p']})")
    parser.add_argument("--orderings", type=_positive_int, default=None,
                        help=f"random orders of additions R (default {study.DEFAULT_ORDERINGS}; "
                             f"--quick: {study.QUICK['orderings']})")
    parser.add_argument("--order-seed", type=int, default=None, help="seed of the random orders (default: --seed)")
    parser.add_argument("--data", default=None,
                        help="MNIST-format data folder (default: Fashion-MNIST in /usr/share/datasets/fashion-mnist)")
    parser.add_argument("--seed", type=int, default=None, help="training seed, the same for every model (default 0)")
    parser.add_argument("--epochs", type=_positive_int, default=None,
                        help="epochs of the baseline (default: the linear recipe's)")
    parser.add_argument("--a2q-epochs", type=_positive_int, default=None,
                        help="epochs of each A2Q retrain (default: --epochs)")
    parser.add_argument("--max-steps-per-epoch", type=_positive_int, default=None,
                        help="cap the training steps per epoch (default: none; --quick: "
                             f"{study.QUICK['max_steps_per_epoch']})")
    parser.add_argument("--test-samples", type=_positive_int, default=None,
                        help="evaluate on the first N test images (default: all; --quick: "
                             f"{study.QUICK['test_samples']})")
    parser.add_argument("--device", default=None, help="torch device for training (default cpu)")
    parser.add_argument("--out", default=None, help=f"output folder (default {study.DEFAULT_OUT_DIR}; "
                                                   f"--quick: {study.DEFAULT_QUICK_OUT_DIR})")
    parser.add_argument("--checkpoints", default=None,
                        help=f"checkpoint folder (default {study.DEFAULT_CHECKPOINT_ROOT})")
    parser.add_argument("--quick", action="store_true",
                        help="small run for tests/CI: few P values and orders, short training, test subset")
    parser.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    return parser


def config_from_args(args) -> study.StudyConfig:
    overrides = {
        "ps": study.parse_ps(args.ps) if args.ps is not None else None,
        "order_p": args.order_p,
        "orderings": args.orderings,
        "order_seed": args.order_seed,
        "data": args.data,
        "seed": args.seed,
        "epochs": args.epochs,
        "a2q_epochs": args.a2q_epochs,
        "max_steps_per_epoch": args.max_steps_per_epoch,
        "test_samples": args.test_samples,
        "device": args.device,
    }
    if args.quick:
        return study.quick_config(**overrides)
    return study.StudyConfig(**{key: value for key, value in overrides.items() if value is not None})


def main(argv=None) -> int:
    args = make_parser().parse_args(argv)

    def log(line: str) -> None:
        print(line, flush=True)

    started = time.time()
    try:
        summary = study.run_study(
            config_from_args(args),
            out_dir=args.out or (study.DEFAULT_QUICK_OUT_DIR if args.quick else None),
            checkpoint_root=args.checkpoints,
            log=log,
            figures=not args.no_figures,
        )
    except FlowError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume (finished P values and checkpoints are kept)",
              file=sys.stderr)
        return 130
    log(f"[study] done in {time.time() - started:.1f} s: computed P {summary['computed_ps'] or 'none'}, "
        f"skipped {summary['skipped_ps'] or 'none'}, trained {len(summary['trained'])} model(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
