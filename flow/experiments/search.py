"""Per-layer accumulator widths: a multi-objective search for the least hardware at a quality floor.

Layers differ in what a bit of accumulator costs (PE x P adders and registers, a threshold memory P bits
wide) and in how much quality they lose when their weights are squeezed into a narrower accumulator. The
search assigns each A2Q layer its own P in ``[acc_bits_min, acc_bits_max]`` and scores a candidate by

- quality: accumulator-aware post-training quantization (AXE, ``flow.training.axe``) of one float checkpoint
  at the candidate's per-layer P, then the test split (top-1 % or PSNR dB); no retraining, and each
  candidate's checkpoint is kept under its identity, so a rerun reads them back;
- LUT: the P-aware resource model (``flow.core.resource_model``) over the layers of one real build of the
  model (its folding and shapes), each accumulator taken at its P and each threshold memory at the P of the
  accumulators it compares against (:class:`LutSurrogate`).

Optuna's multi-objective TPE sampler proposes the candidates (batches run through the experiment executor,
so ``workers``/a Ray cluster spread them); the uniform-P points and one probe per layer (that layer at
``acc_bits_min``, the others at ``acc_bits_max``: the sensitivity plot) are evaluated first. The chosen
assignment (least LUT at the quality floor, or best quality within a LUT budget) and the best uniform P that
reaches the same floor are then fine-tuned with A2Q from the float checkpoint and built, so the comparison
ends on two real builds.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from flow.artifacts import LayerReport, Summary, write_text_atomic
from flow.core import accumulator as acc
from flow.core.digests import settings_digest
from flow.core.errors import FlowError
from flow.core.log import log as default_log
from flow.core.resource_model import ResourceModel, bits_of
from flow.experiments.executor import Task, TaskOutput, gpus_for, run_tasks
from flow.experiments.pareto import ParetoGrid, float_start
from flow.hw.synth import yosys_family_for_part
from flow.options import BuildOptions, resolve_plan
from flow.pipeline import axe_targets, build, ensure_checkpoint
from flow.reports.compare import pareto_front
from flow.reports.summary import add_model_figures, load_resource_model, model_totals
from models.quant import AXE_QUANTIZERS
from models.registry import get_model_spec

SEARCH_JSON = "search.json"
CHOSEN_JSON = "chosen_acc_bits.json"
TRIAL_COLUMNS = ["number", "kind", "quality", "lut_model", "feasible", "on_front", "acc_bits_min", "acc_bits_max",
                 "acc_bits_mean", "acc_bits", "checkpoint", "error"]


@dataclass(frozen=True)
class SearchConfig:
    """What the search explores and what it optimizes.

    ``acc_bits_min``/``acc_bits_max``: the range of P (bits) each A2Q layer may take. ``trials``: optimizer
    candidates beyond the uniform-P points and the per-layer probes. ``quantizer``: the post-training
    quantizer that scores candidates (``axe-gptq`` or ``axe-gpfq``). ``bits``: the hidden layers' weight and
    activation bits (None: the model's). ``width``/``epochs``: the model's width and the epochs of the float
    checkpoint and of the fine-tuning. ``min_quality`` (top-1 % or PSNR dB): the floor; without it (and
    without ``lut_budget``) the floor is ``floor_fraction`` of the quality of uniform ``acc_bits_max``.
    ``lut_budget`` (LUT): maximize quality within it instead. ``finetune``: the quantizer that fine-tunes
    and builds the chosen point and the best uniform P ("none": stop after the search). ``batch``:
    candidates proposed at a time (0: twice the workers)."""

    acc_bits_min: int
    acc_bits_max: int
    trials: int = 24
    quantizer: str = "axe-gptq"
    bits: int | None = None
    width: float = 1.0
    epochs: int | None = None
    min_quality: float | None = None
    lut_budget: int | None = None
    floor_fraction: float = 0.99
    finetune: str = "a2q"
    seed: int = 0
    batch: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> SearchConfig:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FlowError(f"search configuration: unknown fields {unknown}; valid: {', '.join(sorted(known))}")
        return cls(**data)


# The same widths and epochs as the models' trade-off grids (flow.experiments.pareto): one float checkpoint
# serves both studies. ESPCN has one A2Q layer (its first and last layers stay at 8 bits, outside P).
DEFAULT_SEARCHES = {
    "espcn": SearchConfig(acc_bits_min=11, acc_bits_max=16, trials=4, bits=4, epochs=4),
    "resnet18": SearchConfig(acc_bits_min=12, acc_bits_max=16, trials=24, bits=4, width=0.125, epochs=2),
    "mobilenetv1": SearchConfig(acc_bits_min=12, acc_bits_max=16, trials=24, bits=4, width=0.125, epochs=2),
    "unet": SearchConfig(acc_bits_min=11, acc_bits_max=16, trials=24, bits=4, width=0.25, epochs=4),
}


@dataclass
class Candidate:
    """One evaluated assignment: ``acc_bits`` (layer -> P), its ``quality`` (top-1 % or PSNR dB) and
    ``lut_model`` (the surrogate's LUT total); ``kind``: "uniform", "probe" or "search"."""

    acc_bits: dict[str, int]
    kind: str
    quality: float | None = None
    lut_model: int | None = None
    checkpoint: str | None = None
    error: str | None = None
    number: int = 0
    feasible: bool | None = None
    on_front: bool = False

    def row(self) -> dict:
        widths = list(self.acc_bits.values())
        return {"number": self.number, "kind": self.kind, "quality": self.quality, "lut_model": self.lut_model,
                "feasible": self.feasible, "on_front": self.on_front, "acc_bits_min": min(widths),
                "acc_bits_max": max(widths), "acc_bits_mean": round(sum(widths) / len(widths), 3),
                "acc_bits": json.dumps(self.acc_bits, sort_keys=True), "checkpoint": self.checkpoint,
                "error": self.error}


@dataclass(frozen=True)
class LutSurrogate:
    """The P-aware LUT total of one build's layers (its folding and shapes, ``rows``) for any per-layer P.

    Each accumulator of an A2Q layer is taken at that layer's P, each threshold memory at the widest P of
    the accumulators it compares against (``LayerReport.acc_layers``) plus the margin it had over them in
    the build; other layers keep their figures. Units: LUT (the resource model's, FINN's estimate for
    layers the model does not cover, as ``lut_model`` totals are)."""

    rows: tuple[LayerReport, ...]
    model: ResourceModel
    layers: tuple[str, ...] = field(default=())

    @classmethod
    def of(cls, summary: Summary, model: ResourceModel) -> LutSurrogate:
        layers = sorted({row.layer for row in summary.layers if row.layer and row.acc_bits_target is not None})
        return cls(tuple(summary.layers), model, tuple(layers))

    def lut(self, acc_bits: dict[str, int]) -> int:
        missing = sorted(set(self.layers) - set(acc_bits))
        if missing:
            raise FlowError(f"the LUT surrogate needs a P for every A2Q layer; missing: {missing}")
        built = {row.layer: bits_of(row.acc_datatype) for row in self.rows
                 if row.layer in acc_bits and bits_of(row.acc_datatype)}
        rows = []
        for row in self.rows:
            row = replace(row)
            if row.layer in acc_bits and row.acc_datatype:
                row.acc_datatype = f"INT{acc_bits[row.layer]}"
            sources = [name for name in row.acc_layers or [] if name in built]
            if sources and bits_of(row.threshold_datatype):
                margin = bits_of(row.threshold_datatype) - max(built[name] for name in sources)
                row.threshold_datatype = f"INT{max(acc_bits[name] for name in sources) + margin}"
            rows.append(row)
        add_model_figures(rows, self.model)
        return int(model_totals(rows)["lut_model"])


def quality_of(metrics: dict | None) -> float | None:
    """Top-1 in % for classifiers, PSNR in dB for super-resolution."""
    if not metrics:
        return None
    if metrics.get("test_top1") is not None:
        return 100.0 * metrics["test_top1"]
    return metrics.get("test_psnr")


def map_file(root: Path, acc_bits: dict[str, int]) -> Path:
    """A JSON file holding ``acc_bits`` (layer -> P), named by its content, under ``root``."""
    path = Path(root) / "acc_bits_maps" / f"{settings_digest(acc_bits, chars=16)}.json"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(acc_bits, indent=2, sort_keys=True))
    return path


def candidate_options(base: BuildOptions, cfg: SearchConfig, acc_bits: dict[str, int], quantizer: str) -> BuildOptions:
    """The build options of ``acc_bits``: uniform (one P) when every layer has the same, else a per-layer map."""
    widths = set(acc_bits.values())
    uniform = len(widths) == 1
    return replace(base, quantizer=quantizer, acc_bits=max(widths),
                   acc_bits_map=None if uniform else str(map_file(base.work_root, acc_bits)))


def evaluate_candidate(options: BuildOptions) -> TaskOutput:
    """Post-training quantization (AXE) of the float checkpoint at the candidate's P (or read back)."""
    path, metrics = ensure_checkpoint(resolve_plan(options), train=True)
    return TaskOutput(value={"checkpoint": str(path), "metrics": metrics})


def checkpoint_and_build(options: BuildOptions) -> TaskOutput:
    """The checkpoint of ``options`` (A2Q fine-tuning or AXE from the float checkpoint, or read back), then
    its build; the summary comes back."""
    path, metrics = ensure_checkpoint(resolve_plan(options), train=True)
    summary = build(replace(options, checkpoint=str(path)))
    return TaskOutput(value={"checkpoint": str(path), "metrics": metrics, "summary": summary.to_dict()})


def check_config(base: BuildOptions, cfg: SearchConfig) -> tuple[int, int]:
    """Validate ``cfg`` for ``base``'s model; returns the hidden layers' (weight bits, activation bits)."""
    if cfg.quantizer not in AXE_QUANTIZERS:
        raise FlowError(f"the search scores candidates by post-training quantization: quantizer {cfg.quantizer!r}; "
                        f"valid: {', '.join(AXE_QUANTIZERS)}", option="quantizer")
    if cfg.finetune not in ("a2q", "a2q+", "none"):
        raise FlowError(f"finetune={cfg.finetune!r}; valid: a2q, a2q+, none", option="finetune")
    if cfg.acc_bits_min > cfg.acc_bits_max:
        raise FlowError(f"P range {cfg.acc_bits_min}..{cfg.acc_bits_max} is empty: give the smaller width first",
                        option="acc_bits")
    if cfg.min_quality is not None and cfg.lut_budget is not None:
        raise FlowError("give a quality floor (MIN_QUALITY) or a LUT budget (LUT_BUDGET), not both", option="min_quality")
    if cfg.trials < 0:
        raise FlowError(f"trials={cfg.trials}: give 0 or more", option="trials")
    spec = get_model_spec(base.model)
    weight_bits, act_bits = cfg.bits or spec.weight_bits, cfg.bits or spec.act_bits
    if base.model == "linear":
        act_bits = spec.act_bits  # binarized pixels
    for p in (cfg.acc_bits_min, cfg.acc_bits_max):
        acc.check_acc_bits(p, weight_bits, act_bits, input_signed=False)
    return weight_bits, act_bits


def search_base(base: BuildOptions, cfg: SearchConfig, float_checkpoint: str | None = None) -> BuildOptions:
    """The options every candidate of ``cfg`` shares (bits, width, epochs and, once known, the float
    checkpoint the candidates start from)."""
    weight_bits, act_bits = check_config(base, cfg)
    base = replace(base, weight_bits=weight_bits, act_bits=None if base.model == "linear" else act_bits,
                   width=cfg.width, epochs=base.epochs if base.epochs is not None else cfg.epochs)
    return replace(base, init_checkpoint=float_checkpoint) if float_checkpoint else base


def run_search(base: BuildOptions, cfg: SearchConfig, out_dir: Path, log=default_log, workers: int | None = None,
               address: str | None = None) -> dict:
    """Run the search of ``cfg`` for ``base``'s model; writes the outputs to ``out_dir`` and returns the
    content of ``search.json``."""
    import optuna

    started = time.monotonic()
    base = search_base(base, cfg)
    surrogate_model = load_resource_model(yosys_family_for_part(resolve_plan(base).board.fpga_part))
    if surrogate_model is None:
        raise FlowError("the search's LUT figure is the P-aware resource model: run `make calibrate` first")
    grid = ParetoGrid(quantizers=(cfg.quantizer,), acc_bits=(cfg.acc_bits_max,), bits=(base.weight_bits,), width=cfg.width,
                      epochs=base.epochs)
    start = float_start(base, grid)
    base = replace(base, init_checkpoint=start) if start else base
    reference_plan = resolve_plan(replace(base, quantizer=cfg.quantizer, acc_bits=cfg.acc_bits_max))
    layers = sorted(axe_targets(reference_plan))
    widths = list(range(cfg.acc_bits_max, cfg.acc_bits_min - 1, -1))
    log(f"[search] {base.model}: {len(layers)} A2Q layers, P {cfg.acc_bits_min}..{cfg.acc_bits_max} each; "
        f"candidates scored by {cfg.quantizer} of {start}")

    # one real build gives the layer shapes and folding the LUT figure is computed over
    reference = run_tasks([Task(key="reference", function=checkpoint_and_build,
                                kwargs={"options": replace(base, quantizer=cfg.quantizer, acc_bits=cfg.acc_bits_max)})],
                          workers=1, progress=False)[0]
    if not reference.ok:
        raise FlowError(f"the reference build ({cfg.quantizer}, P={cfg.acc_bits_max}) failed: {reference.error}")
    surrogate = LutSurrogate.of(Summary.from_dict(reference.value["summary"]), surrogate_model)
    if set(surrogate.layers) != set(layers):
        raise FlowError(f"the reference build's A2Q layers {list(surrogate.layers)} are not the model's {layers}")

    candidates: list[Candidate] = []

    def evaluate(batch: list[Candidate]) -> None:
        keyed = {}  # the assignments of one batch are distinct, and so are their plans' tags
        for candidate in batch:
            options = candidate_options(base, cfg, candidate.acc_bits, cfg.quantizer)
            keyed[resolve_plan(options).tag] = (candidate, options)
        tasks = [Task(key=key, function=evaluate_candidate, kwargs={"options": options},
                      num_gpus=gpus_for(base.device)) for key, (_, options) in keyed.items()]
        for result in run_tasks(tasks, workers=workers, address=address, progress=len(tasks) > 1,
                                description="search candidates"):
            candidate = keyed[result.key][0]
            candidate.lut_model = surrogate.lut(candidate.acc_bits)
            if result.ok:
                candidate.quality = quality_of(result.value["metrics"])
                candidate.checkpoint = result.value["checkpoint"]
            else:
                candidate.error = result.error
                log(f"[search] candidate {candidate.kind} failed: {result.error}")
        for candidate in batch:
            candidate.number = len(candidates)
            candidates.append(candidate)

    evaluate([Candidate({name: p for name in layers}, "uniform") for p in widths])
    uniform_top = next(c for c in candidates if c.kind == "uniform" and c.acc_bits[layers[0]] == cfg.acc_bits_max)
    if uniform_top.quality is None:
        raise FlowError(f"uniform P={cfg.acc_bits_max} could not be evaluated: {uniform_top.error}")
    floor = cfg.min_quality
    if floor is None and cfg.lut_budget is None:
        floor = round(cfg.floor_fraction * uniform_top.quality, 3)
    if len(layers) > 1:
        evaluate([Candidate({name: (cfg.acc_bits_min if name == probe else cfg.acc_bits_max) for name in layers}, "probe")
                  for probe in layers])

    def violation(candidate: Candidate) -> float:
        if candidate.quality is None:
            return float("inf")
        if floor is not None:
            return floor - candidate.quality
        return float(candidate.lut_model - cfg.lut_budget)

    distributions = {name: optuna.distributions.IntDistribution(cfg.acc_bits_min, cfg.acc_bits_max) for name in layers}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=cfg.seed, multivariate=True,
                                         constraints_func=lambda trial: [trial.user_attrs["violation"]])
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=sampler)

    def values(candidate: Candidate) -> dict:
        return {"values": [candidate.lut_model, candidate.quality]} if candidate.quality is not None \
            else {"state": optuna.trial.TrialState.FAIL}

    for candidate in candidates:
        if candidate.quality is not None:
            study.add_trial(optuna.trial.create_trial(params=dict(candidate.acc_bits), distributions=distributions,
                                                      user_attrs={"violation": violation(candidate)}, **values(candidate)))
    batch_size = cfg.batch or 2 * max(1, workers or 1)
    proposed = 0
    known = {json.dumps(c.acc_bits, sort_keys=True): c for c in candidates}
    while len(layers) > 1 and proposed < cfg.trials:
        asked = []
        for _ in range(min(batch_size, cfg.trials - proposed)):
            trial = study.ask(distributions)
            proposed += 1
            assignment = {name: int(trial.params[name]) for name in layers}
            key = json.dumps(assignment, sort_keys=True)
            if key not in known:
                known[key] = Candidate(assignment, "search")
                asked.append((trial, known[key], True))
            else:  # proposed before: its result stands
                asked.append((trial, known[key], False))
        evaluate([candidate for _, candidate, new in asked if new])
        for trial, candidate, _ in asked:
            trial.set_user_attr("violation", violation(candidate))
            study.tell(trial, **values(candidate))
        log(f"[search] {proposed}/{cfg.trials} candidates proposed, {len(candidates)} evaluated")

    result = summarize(candidates, cfg, floor, layers, widths)
    result.update(model=base.model, config=asdict(cfg), float_checkpoint=start, layers=layers,
                  reference_build=reference.value["summary"]["build"], search_seconds=round(time.monotonic() - started, 1))
    write_search(result, candidates, out_dir)
    if cfg.finetune != "none" and result["chosen"] is not None:
        result["finetuned"] = finetune_pair(base, cfg, result, workers, address, log)
    result["seconds"] = round(time.monotonic() - started, 1)
    write_search(result, candidates, out_dir)
    return result


def summarize(candidates: list[Candidate], cfg: SearchConfig, floor: float | None, layers: list[str],
              widths: list[int]) -> dict:
    """The Pareto set, the chosen candidate, the best uniform P at the same floor, and each layer's
    sensitivity (quality lost and LUT saved per bit removed)."""
    scored = [c for c in candidates if c.quality is not None]
    for candidate in scored:
        candidate.feasible = (candidate.quality >= floor) if floor is not None else candidate.lut_model <= cfg.lut_budget
    for index in pareto_front([(float(c.lut_model), float(c.quality)) for c in scored]):
        scored[index].on_front = True
    feasible = [c for c in scored if c.feasible]
    if floor is not None:
        key = lambda c: (c.lut_model, -c.quality)  # noqa: E731
    else:
        key = lambda c: (-c.quality, c.lut_model)  # noqa: E731
    chosen = min(feasible, key=key, default=None)
    uniform = min((c for c in feasible if c.kind == "uniform"), key=key, default=None)
    top = {c.acc_bits[layers[0]]: c for c in scored if c.kind == "uniform"}.get(cfg.acc_bits_max)
    bits_removed = cfg.acc_bits_max - cfg.acc_bits_min
    sensitivity = []
    for probe in (c for c in scored if c.kind == "probe"):
        name = next(n for n, p in probe.acc_bits.items() if p == cfg.acc_bits_min)
        sensitivity.append({"layer": name, "quality_lost_per_bit": round((top.quality - probe.quality) / bits_removed, 4),
                            "lut_saved_per_bit": round((top.lut_model - probe.lut_model) / bits_removed, 1)})
    verdict = None
    if chosen is not None and uniform is not None:
        saved = uniform.lut_model - chosen.lut_model
        if saved > 0:
            verdict = (f"per-layer P saves {saved} LUT ({100 * saved / uniform.lut_model:.1f} %) against the best uniform "
                       f"P={uniform.acc_bits[layers[0]]} at {'quality >= ' + format(floor, '.4g') if floor is not None else 'the budget'}")
        elif len(layers) == 1:
            verdict = "one A2Q layer: a per-layer assignment is a uniform P, so none can beat the best uniform P"
        else:
            verdict = (f"no per-layer assignment found with fewer LUT than uniform P={uniform.acc_bits[layers[0]]} "
                       "at the same floor")
    return {
        "floor": floor, "lut_budget": cfg.lut_budget, "uniform_widths": widths,
        "chosen": chosen.row() if chosen else None,
        "best_uniform": uniform.row() if uniform else None,
        "pareto_set": [c.row() for c in sorted(scored, key=lambda c: c.lut_model) if c.on_front],
        "sensitivity": sensitivity, "verdict": verdict,
        "candidates": len(candidates), "failed": sum(1 for c in candidates if c.error),
    }


def finetune_pair(base: BuildOptions, cfg: SearchConfig, result: dict, workers, address, log) -> dict:
    """A2Q fine-tuning and a build of the chosen assignment and of the best uniform P (same epochs, same
    float start): the search's claim checked on real builds."""
    pair = {"chosen": json.loads(result["chosen"]["acc_bits"])}
    if result["best_uniform"] is not None and result["best_uniform"]["acc_bits"] != result["chosen"]["acc_bits"]:
        pair["best_uniform"] = json.loads(result["best_uniform"]["acc_bits"])
    tasks = [Task(key=name, function=checkpoint_and_build,
                  kwargs={"options": candidate_options(base, cfg, acc_bits, cfg.finetune)},
                  num_gpus=gpus_for(base.device)) for name, acc_bits in pair.items()]
    log(f"[search] fine-tuning with {cfg.finetune} and building: {', '.join(pair)}")
    out = {}
    for item in run_tasks(tasks, workers=workers, address=address, description="fine-tune and build"):
        if not item.ok:
            out[item.key] = {"error": item.error}
            continue
        summary = Summary.from_dict(item.value["summary"])
        out[item.key] = {"build": summary.build, "quality": quality_of(item.value["metrics"]),
                         "lut_model": summary.totals.get("lut_model"), "ff_model": summary.totals.get("ff_model"),
                         "lut": summary.totals.get("lut"), "checkpoint": item.value["checkpoint"]}
    if "best_uniform" not in pair and result["best_uniform"] is not None:
        out["best_uniform"] = out["chosen"]  # the same assignment: one fine-tuning and build serves both
    return out


def write_search(result: dict, candidates: list[Candidate], out_dir: Path) -> dict[str, Path]:
    """``search.json``, ``trials.csv``, ``pareto_set.csv``, ``chosen_acc_bits.json``, ``search.md``,
    ``search.png`` (quality vs LUT) and ``sensitivity.png`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / SEARCH_JSON, "trials": out_dir / "trials.csv", "pareto": out_dir / "pareto_set.csv",
             "chosen": out_dir / CHOSEN_JSON, "md": out_dir / "search.md", "png": out_dir / "search.png",
             "sensitivity": out_dir / "sensitivity.png"}
    write_text_atomic(paths["json"], json.dumps(result, indent=2))
    for name, rows in (("trials", [c.row() for c in candidates]), ("pareto", result["pareto_set"])):
        with open(paths[name], "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=TRIAL_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    if result["chosen"]:
        write_text_atomic(paths["chosen"], json.dumps(json.loads(result["chosen"]["acc_bits"]), indent=2, sort_keys=True))
    write_text_atomic(paths["md"], search_markdown(result))
    plot_search(result, candidates, paths["png"])
    plot_sensitivity(result, paths["sensitivity"])
    return paths


def search_markdown(result: dict) -> str:
    config = result["config"]
    lines = [f"# Per-layer accumulator widths: {result['model']}", "",
             f"{len(result['layers'])} A2Q layers, P {config['acc_bits_min']}..{config['acc_bits_max']} each; candidates "
             f"scored by {config['quantizer']} of `{result['float_checkpoint']}` (quality) and the P-aware resource "
             f"model over the layers of build `{result['reference_build']}` (LUT).", "",
             f"Floor: {result['floor']}" if result["floor"] is not None else f"LUT budget: {result['lut_budget']}", "",
             f"Candidates: {result['candidates']} ({result['failed']} failed); search {result['search_seconds']} s"
             + (f", with fine-tuning and builds {result['seconds']} s" if "seconds" in result else "") + ".", "",
             f"**{result['verdict'] or 'no feasible candidate'}**", ""]
    for name in ("chosen", "best_uniform"):
        row = result[name]
        if row:
            lines.append(f"- {name}: quality {row['quality']:.4g}, LUT (model) {row['lut_model']}, P "
                         f"{row['acc_bits_min']}..{row['acc_bits_max']} (mean {row['acc_bits_mean']})")
    if result.get("finetuned"):
        lines += ["", "After fine-tuning with A2Q from the float checkpoint and building:", "",
                  "| point | build | quality | lut_model | ff_model | FINN lut |", "|---|---|---|---|---|---|"]
        for name, item in result["finetuned"].items():
            if "error" in item:
                lines.append(f"| {name} | failed: {item['error']} | | | | |")
            else:
                quality = "-" if item["quality"] is None else f"{item['quality']:.4g}"
                lines.append(f"| {name} | {item['build']} | {quality} | {item['lut_model']} | {item['ff_model']} | "
                             f"{item['lut']} |")
    if result["sensitivity"]:
        lines += ["", "Sensitivity (one layer at the lowest P, the others at the highest):", "",
                  "| layer | quality lost per bit | LUT saved per bit |", "|---|---|---|"]
        lines += [f"| {s['layer']} | {s['quality_lost_per_bit']} | {s['lut_saved_per_bit']} |" for s in result["sensitivity"]]
    lines += ["", "Pareto set (least LUT first):", "", "| quality | lut_model | P min..max (mean) | kind |", "|---|---|---|---|"]
    lines += [f"| {r['quality']:.4g} | {r['lut_model']} | {r['acc_bits_min']}..{r['acc_bits_max']} ({r['acc_bits_mean']}) | "
              f"{r['kind']} |" for r in result["pareto_set"]]
    return "\n".join(lines) + "\n"


def plot_search(result: dict, candidates: list[Candidate], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    scored = [c for c in candidates if c.quality is not None]
    for kind, style in (("search", dict(color="0.6", s=14, label="per-layer candidates")),
                        ("probe", dict(color="tab:orange", s=14, marker="s", label="one layer at the lowest P"))):
        members = [c for c in scored if c.kind == kind]
        if members:
            ax.scatter([c.lut_model for c in members], [c.quality for c in members], alpha=0.7, **style)
    uniform = sorted((c for c in scored if c.kind == "uniform"), key=lambda c: c.lut_model)
    ax.plot([c.lut_model for c in uniform], [c.quality for c in uniform], "o-", color="tab:blue", label="uniform P")
    for c in uniform:
        ax.annotate(f"P={next(iter(c.acc_bits.values()))}", (c.lut_model, c.quality), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    front = sorted((c for c in scored if c.on_front), key=lambda c: c.lut_model)
    ax.step([c.lut_model for c in front], [c.quality for c in front], where="post", color="tab:green",
            label="Pareto set")
    if result["chosen"]:
        ax.scatter([result["chosen"]["lut_model"]], [result["chosen"]["quality"]], marker="*", s=180, color="tab:red",
                   zorder=5, label="chosen")
    if result["floor"] is not None:
        ax.axhline(result["floor"], color="tab:red", ls=":", lw=1, label=f"floor {result['floor']:.4g}")
    if result["lut_budget"] is not None:
        ax.axvline(result["lut_budget"], color="tab:red", ls=":", lw=1, label=f"budget {result['lut_budget']}")
    metric = "top-1 %" if get_model_spec(result["model"]).task == "classification" else "PSNR dB"
    ax.set(title=f"{result['model']}: per-layer P search ({result['config']['quantizer']} quality, model LUT)",
           xlabel="LUT (P-aware resource model)", ylabel=metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_sensitivity(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["sensitivity"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.8 + 0.28 * max(1, len(rows))), sharey=True)
    if rows:
        names = [r["layer"] for r in rows]
        axes[0].barh(names, [r["quality_lost_per_bit"] for r in rows], color="tab:red")
        axes[1].barh(names, [r["lut_saved_per_bit"] for r in rows], color="tab:green")
        axes[0].invert_yaxis()
    else:
        axes[0].text(0.5, 0.5, "one A2Q layer: no per-layer probes", ha="center", transform=axes[0].transAxes)
    metric = "top-1 points" if get_model_spec(result["model"]).task == "classification" else "dB"
    axes[0].set(title=f"quality lost per bit removed ({metric})")
    axes[1].set(title="LUT saved per bit removed (model)")
    for ax in axes:
        ax.grid(alpha=0.3, axis="x")
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
