"""The P-aware resource model: its figures on a build's layers, its file, and its error against synthesis on
shapes the fit never saw (build_configs/resource_model.json, written by `make calibrate`)."""

import json

import pytest

import flow.hw.synth as synth
from flow.artifacts import LayerReport
from flow.core.errors import FlowError
from flow.core.resource_model import RESOURCE_MODEL_FILE, LayerShape, ResourceModel
from flow.hw.calibration import synthesize_grid
from flow.reports.summary import add_model_figures, model_totals

MODEL = ResourceModel.read()


def mvau_row(op_type, acc_bits, threshold_bits=None):
    return LayerReport(name=f"{op_type}_0", op_type=op_type, mw=288, mh=64, pe=8, simd=16, weight_datatype="INT4",
                       input_bits=4, acc_datatype=f"INT{acc_bits}", lut=1000, bram18=4, dsp=0,
                       weight_memory_depth=288 * 64 // (8 * 16),
                       threshold_datatype=f"INT{threshold_bits}" if threshold_bits else None,
                       thresholds=15 if threshold_bits else None)


def test_layers_get_figures_that_follow_p_and_say_their_basis():
    rows = {p: [mvau_row("MVAU_hls", p, p), mvau_row("MVAU_rtl", p),
                LayerReport(name="Thresholding_rtl_0", op_type="Thresholding_rtl", mh=64, pe=8, thresholds=15,
                            threshold_datatype=f"INT{p}", lut=200),
                LayerReport(name="Pool_0", op_type="Pool_hls", lut=50)] for p in (32, 16)}
    for layers in rows.values():
        add_model_figures(layers, MODEL)
    hls, rtl, thresholding, pool = rows[16]
    assert (hls.model_basis, rtl.model_basis, thresholding.model_basis, pool.model_basis) == \
        ("rtl_equivalent", "rtl_fit", "rtl_fit", None)
    # an HLS MVAU with its thresholds inside is figured as the RTL MVU plus a Thresholding layer of its shape
    assert hls.lut_model == rtl.lut_model + thresholding.lut_model and hls.ff_model == rtl.ff_model + thresholding.ff_model
    # an MVAU's figure is its datapath and its weight streamer (144 words of 8 x 16 x 4 bits)
    datapath = MODEL.predict(LayerShape("mvau", 8, 16, simd=16, weight_bits=4, input_bits=4))
    memory = MODEL.predict(LayerShape("weight_memory", 8, 0, simd=16, weight_bits=4, depth=144))
    assert (rtl.lut_model, rtl.ff_model) == (datapath["lut"] + memory["lut"], datapath["ff"] + memory["ff"])
    assert memory["ff"] > 8 * 16 * 4  # at least one register stage on the 512-bit stream
    for narrow, wide in zip(rows[16][:3], rows[32][:3]):
        assert narrow.lut_model < wide.lut_model and narrow.ff_model < wide.ff_model
    totals = model_totals(rows[16])
    assert totals["lut_model"] == hls.lut_model + rtl.lut_model + thresholding.lut_model + 50  # FINN's for the pool
    assert totals["ff_model"] == hls.ff_model + rtl.ff_model + thresholding.ff_model


def test_a_damaged_model_file_is_one_clear_error(tmp_path):
    data = json.loads(RESOURCE_MODEL_FILE.read_text())
    data["coefficients"]["mvau"]["lut"] = data["coefficients"]["mvau"]["lut"][:-1]
    (tmp_path / "m.json").write_text(json.dumps(data))
    with pytest.raises(FlowError, match=r"m.json: mvau lut needs \d+ coefficients; run `make calibrate`"):
        ResourceModel.read(tmp_path / "m.json")
    (tmp_path / "e.json").write_text("")
    with pytest.raises(FlowError, match="e.json is unreadable"):
        ResourceModel.read(tmp_path / "e.json")


def held_out_points():
    """The cheapest held-out shape of each op: an MVAU and a Thresholding shape at P=16 and P=32, a weight
    memory (no P)."""
    shapes = [s for s in MODEL.grid["shapes"] if s["held_out"]]
    chosen = []
    for op in ("mvau", "thresholding", "weight_memory"):
        shape = min((s for s in shapes if s["op"] == op),
                    key=lambda s: (s["pe"] * max(s["simd"], s["thresholds"]), s.get("depth", 0)))
        ps = (0,) if op == "weight_memory" else (16, 32)
        chosen += [LayerShape(**{k: v for k, v in shape.items() if k != "held_out"}, acc_bits=p) for p in ps]
    return chosen


def test_the_model_matches_synthesis_on_held_out_shapes(tmp_path):
    """Fresh Yosys runs on shapes the fit never saw reproduce the errors the model file claims for them (its
    worst held-out errors per op and figure), and stay within the 25 % target for each figure."""
    synth.warmup()
    points = held_out_points()
    measured = dict(zip(points, synthesize_grid(points, tmp_path / "hdl", tmp_path / "cache", workers=2)))
    claimed = MODEL.validation["held_out"]
    for point, result in measured.items():
        predicted = MODEL.predict(point)
        for figure in ("lut", "ff"):
            error = abs(predicted[figure] - result[f"{figure}_synth"]) / result[f"{figure}_synth"]
            assert error <= min(0.25, claimed[point.op][figure]["worst_abs_error"] + 0.005), (point, figure, error)
    points = [p for p in points if p.op != "weight_memory"]
    for narrow, wide in zip(points[0::2], points[1::2]):
        for figure in ("lut", "ff"):
            synth_ratio = measured[wide][f"{figure}_synth"] / measured[narrow][f"{figure}_synth"]
            model_ratio = MODEL.predict(wide)[figure] / MODEL.predict(narrow)[figure]
            error = abs(model_ratio - synth_ratio) / synth_ratio
            assert error <= claimed[narrow.op][figure]["worst_reduction_ratio_error"] + 0.005, (narrow, figure, error)


@pytest.mark.slow
def test_calibration_layers_run_as_executor_tasks_like_here(tmp_path):
    """The grid's synthesis jobs sent as executor tasks (HDL as bytes, a local Ray instance standing in for a
    cluster) give what the local Yosys processes give; a second run takes them from the driver's cache."""
    points = [LayerShape("mvau", 2, 16, 2, 4, 4), LayerShape("thresholding", 2, 12, channels=16, thresholds=3)]
    here = synthesize_grid(points, tmp_path / "here", tmp_path / "cache_here", workers=2)
    remote = synthesize_grid(points, tmp_path / "remote", tmp_path / "cache_remote", workers=2, on_ray=True)
    for local, sent in zip(here, remote):
        assert "error" not in sent and (sent["lut_synth"], sent["ff_synth"]) == (local["lut_synth"], local["ff_synth"])
        assert sent["cached"] is False
    again = synthesize_grid(points, tmp_path / "remote", tmp_path / "cache_remote", workers=2, on_ray=True)
    assert all(result["cached"] for result in again) and [r["lut_synth"] for r in again] == [r["lut_synth"] for r in here]


def test_threshold_memories_above_the_lut_boundary_leave_the_lut_feature():
    """FINN's Thresholding_rtl has one memory per stage and PE, stage s holding 2^s thresholds of each channel
    the PE serves; Yosys keeps up to LUT_MEMORY_MAX_BITS of one in LUTs (measured: 512 x 16 bits in LUTs,
    512 x 24 in a BRAM18), so only those count as LUT memory."""
    import math

    from flow.core.resource_model import FEATURE_NAMES, LUT_MEMORY_MAX_BITS, features, threshold_memory_depths

    assert LUT_MEMORY_MAX_BITS == 8192
    assert threshold_memory_depths(LayerShape("thresholding", 8, 16, channels=256, thresholds=15)) == [32, 64, 128, 256]
    assert threshold_memory_depths(LayerShape("thresholding", 32, 16, channels=64, thresholds=1)) == [2]
    lut_bits = FEATURE_NAMES["thresholding"].index("ln_lut_threshold_bits")

    def memory_bits(pe, p, channels, thresholds):
        return round(math.exp(features(LayerShape("thresholding", pe, p, channels=channels, thresholds=thresholds))[lut_bits]))

    assert memory_bits(1, 16, 512, 1) == 16 * (1 + 512)  # 8,192 bits: LUTs
    assert memory_bits(1, 24, 512, 1) == 24  # 12,288 bits: a BRAM, none in LUTs
    # 8 PEs, 3 thresholds (2 stages, 256 and 512 deep) at P=32: 8,192 bits stay in LUTs, 16,384 go to BRAM
    assert memory_bits(8, 32, 2048, 3) == 8 * 32 * (1 + 256)
    assert memory_bits(8, 16, 2048, 3) == 8 * 16 * (1 + 256 + 512)


def test_a_refit_reuses_measurements_only_from_the_same_tools():
    from flow.hw.calibration import reusable_measurements, tools_now

    data = json.loads(RESOURCE_MODEL_FILE.read_text())
    point = data["grid"]["measured"][0]
    same = reusable_measurements({**data, "tools": tools_now()})
    shape = LayerShape(**{k: v for k, v in point.items() if not k.endswith("_synth")})
    assert same[shape] == {"lut_synth": point["lut_synth"], "ff_synth": point["ff_synth"]}
    assert len(same) == len(data["grid"]["measured"])
    assert reusable_measurements({**data, "tools": {**tools_now(), "yosys": "0.1"}}) == {}
    # layers of an op that the calibration now builds differently are synthesized again, the others reused
    older = {**tools_now()["layer_content"], "thresholding": 0}
    kept = reusable_measurements({**data, "tools": {**tools_now(), "layer_content": older}})
    assert kept and all(point.op != "thresholding" for point in kept)
    assert len(kept) == sum(m["op"] != "thresholding" for m in data["grid"]["measured"])
    assert reusable_measurements(None) == {} and reusable_measurements({"tools": tools_now()}) == {}


def test_each_family_reads_its_own_fit_or_else_the_7_series_one(tmp_path, monkeypatch):
    import flow.reports.summary as summary

    data = json.loads(RESOURCE_MODEL_FILE.read_text())
    (tmp_path / "resource_model_xcup.json").write_text(json.dumps({**data, "family": "xcup"}))
    monkeypatch.setattr(summary, "resource_model_file", lambda family: tmp_path / f"resource_model_{family}.json")
    xcup = summary.load_resource_model("xcup")
    assert xcup.family == "xcup"
    assert summary.load_resource_model("xcu").family == "xc7"  # UltraScale has no fit of its own
    rows = [mvau_row("MVAU_rtl", 16)]
    add_model_figures(rows, xcup)
    assert model_totals(rows, xcup)["model_family"] == "xcup" and "model_family" not in model_totals(rows)


def test_thresholds_shared_by_all_channels_are_one_set_per_pe():
    """A per-tensor quantizer's thresholds (one row for all channels): FINN's Thresholding_rtl stores one set
    per PE, so the figure is that of a PE-channel layer, far below a per-channel one of 128 channels."""
    rows = [LayerReport(name=f"Thresholding_rtl_{rows}", op_type="Thresholding_rtl", mh=128, pe=2, thresholds=15,
                        threshold_rows=rows, threshold_datatype="INT11") for rows in (1, 128)]
    add_model_figures(rows, MODEL)
    shared, per_channel = rows
    assert shared.lut_model == MODEL.predict(LayerShape("thresholding", 2, 11, channels=2, thresholds=15))["lut"]
    assert per_channel.lut_model == MODEL.predict(LayerShape("thresholding", 2, 11, channels=128, thresholds=15))["lut"]
    assert 2 * shared.lut_model < per_channel.lut_model


def test_weight_memories_split_between_lutram_and_block_ram_as_yosys_did():
    """The rule that says which weight memories Yosys builds of distributed RAM reproduces the probe's
    measurements (hw_reports/weight_memory_probe/probe.json: LUTRAM cells where there is no BRAM18), and only
    those get the LUTRAM feature."""
    from pathlib import Path

    from flow.core.resource_model import weight_memory_lutram_luts

    probe = json.loads((Path(__file__).resolve().parent.parent / "hw_reports/weight_memory_probe/probe.json").read_text())
    assert len(probe) >= 15 and {row["bram18_synth"] > 0 for row in probe} == {True, False}
    for row in probe:
        shape = LayerShape("weight_memory", 1, 0, simd=1, weight_bits=row["width"], depth=row["depth"])
        assert (weight_memory_lutram_luts(shape) > 0) == (row["bram18_synth"] == 0), row
