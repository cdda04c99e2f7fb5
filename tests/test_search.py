"""Per-layer accumulator search (make search): a tiny search end to end at widths where A2Q binds, the LUT
surrogate against the build it was made from, and the choice of the chosen point and the verdict."""

import csv
import json
from dataclasses import replace

import pytest

import flow.pipeline
from flow.artifacts import Summary
from flow.core.accumulator import exact_acc_bits
from flow.core.errors import FlowError
from flow.experiments.search import (
    CHOSEN_JSON,
    SEARCH_JSON,
    Candidate,
    LutSurrogate,
    SearchConfig,
    candidate_options,
    check_config,
    run_search,
    search_base,
    summarize,
)
from flow.options import BuildOptions, resolve_plan
from flow.pipeline import build, make_model, sample_inputs
from flow.reports.summary import load_resource_model
from flow.training.checkpoints import load_checkpoint
from models.inspect import capture_quant_layers

LAYERS = ["a", "b"]


@pytest.fixture(scope="module")
def tiny_search(tmp_path_factory):
    """UNet at 1/8 width with 4-bit weights and activations, each layer's P in 11..12: every layer with more
    than 17 inputs per output would need more than 12 bits unconstrained, so the targets bind."""
    root = tmp_path_factory.mktemp("search")
    patch = pytest.MonkeyPatch()
    patch.setattr(flow.pipeline, "AXE_CALIBRATION_SAMPLES", 64)  # AXE's quality at 64 patches is enough here
    base = BuildOptions(model="unet", max_steps_per_epoch=2, synth=False, rtlsim=False, reports_root=root / "r",
                        work_root=root / "w", checkpoint_root=root / "c")
    cfg = SearchConfig(acc_bits_min=11, acc_bits_max=12, trials=2, bits=4, width=0.125, epochs=1, batch=2,
                       finetune="none")
    try:
        result = run_search(base, cfg, root / "out", workers=1)
    finally:
        patch.undo()
    return root, base, cfg, result


def test_a_tiny_search_writes_its_results(tiny_search):
    root, _, cfg, result = tiny_search
    out = root / "out"
    assert {p.name for p in out.iterdir()} >= {SEARCH_JSON, CHOSEN_JSON, "trials.csv", "pareto_set.csv", "search.md",
                                               "search.png", "sensitivity.png"}
    assert json.loads((out / SEARCH_JSON).read_text())["verdict"] == result["verdict"] and result["failed"] == 0
    layers = result["layers"]
    assert len(layers) == 6
    rows = list(csv.DictReader(open(out / "trials.csv")))
    kinds = [row["kind"] for row in rows]
    # two uniform points, one probe per layer, then what the sampler proposed (at most `trials`)
    assert kinds[:2 + len(layers)] == ["uniform"] * 2 + ["probe"] * len(layers)
    assert len(rows) <= 2 + len(layers) + cfg.trials
    uniform = {int(row["acc_bits_max"]): int(row["lut_model"]) for row in rows if row["kind"] == "uniform"}
    probes = [int(row["lut_model"]) for row in rows if row["kind"] == "probe"]
    assert uniform[11] < min(probes) <= max(probes) < uniform[12]  # one bit less in one layer saves some LUT

    chosen = json.loads((out / CHOSEN_JSON).read_text())
    assert set(chosen) == set(layers) and set(chosen.values()) <= {11, 12}
    assert result["chosen"]["quality"] >= result["floor"] and result["chosen"]["lut_model"] <= result["best_uniform"]["lut_model"]


@pytest.mark.slow
def test_the_chosen_map_builds_with_each_layer_held_to_its_target(tiny_search):
    # the chosen map is a per-layer target the build accepts: A2Q fine-tuning and the build hold each layer to it
    root, base, cfg, result = tiny_search
    out, layers = root / "out", result["layers"]
    chosen = json.loads((out / CHOSEN_JSON).read_text())
    base = search_base(base, cfg, result["float_checkpoint"])
    summary = build(replace(base, quantizer="a2q", acc_bits=12, acc_bits_map=str(out / CHOSEN_JSON)))
    by_layer = {row.layer: row for row in summary.layers if row.acc_bits_target is not None}
    assert set(by_layer) == set(layers)
    for name, row in by_layer.items():
        assert row.acc_bits_target == chosen[name] and row.acc_bits_exact <= chosen[name]
    assert max(row.acc_bits_datatype_bound for row in by_layer.values()) > 12  # the targets bind
    assert summary.finn_check.passed


def test_axe_holds_each_layer_to_its_own_target(tiny_search):
    root, base, cfg, result = tiny_search
    mixed = next(row for row in csv.DictReader(open(root / "out" / "trials.csv")) if row["kind"] == "probe")
    targets = json.loads(mixed["acc_bits"])
    base = search_base(base, cfg, result["float_checkpoint"])
    plan = resolve_plan(candidate_options(base, cfg, targets, cfg.quantizer))
    model = make_model(plan)
    model.load_state_dict(load_checkpoint(mixed["checkpoint"])["state_dict"])
    captured = capture_quant_layers(model, sample_inputs(plan, 1))
    for name, p in targets.items():
        layer = captured[name]
        assert exact_acc_bits(layer["weights_int"], layer["input_bits"], layer["input_signed"]) <= p


def test_the_surrogate_reproduces_the_build_it_was_made_from(tiny_search):
    root, _, cfg, result = tiny_search
    summary = Summary.read(root / "r" / result["reference_build"] / "summary.json")
    surrogate = LutSurrogate.of(summary, load_resource_model())
    assert list(surrogate.layers) == result["layers"]
    at_built_p = {row.layer: int(row.acc_datatype.removeprefix("INT")) for row in summary.layers
                  if row.layer in surrogate.layers}
    assert surrogate.lut(at_built_p) == summary.totals["lut_model"]
    # the reference build is AXE at P=12 for every layer, where the weights' data types alone would need more
    a2q_rows = [row for row in summary.layers if row.layer in surrogate.layers]
    assert all(row.acc_bits_target == 12 and row.acc_bits_exact <= 12 for row in a2q_rows)
    assert max(row.acc_bits_datatype_bound for row in a2q_rows) > 12 and summary.finn_check.passed
    with pytest.raises(FlowError, match="needs a P for every A2Q layer; missing"):
        surrogate.lut({})


def candidate(a, b, quality, lut, kind="search"):
    return Candidate({"a": a, "b": b}, kind, quality=quality, lut_model=lut)


def test_the_chosen_point_is_the_least_lut_at_the_floor_and_beats_uniform_only_when_it_does():
    cfg = SearchConfig(acc_bits_min=10, acc_bits_max=12, trials=0)
    pool = [candidate(12, 12, 90.0, 1000, "uniform"), candidate(11, 11, 88.0, 900, "uniform"),
            candidate(10, 10, 70.0, 800, "uniform"), candidate(10, 12, 89.5, 880, "probe"),
            candidate(12, 10, 80.0, 920, "probe"), candidate(10, 11, 88.5, 850)]
    result = summarize(pool, cfg, 88.0, LAYERS, [12, 11, 10])
    assert json.loads(result["chosen"]["acc_bits"]) == {"a": 10, "b": 11}
    assert json.loads(result["best_uniform"]["acc_bits"]) == {"a": 11, "b": 11}
    assert result["verdict"].startswith("per-layer P saves 50 LUT (5.6 %) against the best uniform P=11")
    assert [row["lut_model"] for row in result["pareto_set"]] == [800, 850, 880, 1000]
    sensitivity = {row["layer"]: row for row in result["sensitivity"]}
    assert sensitivity["a"] == {"layer": "a", "quality_lost_per_bit": 0.25, "lut_saved_per_bit": 60.0}
    assert sensitivity["b"]["quality_lost_per_bit"] == 5.0
    # without the per-layer point, uniform P=11 is the answer and the verdict says so
    result = summarize(pool[:3] + pool[4:5], cfg, 88.0, LAYERS, [12, 11, 10])
    assert result["chosen"] == result["best_uniform"]
    assert result["verdict"] == "no per-layer assignment found with fewer LUT than uniform P=11 at the same floor"
    # a LUT budget instead of a floor: the best quality within it
    budget = SearchConfig(acc_bits_min=10, acc_bits_max=12, trials=0, lut_budget=890)
    assert json.loads(summarize(pool, budget, None, LAYERS, [12, 11, 10])["chosen"]["acc_bits"]) == {"a": 10, "b": 12}


def test_search_config_round_trips_and_bad_settings_are_one_clear_error(tmp_path):
    cfg = SearchConfig(acc_bits_min=11, acc_bits_max=15, trials=7, min_quality=80.0)
    assert SearchConfig.from_json(cfg.to_json()) == cfg
    base = BuildOptions(model="resnet18", reports_root=tmp_path, work_root=tmp_path, checkpoint_root=tmp_path)
    for bad, message in ((dict(quantizer="a2q"), "scores candidates by post-training quantization: quantizer 'a2q'"),
                         (dict(acc_bits_min=16, acc_bits_max=12), "P range 16..12 is empty"),
                         (dict(lut_budget=1000), "not both"),
                         (dict(finetune="sgd"), "finetune='sgd'; valid: a2q, a2q\\+, none"),
                         (dict(acc_bits_min=4, acc_bits_max=12), "4")):
        with pytest.raises(FlowError, match=message):
            check_config(base, SearchConfig(**{**dict(acc_bits_min=12, acc_bits_max=16, min_quality=50.0), **bad}))
