"""make sweep: points across P, resumed when interrupted, ratios against the widest P."""

import json

from flow.build import BuildOptions
from flow.sweep import run_sweep


def test_sweep_over_p_resumes_and_reports_ratios(tmp_path, fashion_mnist):
    base = BuildOptions(epochs=1, max_steps_per_epoch=5, synth=False, rtlsim=False,
                        reports_root=tmp_path / "reports", work_root=tmp_path / "work", checkpoint_root=tmp_path / "ckpt")
    lines = []
    rows = run_sweep(base, [16, 12], [None], tmp_path / "sweep", log=lines.append)
    assert [row["acc_bits"] for row in rows] == [16, 12]
    assert sum("building" in line for line in lines) == 2
    by_p = {row["acc_bits"]: row for row in rows}
    assert by_p[16]["lut_ratio"] == 1.0
    # FINN's estimate of the 784x10 MVAU shrinks with the accumulator: the 12-bit build is smaller
    assert by_p[12]["lut"] < by_p[16]["lut"] and by_p[12]["lut_ratio"] > 1.0
    for p in (16, 12):
        summary = json.loads((tmp_path / "reports" / f"linear_P{p}_a2q_pynq-z2" / "summary.json").read_text())
        assert [layer["acc_datatype"] for layer in summary["layers"] if layer["op_type"].startswith("MVAU")] == [f"INT{p}"]
    table = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert table == json.loads(json.dumps(rows))
    assert (tmp_path / "sweep" / "sweep.csv").read_text().startswith("model,quantizer,acc_bits")
    assert (tmp_path / "sweep" / "sweep.png").stat().st_size > 1000
    # an interrupted sweep reruns: finished points are read back, not rebuilt
    lines.clear()
    run_sweep(base, [16, 12], [None], tmp_path / "sweep", log=lines.append)
    assert sum("done before" in line for line in lines) == 2 and not any("building" in line for line in lines)
