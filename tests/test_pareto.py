"""The quality/resource trade-off grid: points trained and built, read back when rerun, frontiers per quantizer."""

import json

from flow.experiments.pareto import ParetoGrid, mark_frontiers, run_pareto, write_pareto
from flow.options import BuildOptions


def test_frontier_keeps_the_best_quality_per_cost_for_each_quantizer():
    rows = [
        {"quantizer": "a2q", "lut": 100, "quality": 70.0}, {"quantizer": "a2q", "lut": 80, "quality": 72.0},
        {"quantizer": "a2q", "lut": 120, "quality": 75.0}, {"quantizer": "baseline", "lut": 90, "quality": 60.0},
        {"quantizer": "baseline", "lut": 50, "quality": None},
    ]
    mark_frontiers(rows)
    assert [row.get("on_frontier") for row in rows] == [False, True, True, True, None]


def test_grid_points_give_baseline_no_p():
    grid = ParetoGrid(quantizers=("a2q", "baseline"), acc_bits=(16, 12), bits=(8, 4))
    assert grid.points() == [("a2q", 16, 8), ("a2q", 12, 8), ("baseline", None, 8),
                             ("a2q", 16, 4), ("a2q", 12, 4), ("baseline", None, 4)]


def test_tiny_grid_trains_builds_and_is_read_back(tmp_path, fashion_mnist):
    base = BuildOptions(model="linear", max_steps_per_epoch=8, synth=False, rtlsim=False,
                        reports_root=tmp_path / "reports", work_root=tmp_path / "work", checkpoint_root=tmp_path / "ckpt")
    # the post-training point quantizes a float checkpoint the grid trains once
    grid = ParetoGrid(quantizers=("a2q", "baseline", "axe-gptq"), acc_bits=(14,), bits=(8,), epochs=1)
    lines = []
    rows = run_pareto(base, grid, tmp_path / "pareto", log=lines.append)
    assert [(row["quantizer"], row["acc_bits"]) for row in rows] == [("a2q", 14), ("baseline", None), ("axe-gptq", 14)]
    assert all(row["error"] is None and row["lut"] > 0 and 10.0 < row["quality"] <= 100.0 for row in rows)
    assert rows[0]["quality_metric"] == "top-1 %" and rows[0]["lut_source"] == "resource_model"
    assert len(list((tmp_path / "ckpt").glob("linear_float_*.pt"))) == 1
    table = json.loads((tmp_path / "pareto" / "pareto.json").read_text())
    assert [row["build"] for row in table] == [row["build"] for row in rows]
    assert (tmp_path / "pareto" / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    # rerun: both checkpoints and both builds are read back, the table is the same
    lines.clear()
    again = run_pareto(base, grid, tmp_path / "pareto", log=lines.append)
    assert sum("trained and built before with the same inputs" in line for line in lines) == 3
    assert again == rows


def test_anchors_are_printed_beside_the_table(tmp_path):
    write_pareto([], tmp_path, "resnet18")
    text = (tmp_path / "pareto.md").read_text()
    assert "float 95.0 % top-1" in text and "A2Q: 94.2 / 94.2 / 92.6 / 89.8 / 83.9 % at P = 16 / 15 / 14 / 13 / 12" in text
    assert "A2Q+: 94.2 / 94.1 / 94.1 / 92.8 / 90.6 %" in text


def test_a_grid_leaves_out_p_below_one_product_of_its_bit_widths(tmp_path):
    from flow.experiments.pareto import pareto_plans

    base = BuildOptions(model="espcn", reports_root=tmp_path, work_root=tmp_path, checkpoint_root=tmp_path)
    plans = pareto_plans(base, ParetoGrid(quantizers=("a2q", "baseline"), acc_bits=(16, 13), bits=(4, 8)))
    # 8-bit weights and activations need 16 bits for one product: P=13 is left out there, kept for 4 bits
    assert [(plan.quantizer, plan.acc_bits, plan.weight_bits) for plan in plans] == [
        ("a2q", 16, 4), ("a2q", 13, 4), ("baseline", None, 4), ("a2q", 16, 8), ("baseline", None, 8)]
