"""make compare: rows from summaries, Pareto front, and the written table and plots."""

import csv

import pytest

from flow.artifacts import FinnCheck, Summary
from flow.core.errors import FlowError
from flow.reports.compare import collect, pareto_front, write_comparison


def fake_summary(folder, model, p, lut, top1, folding="f1", psnr=None, **totals_extra):
    """A summary.json as a build writes it, with chosen figures."""
    folder.mkdir(parents=True)
    summary = Summary(
        model=model, quantizer="a2q", acc_bits_target=p, acc_mode="exact", board="pynq-z2", fpga_part="xc7z020clg400-1",
        clock_ns=10.0, folding=folding, target_fps=None, weights="trained", test_top1=top1, test_psnr=psnr, export_check=None,
        finn_check=FinnCheck(max_abs_diff=0.0, samples=2, passed=True, compared="output"), layers=[],
        totals={"lut": lut, "bram18": 4, "uram": 0, "dsp": 0, "max_cycles": 100, "fps_at_clock": 1e6, **totals_extra},
        board_fit={}, resource_source="finn_estimate", standalone_thresholds=False, estimate_note="", options={},
    )
    (folder / "summary.json").write_text(summary.to_json())


def test_pareto_front_keeps_only_non_dominated_points():
    points = [(100, 0.9), (50, 0.8), (80, 0.7), (120, 0.95), (60, 0.85)]
    assert pareto_front(points) == [1, 4, 0, 3]


def test_comparison_table_and_plots(tmp_path):
    fake_summary(tmp_path / "a", "linear", 16, 900, 0.78)
    fake_summary(tmp_path / "b", "linear", 12, 700, 0.70, lut_synth=650)
    fake_summary(tmp_path / "c", "linear", 20, 1100, 0.79)
    rows = collect([tmp_path])
    assert [r["acc_bits"] for r in rows] == [20, 16, 12]
    synth_row = next(r for r in rows if r["acc_bits"] == 12)
    assert synth_row["lut"] == 650 and synth_row["resource_source"] == "open_synthesis"
    paths = write_comparison(rows, tmp_path / "out")
    with open(paths["csv"]) as f:
        table = list(csv.DictReader(f))
    assert [int(r["acc_bits"]) for r in table] == [20, 16, 12]
    assert "| a | linear | 1 | a2q | 16 | pynq-z2 | f1 | trained | 0.78 | - | 900 |" in paths["md"].read_text()
    for key in ("resources_png", "pareto_png"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_reports_is_a_clear_error(tmp_path):
    with pytest.raises(FlowError, match="no summary.json found"):
        collect([tmp_path])


def test_super_resolution_quality_reaches_the_summary_and_the_comparison(tmp_path):
    """A super-resolution build's PSNR travels from the sidecar into summary.json and every table."""
    from flow.artifacts import FinnOutcome, Sidecar
    from flow.core.config import get_board
    from flow.reports.summary import BuildFacts, make_summary

    facts = BuildFacts(build="espcn-x", board=get_board("pynq-z2"), acc_mode="exact", folding=None, target_fps=1000,
                       standalone_thresholds=False, options={}, identity={})
    sidecar = Sidecar(layers=[], model="espcn", quantizer="a2q", acc_bits_target=13, task="super_resolution",
                      weights="trained", test_psnr=27.5)
    outcome = FinnOutcome(final_model=tmp_path / "none.onnx", report_dir=tmp_path, layers=[], max_cycles=10)
    summary = make_summary(facts, sidecar, outcome, FinnCheck(max_abs_diff=0.0, samples=2, passed=True, compared="output"))
    assert summary.test_psnr == 27.5 and summary.to_dict()["test_psnr"] == 27.5
    fake_summary(tmp_path / "a", "espcn", 13, 900, None, psnr=27.5)
    fake_summary(tmp_path / "b", "espcn", 16, 1000, None, psnr=28.0)
    rows = collect([tmp_path / "a", tmp_path / "b"])
    assert [row["test_psnr"] for row in rows] == [28.0, 27.5]
