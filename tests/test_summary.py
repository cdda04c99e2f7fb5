"""The summary's resource figures: a layer Yosys fails on, and the board fit from the best figures a build has."""

from flow.artifacts import LayerReport
from flow.core.config import get_board
from flow.reports.summary import add_synthesis, estimate_totals, fit_check, synth_totals

PYNQ_Z2 = get_board("pynq-z2")  # 53,200 LUT, 106,400 FF, 280 BRAM18, 220 DSP


def rows():
    return [LayerReport(name="MVAU_rtl_0", op_type="MVAU_rtl", lut=0, bram18=4, uram=0, dsp=16, cycles=100),
            LayerReport(name="MVAU_rtl_1", op_type="MVAU_rtl", lut=0, bram18=2, uram=0, dsp=8, cycles=50),
            LayerReport(name="Thresholding_rtl_0", op_type="Thresholding_rtl", lut=300, bram18=0, uram=0, dsp=0,
                        cycles=10)]


def synthesized(lut, ff, bram18=0, dsp=0):
    return {"lut_synth": lut, "ff_synth": ff, "lutram_synth": 0, "carry_synth": 0, "bram18_synth": bram18,
            "dsp_synth": dsp}


def test_a_layer_yosys_fails_on_is_reported_and_its_estimate_stands_in():
    layers = rows()
    add_synthesis(layers, {"MVAU_rtl_0": synthesized(40_000, 50_000, 4, 16),
                           "MVAU_rtl_1": {"error": "Yosys failed on layer MVAU_rtl_1 ...\nlog tail"},
                           "Thresholding_rtl_0": synthesized(250, 260)}, None)
    failed = layers[1]
    assert failed.resource_source == "synthesis_failed" and failed.synthesis_error == "Yosys failed on layer MVAU_rtl_1 ..."
    assert failed.lut_synth is None and [row.resource_source for row in (layers[0], layers[2])] == ["open_synthesis"] * 2
    totals = synth_totals(layers)
    # the failed layer adds FINN's estimate (0 LUT, 2 BRAM18, 8 DSP); FFs only where synthesized
    assert (totals["lut_synth"], totals["ff_synth"], totals["bram18_synth"], totals["dsp_synth"]) == (40_250, 50_260, 6, 24)
    assert totals["synth_resource_source"] == "open_synthesis+finn_estimate"


def test_the_board_fit_uses_the_best_figures_and_says_which():
    layers = rows()
    estimate = estimate_totals(layers, None, 10.0)
    by_estimate = fit_check(estimate, PYNQ_Z2)
    assert by_estimate["source"] == "finn_estimate" and by_estimate["fits"] is True
    assert by_estimate["utilization"]["lut"] == 300 / 53_200 and "ff" not in by_estimate["utilization"]
    # synthesis says the same build needs more LUTs than the board has: the fit follows synthesis
    add_synthesis(layers, {name: synthesized(20_000, 30_000) for name in ("MVAU_rtl_0", "MVAU_rtl_1", "Thresholding_rtl_0")},
                  None)
    with_synthesis = {**estimate, **synth_totals(layers)}
    by_synthesis = fit_check(with_synthesis, PYNQ_Z2)
    assert by_synthesis["source"] == "open_synthesis" and by_synthesis["fits"] is False
    assert by_synthesis["utilization"]["lut"] == 60_000 / 53_200 and by_synthesis["utilization"]["ff"] == 90_000 / 106_400
    # Vivado's figures win over both
    by_vivado = fit_check({**with_synthesis, "lut_vivado": 50_000, "ff_vivado": 80_000, "bram18_vivado": 6,
                           "uram_vivado": 0, "dsp_vivado": 24}, PYNQ_Z2)
    assert by_vivado["source"] == "vivado" and by_vivado["fits"] is True
