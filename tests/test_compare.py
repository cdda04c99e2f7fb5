"""make compare: rows from summaries, Pareto front, and the written table and plots."""

import csv
import json

import pytest

from flow.reports.compare import collect, pareto_front, write_comparison
from flow.core.errors import FlowError


def fake_summary(folder, model, p, lut, top1, folding="f1", **totals_extra):
    folder.mkdir(parents=True)
    summary = {"model": model, "quantizer": "a2q", "acc_bits_target": p, "board": "pynq-z2", "folding": folding,
               "weights": "trained", "test_top1": top1, "resource_source": "finn_estimate",
               "totals": {"lut": lut, "bram18": 4, "uram": 0, "dsp": 0, "max_cycles": 100, "fps_at_clock": 1e6,
                          **totals_extra}}
    (folder / "summary.json").write_text(json.dumps(summary))


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
