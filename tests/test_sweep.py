"""make sweep: points across P, resumed when interrupted, rebuilt when stale, ratios against the widest P."""

import json

import pytest

from flow.core.errors import FlowError
from flow.experiments.sweep import run_sweep
from flow.options import BuildOptions, resolve_plan
from flow.pipeline import ensure_checkpoint


def bits(datatype: str) -> int:
    return int(datatype.removeprefix("U").removeprefix("INT"))


def test_sweep_over_p_resumes_and_reports_ratios(tmp_path, fashion_mnist):
    base = BuildOptions(epochs=1, max_steps_per_epoch=5, synth=False, rtlsim=False,
                        reports_root=tmp_path / "reports", work_root=tmp_path / "work", checkpoint_root=tmp_path / "ckpt")
    lines = []
    # the points are built two at a time, on a local Ray instance the sweep starts and stops; the sweep adds
    # the baseline quantizer's build (same bits and folding, FINN's exact accumulator minimisation)
    rows = run_sweep(base, [16, 12], [None], tmp_path / "sweep", log=lines.append, workers=2)
    assert [(row["quantizer"], row["acc_bits"]) for row in rows] == [("a2q", 16), ("a2q", 12), ("baseline", None)]
    assert not any(row["error"] for row in rows) and sum("building" in line for line in lines) == 3
    by_p = {row["acc_bits"]: row for row in rows}
    assert by_p[16]["lut_ratio"] == 1.0
    # FINN's estimate of the 784x10 MVAU shrinks with the accumulator: the 12-bit build is smaller
    assert by_p[12]["lut"] < by_p[16]["lut"] and by_p[12]["lut_ratio"] > 1.0
    # the resource model sees P too, and the unconstrained baseline needs wider accumulators than A2Q at 12 bits
    assert by_p[12]["acc_layers_lut_model_ratio"] > 1.0
    baseline = by_p[None]
    baseline_layers = json.loads((tmp_path / "reports" / baseline["build"] / "summary.json").read_text())["layers"]
    baseline_acc = next(layer for layer in baseline_layers if layer["op_type"].startswith("MVAU"))
    assert bits(baseline_acc["acc_datatype"]) > 12 and baseline_acc["acc_source"] is not None
    assert by_p[12]["acc_layers_lut_model_vs_baseline"] > 1.0 and by_p[12]["lut_vs_baseline"] > 1.0
    for row in rows:
        summary = json.loads((tmp_path / "reports" / row["build"] / "summary.json").read_text())
        # a sweep compares the widths the layers were trained for: INT<P>
        if row["quantizer"] == "baseline":
            assert summary["acc_mode"] == "exact"
            continue
        mvau_widths = [layer["acc_datatype"] for layer in summary["layers"] if layer["op_type"].startswith("MVAU")]
        assert mvau_widths == [f"INT{row['acc_bits']}"] and summary["acc_mode"] == "target"
    table = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert table == json.loads(json.dumps(rows))
    assert (tmp_path / "sweep" / "sweep.csv").read_text().startswith("model,quantizer,acc_bits")
    assert (tmp_path / "sweep" / "sweep.png").stat().st_size > 1000
    # an interrupted sweep reruns: finished points are read back, not rebuilt
    lines.clear()
    run_sweep(base, [16, 12], [None], tmp_path / "sweep", log=lines.append)
    assert sum("done before" in line for line in lines) == 3 and not any("building" in line for line in lines)

    # a point whose checkpoint was trained further since is stale: rebuilt, with the new accuracy
    plan = resolve_plan(BuildOptions(**{**base.as_dict(), "acc_bits": 12, "epochs": 2}))
    ensure_checkpoint(plan, train=True)
    lines.clear()
    rows = run_sweep(base, [16, 12], [None], tmp_path / "sweep", log=lines.append)
    assert [line.split(":")[1].strip().split(",")[0] for line in lines if line.startswith("[sweep")] == \
        ["done before with the same inputs", "building", "done before with the same inputs"]


def test_sweep_validates_every_point_before_building(tmp_path):
    base = BuildOptions(reports_root=tmp_path / "reports", work_root=tmp_path / "work", checkpoint_root=tmp_path / "ckpt")
    with pytest.raises(FlowError, match="P=3 is out of range"):
        run_sweep(base, [15, 3], [None], tmp_path / "sweep", log=lambda line: None)
    assert not (tmp_path / "reports").exists() and not (tmp_path / "ckpt").exists()


def test_a_point_that_fails_is_in_the_table_and_the_others_finish(tmp_path, fashion_mnist):
    base = BuildOptions(epochs=1, max_steps_per_epoch=5, synth=False, rtlsim=False,
                        reports_root=tmp_path / "reports", work_root=tmp_path / "work", checkpoint_root=tmp_path / "ckpt")
    # at P=8 the l1 budget of a 784-input layer rounds every weight to zero: that point cannot build
    rows = run_sweep(base, [14, 8], [None], tmp_path / "sweep", log=lambda line: None, baseline=False)
    by_p = {row["acc_bits"]: row for row in rows}
    assert by_p[14]["error"] is None and by_p[14]["lut"] > 0
    assert "every weight quantized to zero at P=8" in by_p[8]["error"] and by_p[8]["lut"] is None
    table = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert [row["error"] is None for row in table] == [True, False]
