"""Calibration of the P-aware resource model (:mod:`flow.core.resource_model`) by open synthesis of FINN's
own RTL over a grid of layer shapes, each at several accumulator widths P.

Shapes are split by shape (never by P) into a fit set and a held-out set, so the held-out errors and the
P=32 -> P reduction ratios are those of shapes the fit never saw. Synthesis results are cached
(``flow.hw.synth``), so a rerun only synthesizes what changed.
"""

from __future__ import annotations

import importlib.metadata
import itertools
import json
import os
import random
import statistics
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

from flow.core.errors import FlowError
from flow.core.log import log
from flow.core.resource_model import (
    FEATURE_NAMES,
    FIGURE_FEATURES,
    FIGURES,
    FORMS,
    OPS,
    LayerShape,
    ResourceModel,
    features,
)
from flow.experiments.executor import ADDRESS_ENV, Task, run_tasks
from flow.hw.synth import (
    MANIFEST_NAME,
    RESOURCE_FIELDS,
    SynthJob,
    generate_layer_hdl,
    make_mvau_model,
    make_thresholding_model,
    pack_hdl,
    stage_synthesis,
    synthesize_layers,
    write_cache_entry,
    yosys_family_for_part,
    yosys_version,
)

# One part per Yosys family the resource model is fitted for: 7-series (the PYNQ boards) and UltraScale+
# (ZCU104, KV260, Ultra96, the Alveo cards), whose RTL MVU is built on another DSP slice.
CALIBRATION_PARTS = {"xc7": "xc7z020clg400-1", "xcup": "xczu7ev-ffvc1156-2-e"}
CALIBRATION_PART = CALIBRATION_PARTS["xc7"]
ACC_BITS_GRID = (12, 16, 24, 32)
# what the calibration measures for a shape of each op (thresholding 2: thresholds as arithmetic progressions,
# not random values; weight_memory 2: in context, not the streamer alone); a change makes earlier
# measurements of that op unusable (a file without versions has 1 for each)
LAYER_CONTENT_VERSIONS = {"mvau": 1, "thresholding": 2, "weight_memory": 2}


# Shapes every grid has besides the sample: threshold memories across Yosys's LUT/BRAM boundary (one stage,
# 512-2048 deep), the PE=32 thresholding of full-width layers at 1000 frames/s, and the zoo's single-PE MVAUs
# with wide SIMD or mixed widths (ESPCN: SIMD=48 at 4 bits, 8-bit weights on 4-bit inputs, an 8-bit first layer).
FIXED_SHAPES = (
    LayerShape("mvau", 1, 0, simd=48, weight_bits=4, input_bits=4),
    LayerShape("mvau", 1, 0, simd=8, weight_bits=8, input_bits=4),
    LayerShape("mvau", 1, 0, simd=5, weight_bits=8, input_bits=8),
    LayerShape("thresholding", 1, 0, channels=512, thresholds=1),
    LayerShape("thresholding", 1, 0, channels=1024, thresholds=1),
    LayerShape("thresholding", 1, 0, channels=2048, thresholds=1),
    LayerShape("thresholding", 32, 0, channels=64, thresholds=15),
    LayerShape("thresholding", 32, 0, channels=256, thresholds=15),
)
# FINN's weight streamer (memstream) of an MVAU, by PE, SIMD, weight bits and depth: stream widths of 4-512
# bits, memories of 512 bits to 128 kbit, on both sides of the rule that splits LUTRAM and BRAM
WEIGHT_MEMORY_SHAPES = tuple(
    LayerShape("weight_memory", pe, 0, simd=simd, weight_bits=bits, depth=depth)
    for pe, simd, bits, depth in ((1, 1, 4, 128), (1, 1, 4, 256), (1, 1, 4, 512), (1, 1, 8, 144), (1, 1, 8, 256),
                                  (1, 1, 8, 512), (1, 4, 4, 64), (1, 4, 4, 128), (2, 4, 4, 32), (1, 12, 4, 192),
                                  (1, 12, 4, 1024), (2, 8, 4, 32), (2, 8, 4, 64), (4, 8, 4, 16), (4, 8, 4, 512),
                                  (4, 16, 4, 64), (8, 16, 4, 256))
)


def default_grid(mvau_shapes: int = 14, thresholding_shapes: int = 20, seed: int = 0) -> list[LayerShape]:
    """A seeded sample of the shapes the zoo's layers have (PE 1-16, SIMD 1-32, 4- and 8-bit operands,
    1/3/15 thresholds per channel over 16-256 channels), :data:`FIXED_SHAPES` and the weight memories of
    :data:`WEIGHT_MEMORY_SHAPES`. Their ``acc_bits`` is 0: each MVAU and Thresholding shape is synthesized at
    every P of :data:`ACC_BITS_GRID`, a weight memory once (it has no P)."""
    rng = random.Random(seed)
    mvau = [LayerShape("mvau", pe, 0, simd, bits, bits)
            for pe, simd, bits in itertools.product((1, 2, 4, 8, 16), (1, 2, 4, 8, 16, 32), (4, 8))]
    thresholding = [LayerShape("thresholding", pe, 0, channels=channels, thresholds=thresholds)
                    for pe, channels, thresholds in itertools.product((1, 2, 4, 8, 16), (16, 64, 256), (1, 3, 15))]
    return (rng.sample(mvau, mvau_shapes) + rng.sample(thresholding, thresholding_shapes) + list(FIXED_SHAPES)
            + list(WEIGHT_MEMORY_SHAPES))


def tools_now(part: str = CALIBRATION_PART) -> dict:
    """The tool versions and part a calibration synthesizes with, and the versions of what it synthesizes."""
    return {"yosys": yosys_version(), "finn-plus": importlib.metadata.version("finn-plus"), "part": part,
            "layer_content": dict(LAYER_CONTENT_VERSIONS)}


def reusable_measurements(previous: dict | None, part: str = CALIBRATION_PART) -> dict[LayerShape, dict]:
    """The synthesized figures in a previous model file's data (any format), by point, when they were made
    with the tools and layer content there are now (Yosys is deterministic, so the same FINN RTL gives the
    same figures): a refit that changes only the model's form or adds shapes synthesizes only what is new."""
    now = tools_now(part)
    tools = (previous or {}).get("tools") or {}
    if {k: v for k, v in tools.items() if k != "layer_content"} != {k: v for k, v in now.items() if k != "layer_content"}:
        return {}
    then = tools.get("layer_content") or {}
    try:
        points = {LayerShape(**{k: v for k, v in m.items() if not k.endswith("_synth")}):
                  {f"{f}_synth": int(m[f"{f}_synth"]) for f in FIGURES} for m in previous["grid"]["measured"]}
    except (KeyError, TypeError, ValueError):
        return {}
    return {point: figures for point, figures in points.items()
            if then.get(point.op, 1) == now["layer_content"][point.op]}


def shape_of(point: LayerShape) -> LayerShape:
    """The grid shape a point was synthesized from (its P left out)."""
    return replace(point, acc_bits=0)


def layer_model(shape: LayerShape, seed: int = 0, part: str = CALIBRATION_PART):
    """A one-node FINN model of ``shape`` for ``part`` (MVAU: MW = 8 SIMD, MH = 4 PE, random weights; a weight
    memory: an MVAU of ``depth`` words; thresholds: a random arithmetic progression per channel)."""
    rng = np.random.default_rng(seed)
    if shape.op == "weight_memory":
        rows = 4 if shape.depth % 4 == 0 else 1  # depth = (MW / SIMD) x (MH / PE)
        top = 2 ** (shape.weight_bits - 1) - 1
        weights = rng.integers(-top, top + 1, size=(shape.depth // rows * shape.simd, rows * shape.pe))
        return make_mvau_model(weights, f"INT{shape.weight_bits}", f"INT{shape.weight_bits}", "INT32", pe=shape.pe,
                               simd=shape.simd, fpgapart=part)
    if shape.op == "mvau":
        top = 2 ** (shape.weight_bits - 1) - 1  # narrow range: what FINN's 7-series RTL MVU takes
        weights = rng.integers(-top, top + 1, size=(8 * shape.simd, 4 * shape.pe))
        return make_mvau_model(weights, f"INT{shape.input_bits}", f"INT{shape.weight_bits}", f"INT{shape.acc_bits}",
                               pe=shape.pe, simd=shape.simd, fpgapart=part)
    # as a uniform quantizer after a folded batch norm has them: per channel an arithmetic progression
    # (start + k x step) somewhere in the P-bit range, spanning 5-100 % of it
    low, high = -(2 ** (shape.acc_bits - 1)), 2 ** (shape.acc_bits - 1) - 1
    span = rng.uniform(0.05, 1.0, size=shape.channels) * (high - low)
    start = low + rng.uniform(0.0, 1.0, size=shape.channels) * (high - low - span)
    step = span / max(1, shape.thresholds - 1)
    thresholds = np.round(start[:, None] + step[:, None] * np.arange(shape.thresholds))
    out_bits = max(1, int(np.ceil(np.log2(shape.thresholds + 1))))
    return make_thresholding_model(thresholds, f"INT{shape.acc_bits}", output_dtype=f"UINT{out_bits}", pe=shape.pe,
                                   fpgapart=part)


def synthesize_on_executor(jobs: list[SynthJob], workers: int | None, address: str | None) -> list[dict]:
    """The jobs as executor tasks (a Ray cluster at ``address``, or a local Ray instance with ``workers``):
    each sends its HDL as bytes (:func:`~flow.hw.synth.pack_hdl`), so a worker needs no shared disk; results
    already in the driver's cache are not sent, new ones are stored there. A failed job gives ``{"error"}``."""
    staged = [stage_synthesis(job.hdl_dir, job.top_module, job.part_family) for job in jobs]
    results: list[dict | None] = [stage.cached(job.cache_dir) for stage, job in zip(staged, jobs)]
    tasks = [Task(key=f"{index}:{job.name or Path(job.hdl_dir).name}", function="flow.hw.synth:synthesize_packed",
                  kwargs={"name": Path(job.hdl_dir).name, "files": pack_hdl(job.hdl_dir), "part_family": job.part_family})
             for index, job in enumerate(jobs) if results[index] is None]
    log(f"[calibrate] {len(jobs) - len(tasks)} layers from the synthesis cache, {len(tasks)} as executor tasks")
    for task, outcome in zip(tasks, run_tasks(tasks, workers=workers, address=address, description="synthesis jobs")):
        index = int(task.key.split(":", 1)[0])
        job = jobs[index]
        if not outcome.ok:
            results[index] = {"error": outcome.error}
            continue
        results[index] = outcome.value
        cache_file = staged[index].cache_file(job.cache_dir)
        if cache_file is not None:
            write_cache_entry(cache_file, outcome.value)
    return results  # type: ignore[return-value]


def point_name(point: LayerShape) -> str:
    """A calibration point in a progress line."""
    if point.op == "weight_memory":
        return f"weight memory {point.pe * point.simd * point.weight_bits} bits x {point.depth}"
    detail = f"SIMD{point.simd}" if point.op == "mvau" else f"C{point.channels} N{point.thresholds}"
    return f"{point.op} PE{point.pe} {detail} P{point.acc_bits}"


def synthesize_grid(points: list[LayerShape], work_dir: Path, cache_dir: Path, workers: int | None = None,
                    address: str | None = None, on_ray: bool = False, part: str = CALIBRATION_PART,
                    weight_memory_in_context: bool = True) -> list[dict]:
    """Synthesize every point for ``part`` (FINN code generation, then Yosys): as parallel Yosys processes here,
    or with ``address`` (a Ray cluster) or ``on_ray`` (a local Ray instance) as executor tasks. Results in point
    order. A weight memory is measured in context, as what it adds to its layer (the layer with its streamer
    less the same layer's datapath: Yosys merges part of the streamer's registers and muxes into the layer), or
    with ``weight_memory_in_context=False`` as FINN's streamer wrapper alone."""
    jobs, spans = [], []
    for index, point in enumerate(points):
        model = layer_model(point, part=part)
        node = model.graph.node[0]
        expected = "Thresholding_rtl" if point.op == "thresholding" else "MVAU_rtl"
        if node.op_type != expected:
            raise FlowError(f"calibration point {point} became {node.op_type}, not {expected}")
        family, name = yosys_family_for_part(part), point_name(point)
        if point.op != "weight_memory":
            hdl_dir = generate_layer_hdl(model, node, work_dir / f"point_{index}", fpgapart=part,
                                         with_weight_memory=False)
            jobs.append(SynthJob(hdl_dir, part_family=family, cache_dir=cache_dir, name=name))
        elif weight_memory_in_context:
            for suffix, memory in (("layer", True), ("datapath", False)):
                hdl_dir = generate_layer_hdl(model, node, work_dir / f"point_{index}_{suffix}", fpgapart=part,
                                             with_weight_memory=memory)
                jobs.append(SynthJob(hdl_dir, part_family=family, cache_dir=cache_dir, name=f"{name} ({suffix})"))
        else:
            hdl_dir = generate_layer_hdl(model, node, work_dir / f"point_{index}", fpgapart=part)
            top = f"{json.loads((hdl_dir / MANIFEST_NAME).read_text())['core_top']}_memstream_wrapper"
            jobs.append(SynthJob(hdl_dir, top_module=top, part_family=family, cache_dir=cache_dir, name=name))
        spans.append(len(jobs))
    if address or on_ray or os.environ.get(ADDRESS_ENV):
        results = synthesize_on_executor(jobs, workers, address)
    else:
        results = synthesize_layers(jobs, workers=workers, log=log, keep_going=True)
    by_point, start = [], 0
    for end in spans:
        parts = results[start:end]
        failed = next((part for part in parts if "error" in part), None)
        if failed or len(parts) == 1:
            by_point.append(failed or parts[0])
        else:  # the layer with its streamer less its datapath
            layer, datapath = parts
            by_point.append({key: layer[key] - datapath[key] for key in RESOURCE_FIELDS})
        start = end
    return by_point


def write_probe(rows: list[dict], out: Path) -> str:
    """Write a probe's rows (one dict per synthesized shape) to ``out`` as JSON; return them as a Markdown
    table (columns: the first row's keys)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")
    columns = list(rows[0]) if rows else []
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(column)) for column in columns) + " |" for row in rows]
    return "\n".join(lines)


def fit_coefficients(points: list[LayerShape], measured: list[dict]) -> dict:
    """Per op and figure: non-negative least squares on relative error (every point weighs the same) for a
    linear op, least squares on the logarithms for a log-linear one (:data:`FORMS`)."""
    coefficients = {}
    for op in OPS:
        rows = [(features(p), m) for p, m in zip(points, measured) if p.op == op]
        if not rows:
            raise FlowError(f"no calibration point of {op}")
        coefficients[op] = {}
        for figure in FIGURES:
            used = [FEATURE_NAMES[op].index(name) for name in FIGURE_FEATURES[op][figure]]
            x = np.array([[r[0][i] for i in used] for r in rows])
            y = np.array([max(r[1][f"{figure}_synth"], 1) for r in rows], dtype=float)
            if FORMS[op] == "log-linear":
                solution = np.linalg.lstsq(x, np.log(y), rcond=None)[0]
            else:
                solution, _ = nnls(x / y[:, None], np.ones(len(y)))
            full = [0.0] * len(FEATURE_NAMES[op])
            for i, c in zip(used, solution):
                full[i] = float(c)
            coefficients[op][figure] = full
    return coefficients


def validation_errors(predict, points: list[LayerShape], measured: list[dict]) -> dict:
    """Per op and figure: median and worst absolute relative error, and the worst error of the P=32 -> P
    reduction ratio (``predict(point)`` vs synthesis) over the shapes in ``points``."""
    errors = {}
    for op in OPS:
        pairs = [(p, m) for p, m in zip(points, measured) if p.op == op]
        errors[op] = {}
        for figure in FIGURES:
            relative = [abs(predict(p)[figure] - m[f"{figure}_synth"]) / max(m[f"{figure}_synth"], 1)
                        for p, m in pairs]
            at_32 = {shape_of(p): (predict(p)[figure], m[f"{figure}_synth"]) for p, m in pairs if p.acc_bits == 32}
            ratio_errors = []
            for p, m in pairs:
                wide = at_32.get(shape_of(p))
                if wide is None or p.acc_bits == 32:
                    continue
                model_ratio = wide[0] / max(predict(p)[figure], 1)
                synth_ratio = wide[1] / max(m[f"{figure}_synth"], 1)
                ratio_errors.append(abs(model_ratio - synth_ratio) / synth_ratio)
            errors[op][figure] = {
                "points": len(relative),
                "median_abs_error": round(statistics.median(relative), 4) if relative else None,
                "worst_abs_error": round(max(relative), 4) if relative else None,
                "worst_reduction_ratio_error": round(max(ratio_errors), 4) if ratio_errors else None,
            }
    return errors


def cross_validated_predictions(points: list[LayerShape], measured: list[dict]) -> dict[LayerShape, dict]:
    """Each point's figures as predicted by a fit on every other shape (leave one shape out, all its P)."""
    predictions = {}
    for shape in {shape_of(p) for p in points}:
        rest = [(p, m) for p, m in zip(points, measured) if shape_of(p) != shape]
        model = ResourceModel(family="", coefficients=fit_coefficients([p for p, _ in rest], [m for _, m in rest]))
        predictions.update({p: model.predict(p) for p in points if shape_of(p) == shape})
    return predictions


def calibrate(work_dir: Path, cache_dir: Path, held_out_fraction: float = 0.25, seed: int = 0,
              grid: list[LayerShape] | None = None, workers: int | None = None,
              address: str | None = None, previous: dict | None = None, family: str = "xc7") -> ResourceModel:
    """Synthesize the grid for the Yosys ``family`` (its part in :data:`CALIBRATION_PARTS`; here, or on the Ray
    cluster at ``address``), fit on most shapes, measure the errors on the held-out shapes, return the model.
    Points a previous model file's data (``previous``) measured with today's tools are not synthesized again
    (:func:`reusable_measurements`)."""
    if family not in CALIBRATION_PARTS:
        raise FlowError(f"no calibration part for Yosys family {family!r}; valid: {', '.join(CALIBRATION_PARTS)}",
                        option="family")
    part = CALIBRATION_PARTS[family]
    grid = list(grid or default_grid(seed=seed))
    rng = random.Random(seed)
    held_out = set()
    for op in OPS:
        shapes = [g for g in grid if g.op == op]
        held_out |= set(rng.sample(shapes, max(1, round(held_out_fraction * len(shapes)))))
    # FINN's RTL MVU refuses an accumulator narrower than one product (mvu.sv elaboration check)
    points = [replace(g, acc_bits=p) for g in grid if g.op != "weight_memory" for p in ACC_BITS_GRID
              if g.op != "mvau" or p > g.weight_bits + g.input_bits] + [g for g in grid if g.op == "weight_memory"]
    log(f"[calibrate] {len(points)} layers ({len(grid)} shapes x P {ACC_BITS_GRID}), {len(held_out)} shapes held out")
    known = reusable_measurements(previous, part)
    new = [p for p in points if p not in known]
    if known:
        log(f"[calibrate] {len(points) - len(new)} layers measured by the previous fit with the same tools")
    synthesized = dict(zip(new, synthesize_grid(new, Path(work_dir), Path(cache_dir), workers=workers,
                                                address=address, part=part))) if new else {}
    measured = [known.get(p) or synthesized[p] for p in points]
    failed = [(p, m["error"].splitlines()[0]) for p, m in zip(points, measured) if "error" in m]
    for point, reason in failed:
        log(f"[calibrate] left out {point}: {reason}")
    kept = [(p, m) for p, m in zip(points, measured) if "error" not in m]
    if not kept:
        raise FlowError("every calibration point failed to synthesize")
    points, measured = [p for p, _ in kept], [m for _, m in kept]
    is_held_out = [shape_of(p) in held_out for p in points]
    fit_points = [p for p, h in zip(points, is_held_out) if not h]
    fit_measured = [m for m, h in zip(measured, is_held_out) if not h]
    model = ResourceModel(
        family=family,
        coefficients=fit_coefficients(fit_points, fit_measured),
        tools=tools_now(part),
        grid={"acc_bits": list(ACC_BITS_GRID), "features": {op: list(FEATURE_NAMES[op]) for op in OPS}, "forms": FORMS,
              "shapes": [{k: v for k, v in asdict(g).items() if k != "acc_bits"} | {"held_out": g in held_out}
                         for g in grid],
              "measured": [asdict(p) | {f"{f}_synth": m[f"{f}_synth"] for f in FIGURES}
                           for p, m in zip(points, measured)]},
    )
    model.validation = {
        "held_out": validation_errors(model.predict, [p for p, h in zip(points, is_held_out) if h],
                                      [m for m, h in zip(measured, is_held_out) if h]),
        # every shape held out once: less dependent on which shapes the seed held out
        "cross_validation": validation_errors(cross_validated_predictions(points, measured).__getitem__, points,
                                              measured),
        "fit": validation_errors(model.predict, fit_points, fit_measured),
    }
    return model
