"""The A2Q overflow study (flow.overflow_study) in --quick mode on the real Fashion-MNIST.

One quick study (3 P values, 8 orders, 40 training steps, 1000 test images) is shared by the
module; the resume tests rerun it on a copy of its output folder with training disabled.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from flow.core.errors import FlowError
from flow.experiments import overflow_study as study

MODES = ("wrap", "saturate", "clip_final")
METRICS = ("overflow_rate", "logits_mae", "top1")


@pytest.fixture(scope="module")
def quick(tmp_path_factory, fashion_mnist):
    root = tmp_path_factory.mktemp("overflow_study")
    lines: list[str] = []
    config = study.quick_config(data=str(fashion_mnist))
    summary = study.run_study(config, out_dir=root / "out", checkpoint_root=root / "ckpt", log=lines.append)
    return {"summary": summary, "lines": lines, "root": root, "config": config}


def _no_training(*args, **kwargs):
    raise AssertionError("train_classifier was called although every checkpoint/result exists")


def _copy_out(quick, tmp_path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(quick["root"] / "out", out)
    return out


def test_json_structure(quick):
    summary, config = quick["summary"], quick["config"]
    results = summary["results"]
    on_disk = json.loads(Path(summary["paths"]["json"]).read_text())
    assert on_disk == json.loads(json.dumps(results))
    assert summary["computed_ps"] == list(config.ps) and summary["skipped_ps"] == []
    assert summary["reordering_computed"]
    assert len(summary["trained"]) == 1 + len(config.ps)  # the baseline and one A2Q model per P

    settings = results["settings"]
    assert settings["data"] == str(Path(config.data).resolve())
    assert settings["seed"] == 0 and settings["epochs"] == 1 and settings["a2q_epochs"] == 1
    assert settings["max_steps_per_epoch"] == study.QUICK["max_steps_per_epoch"]
    assert settings["test_samples"] == study.QUICK["test_samples"]
    assert results["data_type_bound_bits"] == 19
    assert results["layer"] == {"k": 784, "channels": 10, "weight_bits": 8, "input_bits": 1, "input_signed": False}
    assert 0.5 < results["baseline"]["exact_top1"] <= 1.0
    assert results["baseline"]["exact_acc_bits"] <= 19

    assert list(results["per_p"]) == [str(p) for p in sorted(config.ps, reverse=True)]
    for key, record in results["per_p"].items():
        assert record["acc_bits"] == int(key)
        for mode in MODES:
            assert set(record["baseline"][mode]) == set(METRICS)
            assert 0.0 <= record["baseline"][mode]["top1"] <= 1.0
            assert 0.0 <= record["baseline"][mode]["overflow_rate"] <= 1.0
        for mode in ("exact", "wrap", "saturate"):
            assert set(record["a2q"][mode]) == set(METRICS)
        assert Path(record["a2q"]["checkpoint"]).is_file()

    reorder = results["reordering"]
    assert reorder["settings"] == {"acc_bits": config.order_p, "orderings": config.orderings, "order_seed": 0}
    for metric in METRICS:
        assert len(reorder["per_ordering"][metric]) == config.orderings
    assert reorder["logits_mae"]["min"] <= reorder["logits_mae"]["median"] <= reorder["logits_mae"]["max"]
    assert reorder["baseline_exact_top1"] == results["baseline"]["exact_top1"]


def test_a2q_never_overflows_at_its_p(quick):
    results = quick["summary"]["results"]
    for key, record in results["per_p"].items():
        a2q = record["a2q"]
        assert a2q["wrap"]["overflow_rate"] == 0.0
        assert a2q["saturate"]["overflow_rate"] == 0.0
        assert a2q["orderings_checked"] == quick["config"].orderings
        assert a2q["orderings_max_overflow_rate"] == 0.0
        # no overflow, so wrap and saturate are the exact result
        assert a2q["wrap"]["logits_mae"] == 0.0 and a2q["saturate"]["logits_mae"] == 0.0
        assert a2q["wrap"]["top1"] == a2q["saturate"]["top1"] == a2q["exact"]["top1"]
        assert a2q["weight_l1_norm_max"] <= a2q["l1_bound"]
        assert a2q["exact_acc_bits"] <= int(key)
    assert results["reordering"]["a2q"]["orderings_max_overflow_rate"] == 0.0


def test_baseline_overflows_below_the_bound(quick):
    results = quick["summary"]["results"]
    low = results["per_p"]["12"]["baseline"]
    assert low["saturate"]["overflow_rate"] > 0.0
    assert low["wrap"]["overflow_rate"] > 0.0
    assert low["final_out_of_range_rate"] > 0.0
    assert low["saturate"]["logits_mae"] > 0.0
    assert low["saturate"]["top1"] < results["baseline"]["exact_top1"]
    assert min(results["reordering"]["per_ordering"]["overflow_rate"]) > 0.0
    # narrower accumulators overflow at least as often (identity order, same model)
    rates = [results["per_p"][str(p)]["baseline"]["saturate"]["overflow_rate"] for p in (14, 12, 10)]
    assert rates == sorted(rates)


def test_wraparound_is_worse_than_saturation_at_low_p(quick):
    for key in ("12", "10"):
        baseline = quick["summary"]["results"]["per_p"][key]["baseline"]
        assert baseline["wrap"]["logits_mae"] >= baseline["saturate"]["logits_mae"]
        assert baseline["wrap"]["top1"] <= baseline["saturate"]["top1"]


def test_outputs_exist_and_are_not_empty(quick):
    paths = quick["summary"]["paths"]
    for name in ("sweep_png", "reorder_png"):
        data = Path(paths[name]).read_bytes()
        assert len(data) > 10_000 and data.startswith(b"\x89PNG")
    table = Path(paths["md"]).read_text()
    assert "| 12 |" in table and "clip_final" in table
    assert not list(Path(paths["json"]).parent.glob("*.tmp*"))
    assert any("P=12" in line for line in quick["lines"])


def test_rerun_skips_everything(quick, tmp_path, monkeypatch):
    out = _copy_out(quick, tmp_path)
    before = (out / "results.json").read_text()
    monkeypatch.setattr(study, "train_classifier", _no_training)
    lines: list[str] = []
    summary = study.run_study(quick["config"], out_dir=out, checkpoint_root=quick["root"] / "ckpt", log=lines.append)
    assert summary["computed_ps"] == [] and summary["skipped_ps"] == list(quick["config"].ps)
    assert summary["trained"] == [] and not summary["reordering_computed"]
    assert (out / "results.json").read_text() == before
    assert any("skipping P = 14, 12, 10" in line for line in lines)


def test_interrupted_run_resumes_missing_p_only(quick, tmp_path, monkeypatch):
    out = _copy_out(quick, tmp_path)
    results = json.loads((out / "results.json").read_text())
    expected = results["per_p"].pop("10")  # as if interrupted before P=10 was written
    (out / "results.json").write_text(json.dumps(results))
    monkeypatch.setattr(study, "train_classifier", _no_training)  # every checkpoint exists
    summary = study.run_study(quick["config"], out_dir=out, checkpoint_root=quick["root"] / "ckpt", log=lines_sink())
    assert summary["computed_ps"] == [10] and summary["skipped_ps"] == [14, 12]
    assert summary["trained"] == [] and not summary["reordering_computed"]
    redone = json.loads((out / "results.json").read_text())["per_p"]["10"]
    for who, modes in (("baseline", MODES), ("a2q", ("exact", "wrap", "saturate"))):
        for mode in modes:
            assert redone[who][mode] == expected[who][mode]  # deterministic


def lines_sink():
    return lambda line: None


def test_changed_settings_start_over(quick, tmp_path):
    out = _copy_out(quick, tmp_path)
    settings = quick["summary"]["results"]["settings"]
    assert study.load_results(out / "results.json", settings, log=lines_sink())["per_p"]
    messages: list[str] = []
    fresh = study.load_results(out / "results.json", {**settings, "seed": 1}, log=messages.append)
    assert fresh["per_p"] == {} and fresh["settings"]["seed"] == 1
    assert any("seed: 0 -> 1" in message for message in messages)
    assert not (out / "results.json").exists()  # moved aside, not lost
    assert json.loads((out / "results.previous.json").read_text())["settings"] == settings
    (out / "results.json").write_text("{ not json")
    assert study.load_results(out / "results.json", settings, log=lines_sink())["per_p"] == {}


def test_checkpoints_are_separated_by_settings(quick):
    settings = quick["summary"]["results"]["settings"]
    folder = study.checkpoint_dir(quick["root"] / "ckpt", settings)
    assert folder.name.endswith(f"_seed0_steps{study.QUICK['max_steps_per_epoch']}")
    assert study.checkpoint_dir(quick["root"] / "ckpt", {**settings, "seed": 1}) != folder
    assert study.checkpoint_dir(quick["root"] / "ckpt", {**settings, "max_steps_per_epoch": None}) != folder
    assert sorted(p.name for p in folder.glob("*.pt")) == sorted(
        ["linear_baseline_P32_e1.pt"] + [f"linear_a2q_P{p}_e1.pt" for p in quick["config"].ps]
    )


def test_cli_resumes_and_reports_errors(quick, tmp_path, monkeypatch, capsys, fashion_mnist):
    from flow.cli import main

    out = _copy_out(quick, tmp_path)
    monkeypatch.setattr(study, "train_classifier", _no_training)
    argv = ["overflow", "--quick", "--data", str(fashion_mnist), "--out", str(out), "--checkpoints",
            str(quick["root"] / "ckpt")]
    assert main(argv) == 0
    assert "computed P none" in capsys.readouterr().out
    # A2Q is retrained at every P: below one full-range product (8 bits for 8-bit weights, 1-bit inputs) it cannot
    assert main(["overflow", "--ps", "2-4", "--out", str(out)]) == 2
    assert "P=2 is out of range" in capsys.readouterr().err
    assert main(["overflow", "--ps", "7-8", "--out", str(out)]) == 2
    assert "P=7 is out of range: with 8-bit weights and 1-bit unsigned inputs" in capsys.readouterr().err
    assert main(["overflow", "--ps", "19-x", "--out", str(out)]) == 2


def test_parse_ps_and_config():
    assert study.parse_ps("19-10") == tuple(range(19, 9, -1))
    assert study.parse_ps("16, 12,10") == (16, 12, 10)
    assert study.parse_ps("12-14,12,19") == (12, 13, 14, 19)
    for bad in ("", "a", "12-b"):
        with pytest.raises(FlowError):
            study.parse_ps(bad)
    assert study.StudyConfig().ps == tuple(range(19, 9, -1))
    quick = study.quick_config(orderings=3)
    assert quick.orderings == 3 and quick.ps == study.QUICK["ps"]
    with pytest.raises(FlowError):
        study.validate_config(study.StudyConfig(ps=(12,), orderings=0))
    with pytest.raises(FlowError):
        study.validate_config(study.StudyConfig(ps=(40,)))
