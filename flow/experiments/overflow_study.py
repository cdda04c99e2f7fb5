"""The A2Q paper's motivating overflow study (supplementary Figures 2 and 3), resumable.

A 1-layer linear QNN (K=784 binarized inputs, N=1, M=8; data-type bound 19 bits) is trained once
with the ordinary quantizer ("baseline", i.e. for a 32-bit accumulator) and then evaluated with a
P-bit accumulator below the bound:

* ``wrap``: two's-complement wraparound of the dot product;
* ``saturate``: every partial sum clamped, additions in the identity order;
* ``clip_final``: only the final dot product clamped (order-independent);
* ``a2q``: the same model retrained from scratch with A2Q at each P (same seed); its integer
  weights are evaluated exactly and under wrap/saturate at P (and under the random orderings),
  where the overflow rate must be exactly 0.

Metrics (all from the integer simulator :mod:`flow.experiments.overflow`, at accumulator level: the logits are
``per-channel weight scale * input scale * accumulator``, not the model's 8-bit output quantizer):
``overflow_rate`` (fraction of dot products where some partial sum, in the order used, left the
P-bit range), ``logits_mae`` (mean |logit error| against the exact accumulator of the *same* model)
and ``top1`` on the test split.

Figure 3: at one low P, the saturating baseline is evaluated under R random (seeded) orders of
additions; the per-ordering MAE and top-1 are compared against ``clip_final`` and the baseline's
exact (32-bit) accuracy.

Results go to ``<out_dir>/results.json`` after every P (atomic write) together with the settings
that produced them; a rerun with the same settings skips the P values already there, so an
interrupted run resumes. Different settings start the results over. Checkpoints live under
``<checkpoint_root>/<data>-<hash>_seed<seed>[_steps<n>]/`` with the epoch count in the name, so
runs with different settings never share one; a complete checkpoint is reused, a partial one
resumes (``flow.training.train.train_model``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from flow.core import accumulator as acc_math
from flow.core.config import CHECKPOINT_ROOT, REPORTS_ROOT
from flow.core.errors import FlowError
from flow.core.log import log as default_log
from flow.experiments.overflow import logits_metrics, simulate_accumulation
from flow.training.checkpoints import check_identity, load_checkpoint, model_identity
from flow.training.data import DEFAULT_FASHION_MNIST, data_identity
from flow.training.train import load_dataset, train_model
from models.registry import get_model_spec

DEFAULT_OUT_DIR = REPORTS_ROOT / "overflow_study"
DEFAULT_QUICK_OUT_DIR = REPORTS_ROOT / "overflow_study_quick"  # --quick never overwrites the full run
DEFAULT_CHECKPOINT_ROOT = CHECKPOINT_ROOT / "overflow_study"

RESULTS_FORMAT = 1
MODEL = "linear"
BASELINE_ACC_BITS = 32  # the baseline is trained without an accumulator constraint ("32-bit")
DEFAULT_PS = tuple(range(19, 9, -1))
# P of the order-of-additions experiment: on the default data the saturating baseline loses ~13 points
# of top-1 at P=11 (clearly hurt, far from chance) and the order of additions moves it by ~7 points;
# at P=12 saturation costs only ~1.6 points.
DEFAULT_ORDER_P = 11
DEFAULT_ORDERINGS = 100
# --quick: a few P values and orderings, one short epoch, a test subset (tests, CI).
QUICK = {
    "ps": (14, 12, 10),
    "order_p": 12,
    "orderings": 8,
    "epochs": 1,
    "a2q_epochs": 1,
    "max_steps_per_epoch": 40,
    "test_samples": 1000,
}
# float32 forward pass of the layer vs scale * exact integer accumulator
_LOGIT_CHECK_RTOL = 1e-4

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
FIGURE_SWEEP = "overflow_vs_acc_bits.png"
FIGURE_REORDER = "reordering_histograms.png"


@dataclass(frozen=True)
class StudyConfig:
    """What to run. ``None`` means: ``epochs`` the model recipe's, ``a2q_epochs`` = ``epochs``,
    ``order_seed`` = ``seed``, ``test_samples`` the whole test split, ``data`` Fashion-MNIST."""

    ps: tuple[int, ...] = DEFAULT_PS
    order_p: int = DEFAULT_ORDER_P
    orderings: int = DEFAULT_ORDERINGS
    order_seed: int | None = None
    data: str | None = None
    seed: int = 0
    epochs: int | None = None
    a2q_epochs: int | None = None
    max_steps_per_epoch: int | None = None
    test_samples: int | None = None
    device: str = "cpu"


def quick_config(**overrides) -> StudyConfig:
    """The ``--quick`` configuration; ``overrides`` (StudyConfig fields, None = keep) win."""
    fields = {**QUICK, **{key: value for key, value in overrides.items() if value is not None}}
    return StudyConfig(**fields)


def parse_ps(text: str) -> tuple[int, ...]:
    """``"19-10"``, ``"16,12,10"`` or a mix (``"19-14,12"``) as a tuple of distinct widths, in order."""
    values: list[int] = []
    for part in str(text).replace(" ", "").split(","):
        if not part:
            continue
        try:
            if "-" in part[1:]:
                first, last = (int(v) for v in part.split("-", 1))
                step = -1 if last < first else 1
                values.extend(range(first, last + step, step))
            else:
                values.append(int(part))
        except ValueError:
            raise FlowError(f"P values must be integers or ranges like 19-10, got {part!r} in {text!r}") from None
    if not values:
        raise FlowError(f"no P value in {text!r}; give e.g. 19-10 or 16,12,10")
    return tuple(dict.fromkeys(values))


def validate_config(config: StudyConfig) -> None:
    """Every value of ``config`` against its valid range (P: the one accumulator-width check, for the
    linear model's bit widths, since A2Q is retrained at every P)."""
    if not config.ps:
        raise FlowError("give at least one P value", option="ps")
    spec = get_model_spec(MODEL)
    for p in (*config.ps, config.order_p):
        if isinstance(p, np.integer):
            p = int(p)
        acc_math.check_acc_bits(p, spec.weight_bits, spec.act_bits, input_signed=False)
    checks = {
        "orderings": (config.orderings, 1),
        "epochs": (config.epochs, 1),
        "a2q_epochs": (config.a2q_epochs, 1),
        "max_steps_per_epoch": (config.max_steps_per_epoch, 1),
        "test_samples": (config.test_samples, 1),
    }
    for name, (value, minimum) in checks.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum):
            raise FlowError(f"{name} must be an integer >= {minimum}, got {value!r}")


# ----------------------------------------------------------------------------- integer layer


@dataclass
class IntegerLayer:
    """The linear layer of one trained model as integers: ``logits = scale * (inputs @ weights.T)``."""

    weights_int: np.ndarray  # (C, K) int64
    scale: np.ndarray  # (C,) float64: weight scale per channel times input scale
    inputs_int: np.ndarray  # (B, K) int64
    weight_bits: int
    input_bits: int
    input_signed: bool


def integer_layer(model, features) -> IntegerLayer:
    """Integer weights, logit scale and integer inputs of a :class:`models.linear.LinearClassifier`.

    Checked: ``scale * exact integer accumulator`` equals the float forward pass of the layer.
    """
    model = model.cpu().eval()
    x = torch.as_tensor(np.asarray(features), dtype=torch.float32)
    with torch.no_grad():
        quant_input = model.input_quant(x)
        quant_weight = model.fc.quant_weight(quant_input=quant_input)
        weight_scale = quant_weight.scale.detach().double().reshape(-1)
        input_scale = quant_input.scale.detach().double().reshape(-1)
        if input_scale.numel() != 1:
            raise FlowError("the overflow study needs a per-tensor input scale")
        ratio = (quant_weight.value.double() / quant_weight.scale.double()).numpy()
        if not np.isfinite(ratio).all():
            raise FlowError("quantized weights are not finite (are the float weights all zero?)")
        zero_point = getattr(quant_input, "zero_point", None)
        if zero_point is not None and float(torch.as_tensor(zero_point).abs().max()) != 0.0:
            raise FlowError("the overflow study needs inputs without a zero point")
        inputs_int = np.round((quant_input.value.double() / quant_input.scale.double()).numpy()).astype(np.int64)
        layer_out = model.fc(quant_input)
        layer_out = (layer_out.value if hasattr(layer_out, "value") else layer_out).double().numpy()
    weights_int = np.round(ratio).astype(np.int64).reshape(ratio.shape[0], -1)
    scale = (weight_scale * input_scale).numpy()
    if scale.size not in (1, weights_int.shape[0]):
        raise FlowError(f"weight scale has {scale.size} values for {weights_int.shape[0]} channels")
    scale = np.broadcast_to(scale, (weights_int.shape[0],)).copy()
    logits = scale * (inputs_int @ weights_int.T)
    tolerance = _LOGIT_CHECK_RTOL * max(1.0, float(np.abs(logits).max(initial=0.0)))
    if np.abs(logits - layer_out).max(initial=0.0) > tolerance:
        raise FlowError(
            "scale * integer accumulator does not reproduce the layer's output "
            f"(max diff {np.abs(logits - layer_out).max():.3g}); is the model a LinearClassifier?"
        )
    return IntegerLayer(
        weights_int=weights_int,
        scale=scale,
        inputs_int=inputs_int,
        weight_bits=int(quant_weight.bit_width),
        input_bits=int(quant_input.bit_width),
        input_signed=bool(quant_input.signed),
    )


def exact_accumulator(layer: IntegerLayer) -> np.ndarray:
    """The exact (unbounded) integer dot products, (B, C) int64: the reference of every MAE."""
    return simulate_accumulation(layer.weights_int, layer.inputs_int, BASELINE_ACC_BITS, "exact").acc


def evaluate_mode(layer: IntegerLayer, labels, acc_bits: int, mode: str, reference, order=None) -> dict:
    """overflow_rate, logits_mae (vs ``scale * reference``) and top1 of one accumulator mode.

    With an (R, K) ``order`` the metrics pool all R orderings; see :func:`evaluate_orderings`.
    """
    result = simulate_accumulation(layer.weights_int, layer.inputs_int, acc_bits, mode, order=order)
    metrics = logits_metrics(result.acc, reference, layer.scale, labels)
    return {"overflow_rate": result.overflow_rate, **metrics}


def evaluate_orderings(layer: IntegerLayer, labels, acc_bits: int, mode: str, reference, orders) -> dict:
    """Per-ordering lists ``overflow_rate``, ``logits_mae`` and ``top1`` for (R, K) ``orders``."""
    result = simulate_accumulation(layer.weights_int, layer.inputs_int, acc_bits, mode, order=orders)
    per = {"overflow_rate": [], "logits_mae": [], "top1": []}
    for acc, overflowed in zip(result.acc, result.overflowed):
        metrics = logits_metrics(acc, reference, layer.scale, labels)
        per["overflow_rate"].append(float(overflowed.mean()))
        per["logits_mae"].append(metrics["logits_mae"])
        per["top1"].append(metrics["top1"])
    return per


def random_orders(count: int, k: int, seed: int) -> np.ndarray:
    """(count, k) random permutations of range(k) from a seeded generator (reproducible)."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(k) for _ in range(count)])


def _final_out_of_range_rate(exact: np.ndarray, acc_bits: int) -> float:
    """Fraction of dot products whose *final* value does not fit P bits (when wrap/clip_final err)."""
    lo, hi = -(2 ** (acc_bits - 1)), 2 ** (acc_bits - 1) - 1
    return float(((exact < lo) | (exact > hi)).mean())


def _spread(values) -> dict:
    array = np.asarray(values, dtype=np.float64)
    return {
        "min": float(array.min()),
        "mean": float(array.mean()),
        "median": float(np.median(array)),
        "max": float(array.max()),
        "std": float(array.std()),
    }


# ----------------------------------------------------------------------------- results file


def resolve_settings(config: StudyConfig, spec, test_count: int) -> dict:
    """The settings stored with the results; a rerun reuses results only if they are equal."""
    epochs = int(spec.recipe["epochs"] if config.epochs is None else config.epochs)
    return {
        "format": RESULTS_FORMAT,
        "model": spec.name,
        "data": str(Path(config.data or DEFAULT_FASHION_MNIST).resolve()),
        "seed": int(config.seed),
        "epochs": epochs,
        "a2q_epochs": int(epochs if config.a2q_epochs is None else config.a2q_epochs),
        "max_steps_per_epoch": config.max_steps_per_epoch,
        "test_samples": int(test_count),
        "baseline_acc_bits": BASELINE_ACC_BITS,
        "recipe": dict(spec.recipe),
    }


def reordering_settings(config: StudyConfig) -> dict:
    return {
        "acc_bits": int(config.order_p),
        "orderings": int(config.orderings),
        "order_seed": int(config.seed if config.order_seed is None else config.order_seed),
    }


def load_results(path: Path, settings: dict, log=print) -> dict:
    """The results in ``path`` if they were made with ``settings``; otherwise a fresh, empty set
    (results of other settings are moved to ``<stem>.previous.json`` first)."""
    fresh = {"study": "a2q_overflow_study", "settings": settings, "per_p": {}}
    path = Path(path)
    if not path.is_file():
        return fresh
    try:
        stored = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        log(f"[study] {path} is unreadable ({err}); starting the results over")
        return fresh
    if not isinstance(stored, dict) or not isinstance(stored.get("per_p"), dict):
        log(f"[study] {path} is not a results file of this study; starting the results over")
        return fresh
    if stored.get("settings") != settings:
        old = stored.get("settings") or {}
        diff = ", ".join(
            f"{key}: {old.get(key)!r} -> {settings.get(key)!r}" for key in settings if old.get(key) != settings.get(key)
        )
        backup = path.with_name(path.stem + ".previous.json")
        os.replace(path, backup)
        log(f"[study] settings changed ({diff or 'format'}); recomputing every P value "
            f"(the old results are kept as {backup.name})")
        return fresh
    return stored


def write_json_atomic(path: Path, payload: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- models


def checkpoint_dir(checkpoint_root: Path, settings: dict) -> Path:
    data = Path(settings["data"])
    # the training recipe is part of the key: checkpoints of another recipe are never reused
    digest = hashlib.sha1((str(data) + json.dumps(settings.get("recipe"), sort_keys=True)).encode()).hexdigest()[:6]
    steps = f"_steps{settings['max_steps_per_epoch']}" if settings["max_steps_per_epoch"] else ""
    return Path(checkpoint_root) / f"{data.name}-{digest}_seed{settings['seed']}{steps}"


class _Models:
    """Trains (or reuses) the study's checkpoints and turns them into integer layers, once each."""

    def __init__(self, spec, settings: dict, checkpoint_root: Path, features, device: str, log):
        self.spec, self.settings, self.features, self.device, self.log = spec, settings, features, device, log
        self.data_digest = data_identity(spec.dataset, settings["data"]).digest
        self.folder = checkpoint_dir(checkpoint_root, settings)
        self.trained: list[str] = []
        self._cache: dict[tuple, tuple] = {}

    def get(self, quantizer: str, acc_bits: int) -> tuple[IntegerLayer, dict]:
        """(integer layer, info) of the model for (quantizer, P), training it if needed."""
        key = (quantizer, acc_bits)
        if key not in self._cache:
            self._cache[key] = self._load(quantizer, acc_bits)
        return self._cache[key]

    def _load(self, quantizer: str, acc_bits: int):
        spec, settings = self.spec, self.settings
        epochs = settings["epochs"] if quantizer == "baseline" else settings["a2q_epochs"]
        identity = model_identity(spec.name, quantizer, acc_bits, spec.weight_bits, spec.act_bits, 1.0,
                                  self.data_digest, settings["seed"])
        path = self.folder / f"{spec.name}_{quantizer.replace('+', 'plus')}_P{acc_bits}_e{epochs}.pt"
        torch.manual_seed(settings["seed"])  # same initial weights for every retrain
        model = spec.make(quantizer, acc_bits)
        payload = None
        if path.is_file():
            payload = load_checkpoint(path)
            check_identity(payload, identity, path)
        if payload is not None and payload["epoch"] >= epochs:
            self.log(f"[study] reusing {path} (epoch {payload['epoch']}, model test top-1 "
                     f"{100 * payload['metrics']['test_top1']:.2f}%)")
            model.load_state_dict(payload["state_dict"])
            metrics = payload["metrics"]
        else:
            self.log(f"[study] training {spec.name} ({quantizer}, P={acc_bits}) for {epochs} epoch(s) -> {path}")
            started = time.time()
            metrics = train_classifier(
                spec,
                model,
                identity,
                path,
                data_dir=settings["data"],
                epochs=epochs,
                device=self.device,
                seed=settings["seed"],
                max_steps_per_epoch=settings["max_steps_per_epoch"],
                log=self.log,
            )
            self.trained.append(path.name)
            self.log(f"[study] trained {path.name} in {time.time() - started:.1f} s")
        layer = integer_layer(model, self.features)
        info = {"checkpoint": str(path), "epochs": epochs, "model_top1": float(metrics["test_top1"])}
        return layer, info


def train_classifier(*args, **kwargs):
    """:func:`flow.training.train.train_model` (module-level so that tests can count its calls)."""
    return train_model(*args, **kwargs)


# ----------------------------------------------------------------------------- study


def _baseline_record(layer: IntegerLayer, info: dict, exact, labels) -> dict:
    k = layer.weights_int.shape[1]
    return {
        **info,
        "exact_top1": logits_metrics(exact, exact, layer.scale, labels)["top1"],
        "exact_acc_bits": acc_math.exact_acc_bits(layer.weights_int, layer.input_bits, layer.input_signed),
        "weight_l1_norm_max": int(acc_math.weight_l1_norms(layer.weights_int).max()),
        "datatype_bound_bits": acc_math.datatype_bound_bits(k, layer.weight_bits, layer.input_bits, layer.input_signed),
    }


def _evaluate_p(models: _Models, acc_bits: int, labels, orders, log) -> dict:
    started = time.time()
    base, _ = models.get("baseline", BASELINE_ACC_BITS)
    base_exact = exact_accumulator(base)
    record = {
        "acc_bits": acc_bits,
        "baseline": {
            "final_out_of_range_rate": _final_out_of_range_rate(base_exact, acc_bits),
            **{mode: evaluate_mode(base, labels, acc_bits, mode, base_exact) for mode in ("wrap", "saturate", "clip_final")},
        },
    }
    a2q, info = models.get("a2q", acc_bits)
    a2q_exact = exact_accumulator(a2q)
    per_order = evaluate_orderings(a2q, labels, acc_bits, "saturate", a2q_exact, orders)
    norms = acc_math.weight_l1_norms(a2q.weights_int)
    record["a2q"] = {
        **info,
        "l1_bound": acc_math.a2q_l1_bound(acc_bits, a2q.input_bits, a2q.input_signed),
        "weight_l1_norm_max": int(norms.max()),
        "exact_acc_bits": acc_math.exact_acc_bits(a2q.weights_int, a2q.input_bits, a2q.input_signed),
        "zero_weight_fraction": float((a2q.weights_int == 0).mean()),
        **{mode: evaluate_mode(a2q, labels, acc_bits, mode, a2q_exact) for mode in ("exact", "wrap", "saturate")},
        "orderings_checked": int(len(orders)),
        "orderings_max_overflow_rate": max(per_order["overflow_rate"]),
        "orderings_top1_range": [min(per_order["top1"]), max(per_order["top1"])],
    }
    record["seconds"] = round(time.time() - started, 2)
    b, a = record["baseline"], record["a2q"]
    log(
        f"[study] P={acc_bits}: baseline overflow {100 * b['saturate']['overflow_rate']:.1f}%, top-1 wrap "
        f"{100 * b['wrap']['top1']:.2f}% / saturate {100 * b['saturate']['top1']:.2f}% / clip_final "
        f"{100 * b['clip_final']['top1']:.2f}%; A2Q top-1 {100 * a['exact']['top1']:.2f}% "
        f"(overflow wrap {a['wrap']['overflow_rate']:g}, saturate {a['saturate']['overflow_rate']:g}, "
        f"{len(orders)} orderings max {a['orderings_max_overflow_rate']:g})"
    )
    return record


def _evaluate_reordering(models: _Models, reorder: dict, labels, log) -> dict:
    acc_bits, count, seed = reorder["acc_bits"], reorder["orderings"], reorder["order_seed"]
    started = time.time()
    base, _ = models.get("baseline", BASELINE_ACC_BITS)
    exact = exact_accumulator(base)
    orders = random_orders(count, base.weights_int.shape[1], seed)
    log(f"[study] reordering: saturating baseline at P={acc_bits} under {count} random orders of additions ...")
    per = evaluate_orderings(base, labels, acc_bits, "saturate", exact, orders)
    a2q, _ = models.get("a2q", acc_bits)
    a2q_exact = exact_accumulator(a2q)
    a2q_per = evaluate_orderings(a2q, labels, acc_bits, "saturate", a2q_exact, orders)
    record = {
        "settings": reorder,
        "per_ordering": per,
        "logits_mae": _spread(per["logits_mae"]),
        "top1": _spread(per["top1"]),
        "overflow_rate": _spread(per["overflow_rate"]),
        "identity_order": evaluate_mode(base, labels, acc_bits, "saturate", exact),
        "clip_final": evaluate_mode(base, labels, acc_bits, "clip_final", exact),
        "wrap": evaluate_mode(base, labels, acc_bits, "wrap", exact),
        "baseline_exact_top1": logits_metrics(exact, exact, base.scale, labels)["top1"],
        "a2q": {
            "top1": logits_metrics(a2q_exact, a2q_exact, a2q.scale, labels)["top1"],
            "orderings_max_overflow_rate": max(a2q_per["overflow_rate"]),
            "orderings_top1": _spread(a2q_per["top1"]),
        },
        "seconds": round(time.time() - started, 2),
    }
    log(
        f"[study] reordering at P={acc_bits}: MAE {record['logits_mae']['min']:.3g}..{record['logits_mae']['max']:.3g}, "
        f"top-1 {100 * record['top1']['min']:.2f}..{100 * record['top1']['max']:.2f}% over {count} orders; "
        f"clip_final {100 * record['clip_final']['top1']:.2f}%, baseline 32-bit {100 * record['baseline_exact_top1']:.2f}% "
        f"({record['seconds']:.1f} s)"
    )
    return record


def run_study(
    config: StudyConfig | None = None,
    out_dir: str | Path | None = None,
    checkpoint_root: str | Path | None = None,
    log=default_log,
    figures: bool = True,
) -> dict:
    """Run (or resume) the study; returns a summary.

    P values already in ``results.json`` with the same settings are skipped; ones stored by an
    earlier run with other ``ps`` stay in the file, table and figures (the file is cumulative).

    Summary keys: ``results`` (the JSON content), ``computed_ps`` / ``skipped_ps`` (this run),
    ``reordering_computed`` (bool), ``trained`` (checkpoint names trained this run) and
    ``paths`` (results.json, results.md and the PNG figures).
    """
    config = config or StudyConfig()
    validate_config(config)
    out_dir = Path(out_dir) if out_dir is not None else DEFAULT_OUT_DIR
    checkpoint_root = Path(checkpoint_root) if checkpoint_root is not None else DEFAULT_CHECKPOINT_ROOT
    spec = get_model_spec(MODEL)

    test_x, test_y = load_dataset(spec.dataset, config.data, "test")
    count = len(test_x) if config.test_samples is None else min(config.test_samples, len(test_x))
    features, labels = test_x[:count].numpy(), test_y[:count].numpy()
    settings = resolve_settings(config, spec, count)
    results_path = out_dir / RESULTS_JSON
    results = load_results(results_path, settings, log)
    models = _Models(spec, settings, checkpoint_root, features, config.device, log)
    reorder = reordering_settings(config)
    orders = random_orders(config.orderings, features.shape[1], reorder["order_seed"])

    def save():
        write_json_atomic(results_path, results)

    computed, skipped = [], []
    todo = [p for p in config.ps if str(p) not in results["per_p"]]
    skipped = [p for p in config.ps if str(p) in results["per_p"]]
    if skipped:
        log(f"[study] already done with these settings, skipping P = {', '.join(map(str, skipped))}")
    if (todo or results.get("reordering", {}).get("settings") != reorder) and "baseline" not in results:
        base, info = models.get("baseline", BASELINE_ACC_BITS)
        results["baseline"] = _baseline_record(base, info, exact_accumulator(base), labels)
        results["data_type_bound_bits"] = results["baseline"]["datatype_bound_bits"]
        results["layer"] = {
            "k": int(base.weights_int.shape[1]),
            "channels": int(base.weights_int.shape[0]),
            "weight_bits": base.weight_bits,
            "input_bits": base.input_bits,
            "input_signed": base.input_signed,
        }
        save()
    for index, acc_bits in enumerate(todo, 1):
        log(f"[study] P={acc_bits} ({index}/{len(todo)}) ...")
        results["per_p"][str(acc_bits)] = _evaluate_p(models, acc_bits, labels, orders, log)
        results["per_p"] = dict(sorted(results["per_p"].items(), key=lambda item: -int(item[0])))
        save()
        computed.append(acc_bits)

    reordering_computed = False
    if results.get("reordering", {}).get("settings") != reorder:
        results["reordering"] = _evaluate_reordering(models, reorder, labels, log)
        save()
        reordering_computed = True
    else:
        log(f"[study] reordering at P={reorder['acc_bits']} already done, skipping")

    paths = {"json": results_path, "md": out_dir / RESULTS_MD}
    write_markdown(results, paths["md"])
    if figures:
        paths["sweep_png"] = out_dir / FIGURE_SWEEP
        paths["reorder_png"] = out_dir / FIGURE_REORDER
        plot_sweep(results, paths["sweep_png"])
        plot_reordering(results, paths["reorder_png"])
    log(f"[study] results in {results_path}; table {paths['md']}" + (f"; figures in {out_dir}" if figures else ""))
    return {
        "results": results,
        "computed_ps": computed,
        "skipped_ps": skipped,
        "reordering_computed": reordering_computed,
        "trained": list(models.trained),
        "paths": paths,
    }


# ----------------------------------------------------------------------------- rendering


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def _mae(value) -> str:
    return "–" if value is None else ("0" if value == 0 else f"{value:.3g}")


def write_markdown(results: dict, path: Path) -> None:
    """A short table of ``results`` (the JSON content) as Markdown, written atomically."""
    settings = results["settings"]
    base = results.get("baseline", {})
    lines = [
        "# A2Q overflow study (linear QNN, binarized MNIST-format data)",
        "",
        f"Data `{settings['data']}`, seed {settings['seed']}, baseline {settings['epochs']} epoch(s), "
        f"A2Q {settings['a2q_epochs']} epoch(s) per P"
        + (f", at most {settings['max_steps_per_epoch']} steps per epoch" if settings["max_steps_per_epoch"] else "")
        + f", {settings['test_samples']} test samples.",
    ]
    if base:
        lines.append(
            f"Baseline (32-bit accumulator): top-1 {_pct(base['exact_top1'])}% at accumulator level; its weights need "
            f"{base['exact_acc_bits']} bits, the data-type bound is {base['datatype_bound_bits']} bits."
        )
    lines += [
        "",
        "Top-1 in %, overflow = dot products where a partial sum left the P-bit range (identity order), "
        "MAE = mean |logit error| against the same model's exact accumulator.",
        "",
        "| P | overflow % | final out of range % | wrap MAE | wrap top-1 | saturate MAE | saturate top-1 "
        "| clip_final top-1 | A2Q top-1 | A2Q overflow (wrap / sat / orderings) | A2Q acc bits |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, rec in sorted(results["per_p"].items(), key=lambda item: -int(item[0])):
        b, a = rec["baseline"], rec["a2q"]
        lines.append(
            f"| {key} | {_pct(b['saturate']['overflow_rate'])} | {_pct(b['final_out_of_range_rate'])} "
            f"| {_mae(b['wrap']['logits_mae'])} | {_pct(b['wrap']['top1'])} | {_mae(b['saturate']['logits_mae'])} "
            f"| {_pct(b['saturate']['top1'])} | {_pct(b['clip_final']['top1'])} | {_pct(a['exact']['top1'])} "
            f"| {a['wrap']['overflow_rate']:g} / {a['saturate']['overflow_rate']:g} / "
            f"{a['orderings_max_overflow_rate']:g} ({a['orderings_checked']}) | {a['exact_acc_bits']} |"
        )
    reorder = results.get("reordering")
    if reorder:
        s = reorder["settings"]
        lines += [
            "",
            f"## Order of additions (saturating baseline, P={s['acc_bits']}, {s['orderings']} random orders, "
            f"seed {s['order_seed']})",
            "",
            "| | logits MAE | top-1 % |",
            "|---|---|---|",
            f"| random orders: min / median / max | {_mae(reorder['logits_mae']['min'])} / "
            f"{_mae(reorder['logits_mae']['median'])} / {_mae(reorder['logits_mae']['max'])} | "
            f"{_pct(reorder['top1']['min'])} / {_pct(reorder['top1']['median'])} / {_pct(reorder['top1']['max'])} |",
            f"| identity order | {_mae(reorder['identity_order']['logits_mae'])} | {_pct(reorder['identity_order']['top1'])} |",
            f"| clip_final (order-independent) | {_mae(reorder['clip_final']['logits_mae'])} "
            f"| {_pct(reorder['clip_final']['top1'])} |",
            f"| wrap | {_mae(reorder['wrap']['logits_mae'])} | {_pct(reorder['wrap']['top1'])} |",
            f"| baseline, 32-bit accumulator | 0 | {_pct(reorder['baseline_exact_top1'])} |",
            f"| A2Q retrained at P={s['acc_bits']} (max overflow over the orders: "
            f"{reorder['a2q']['orderings_max_overflow_rate']:g}) | 0 | {_pct(reorder['a2q']['top1'])} |",
        ]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)


def _save_figure(fig, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)


def plot_sweep(results: dict, path: Path) -> None:
    """Figure 2: overflow rate, logits MAE and top-1 against P (wrap, saturate, A2Q)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    items = sorted(results["per_p"].items(), key=lambda item: int(item[0]))
    ps = [int(key) for key, _ in items]
    recs = [rec for _, rec in items]
    base = results.get("baseline", {})
    bound = results.get("data_type_bound_bits")

    def series(who, mode, metric, factor=1.0):
        return [factor * rec[who][mode][metric] for rec in recs]

    styles = {
        "wrap": dict(color="tab:red", marker="o", linestyle="-", label="baseline, wraparound"),
        "saturate": dict(color="tab:blue", marker="s", linestyle="--", markerfacecolor="none", label="baseline, saturate (identity order)"),
        "clip_final": dict(color="tab:gray", marker="^", linestyle=":", label="baseline, clip final sum only"),
        "a2q": dict(color="tab:green", marker="D", linestyle="-", label="A2Q retrained at P (exact = wrap = saturate)"),
    }
    fig = Figure(figsize=(16, 5.2))
    axes = fig.subplots(1, 3)

    ax = axes[0]
    ax.plot(ps, series("baseline", "wrap", "overflow_rate", 100), **styles["wrap"])
    ax.plot(ps, series("baseline", "saturate", "overflow_rate", 100), **styles["saturate"])
    ax.plot(ps, [100 * rec["baseline"]["final_out_of_range_rate"] for rec in recs], color="tab:gray", marker="^",
            linestyle=":", label="baseline, final sum out of range")
    ax.plot(ps, [100 * max(rec["a2q"]["wrap"]["overflow_rate"], rec["a2q"]["saturate"]["overflow_rate"],
                           rec["a2q"]["orderings_max_overflow_rate"]) for rec in recs], **{**styles["a2q"], "label": "A2Q (any mode, any tested order)"})
    ax.plot([], [], " ", label="(wrap and saturate coincide: identical\npartial sums until the first overflow)")
    ax.set_ylabel("overflow rate (% of dot products)")
    ax.set_title("Dot products with a partial sum out of range")

    ax = axes[1]
    wrap_mae = series("baseline", "wrap", "logits_mae")
    sat_mae = series("baseline", "saturate", "logits_mae")
    clip_mae = series("baseline", "clip_final", "logits_mae")
    a2q_mae = [max(rec["a2q"]["wrap"]["logits_mae"], rec["a2q"]["saturate"]["logits_mae"]) for rec in recs]
    positive = [v for v in wrap_mae + sat_mae + clip_mae + a2q_mae if v > 0]
    linthresh = 10 ** math.floor(math.log10(min(positive))) if positive else 1e-3
    ax.plot(ps, wrap_mae, **styles["wrap"])
    ax.plot(ps, sat_mae, **styles["saturate"])
    ax.plot(ps, clip_mae, **styles["clip_final"])
    ax.plot(ps, a2q_mae, **styles["a2q"])
    ax.set_yscale("symlog", linthresh=linthresh, linscale=0.5)
    ax.set_ylim(bottom=0)
    ax.set_ylabel(f"logits MAE (logit units; log scale, linear below {linthresh:g})")
    ax.set_title("Logit error vs. the same model's exact accumulator")

    ax = axes[2]
    ax.plot(ps, series("baseline", "wrap", "top1", 100), **styles["wrap"])
    ax.plot(ps, series("baseline", "saturate", "top1", 100), **styles["saturate"])
    ax.plot(ps, series("baseline", "clip_final", "top1", 100), **styles["clip_final"])
    ax.plot(ps, series("a2q", "exact", "top1", 100), **styles["a2q"])
    if base:
        ax.axhline(100 * base["exact_top1"], color="black", linewidth=1,
                   label=f"baseline, 32-bit accumulator ({100 * base['exact_top1']:.1f}%)")
    ax.set_ylim(0, 100)
    ax.set_ylabel("top-1 accuracy on the test split (%)")
    ax.set_title("Test accuracy")

    for ax in axes:
        if bound is not None:
            ax.axvline(bound, color="purple", linestyle="-.", linewidth=1, label=f"data-type bound ({bound} bits)")
        if base.get("exact_acc_bits"):
            ax.axvline(base["exact_acc_bits"], color="orange", linestyle=":", linewidth=1.2,
                       label=f"baseline weights need {base['exact_acc_bits']} bits")
        ax.set_xlabel("accumulator width P (bits)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7.5, loc="best")
    settings = results["settings"]
    fig.suptitle(
        f"Linear QNN (K=784, 1-bit inputs, 8-bit weights) with a P-bit accumulator — "
        f"{Path(settings['data']).name}, {settings['test_samples']} test samples, seed {settings['seed']}"
    )
    fig.tight_layout()
    _save_figure(fig, path)


def plot_reordering(results: dict, path: Path) -> None:
    """Figure 3: histograms of MAE and top-1 over the random orders of additions."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(13, 5))
    axes = fig.subplots(1, 2)
    reorder = results.get("reordering")
    if not reorder:
        for ax in axes:
            ax.text(0.5, 0.5, "reordering not computed yet", ha="center", va="center", transform=ax.transAxes)
        _save_figure(fig, path)
        return
    s = reorder["settings"]
    per = reorder["per_ordering"]
    bins = min(30, max(5, s["orderings"] // 4))

    ax = axes[0]
    ax.hist(per["logits_mae"], bins=bins, color="tab:blue", alpha=0.75,
            label=f"saturate, {s['orderings']} random orders")
    ax.axvline(reorder["identity_order"]["logits_mae"], color="tab:blue", linestyle="--", label="saturate, identity order")
    ax.axvline(reorder["clip_final"]["logits_mae"], color="tab:gray", linestyle=":", linewidth=2,
               label=f"clip final sum only ({reorder['clip_final']['logits_mae']:.3g})")
    ax.plot([], [], " ", label="32-bit accumulator and A2Q: MAE 0")
    ax.set_xlabel("logits MAE (logit units)")
    ax.set_ylabel("number of orders of additions")
    ax.set_title(f"Logit error, saturating P={s['acc_bits']}-bit accumulator")

    ax = axes[1]
    ax.hist([100 * v for v in per["top1"]], bins=bins, color="tab:blue", alpha=0.75,
            label=f"saturate, {s['orderings']} random orders")
    ax.axvline(100 * reorder["identity_order"]["top1"], color="tab:blue", linestyle="--", label="saturate, identity order")
    ax.axvline(100 * reorder["clip_final"]["top1"], color="tab:gray", linestyle=":", linewidth=2,
               label=f"clip final sum only ({100 * reorder['clip_final']['top1']:.2f}%)")
    ax.axvline(100 * reorder["baseline_exact_top1"], color="black", linewidth=1.2,
               label=f"baseline, 32-bit accumulator ({100 * reorder['baseline_exact_top1']:.2f}%)")
    ax.axvline(100 * reorder["a2q"]["top1"], color="tab:green", linestyle="-.",
               label=f"A2Q retrained at P={s['acc_bits']} ({100 * reorder['a2q']['top1']:.2f}%)")
    ax.set_xlabel("top-1 accuracy on the test split (%)")
    ax.set_ylabel("number of orders of additions")
    ax.set_title(f"Test accuracy, saturating P={s['acc_bits']}-bit accumulator")
    for ax in axes:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle(f"Order of additions matters when saturating: {s['orderings']} random orders (seed {s['order_seed']})")
    fig.tight_layout()
    _save_figure(fig, path)

