"""Per-layer accumulator widths: a JSON of layer name -> P through training, export, sidecar and build."""

import json

import pytest

from flow.artifacts import Sidecar
from flow.core.errors import FlowError
from flow.options import BuildOptions, resolve_plan
from flow.pipeline import build, ensure_checkpoint, make_model
from models.inspect import layer_acc_bits, quant_layers

TARGETS = {"layer1.0.conv1": 12, "layer4.1.conv2": 14}


def test_a_per_layer_target_below_p_binds_in_training_export_and_build(tmp_path, fashion_mnist):
    # the linear classifier's 784 binary inputs and 8-bit weights need up to 19 bits unconstrained: a 12-bit
    # target for its one layer binds, while P=16 names the model's default
    (tmp_path / "targets.json").write_text(json.dumps({"fc": 12}))
    roots = {"reports_root": tmp_path / "r", "work_root": tmp_path / "w", "checkpoint_root": tmp_path / "c"}
    opts = BuildOptions(acc_bits=16, acc_bits_map=str(tmp_path / "targets.json"), epochs=1, max_steps_per_epoch=5,
                        synth=False, rtlsim=False, **roots)
    plan = resolve_plan(opts)
    assert plan.tag.startswith("linear_P12-16_a2q_pynq-z2-")
    assert plan.tag != resolve_plan(BuildOptions(acc_bits=16, **roots)).tag
    summary = build(opts)
    (mvau,) = [row for row in summary["layers"] if row["op_type"].startswith("MVAU")]
    assert mvau["acc_bits_target"] == 12 and mvau["acc_bits_datatype_bound"] == 19
    assert 11 <= mvau["acc_bits_exact"] <= 12 and mvau["acc_datatype"] == f"INT{mvau['acc_bits_exact']}"
    assert "_m" in summary["identity"]["checkpoint"]["path"]  # the map is part of the checkpoint's identity


@pytest.mark.slow
def test_per_layer_targets_travel_from_training_to_the_report(tmp_path, fashion_mnist):
    (tmp_path / "targets.json").write_text(json.dumps(TARGETS))
    roots = {"reports_root": tmp_path / "r", "work_root": tmp_path / "w", "checkpoint_root": tmp_path / "c"}
    opts = BuildOptions(model="resnet18", width=1 / 16, acc_bits=16, acc_bits_map=str(tmp_path / "targets.json"),
                        epochs=1, max_steps_per_epoch=2, board="pynq-z2", target_fps=1000, **roots)
    plan = resolve_plan(opts)
    assert plan.tag.startswith("resnet18_w0.0625_P12-16_a2q_pynq-z2-") and dict(plan.acc_bits_by_layer) == TARGETS
    layers = quant_layers(make_model(plan))
    assert {name: layer_acc_bits(layers[name]) for name in TARGETS} == TARGETS
    assert layer_acc_bits(layers["layer2.0.conv1"]) == 16
    checkpoint, _ = ensure_checkpoint(plan, train=True)
    assert "_m" in checkpoint.name  # the map is part of the checkpoint's identity
    summary = build(BuildOptions(**{**opts.as_dict(), "checkpoint": str(checkpoint)}))
    sidecar = Sidecar.read(tmp_path / "w" / summary["build"] / "model.onnx")
    targets = {layer.name: layer.acc_bits_target for layer in sidecar.layers}
    assert {name: targets[name] for name in TARGETS} == TARGETS and targets["layer2.0.conv1"] == 16
    by_layer = {row["layer"]: row for row in summary["layers"] if row["layer"]}
    for name, p in TARGETS.items():
        assert by_layer[name]["acc_bits_target"] == p and by_layer[name]["acc_bits_exact"] <= p


def test_bad_per_layer_targets_are_one_clear_error(tmp_path):
    roots = {"reports_root": tmp_path / "r", "work_root": tmp_path / "w", "checkpoint_root": tmp_path / "c"}
    (tmp_path / "bad.json").write_text(json.dumps({"layer1.0.conv1": 3}))
    with pytest.raises(FlowError, match="P=3 is out of range"):
        resolve_plan(BuildOptions(model="resnet18", acc_bits_map=str(tmp_path / "bad.json"), **roots))
    (tmp_path / "base.json").write_text(json.dumps({"fc": 12}))
    with pytest.raises(FlowError, match="need an accumulator-aware quantizer"):
        resolve_plan(BuildOptions(quantizer="baseline", acc_bits_map=str(tmp_path / "base.json"), **roots))
    (tmp_path / "names.json").write_text(json.dumps({"nosuch": 12}))
    plan = resolve_plan(BuildOptions(model="resnet18", width=1 / 16, acc_bits_map=str(tmp_path / "names.json"), **roots))
    with pytest.raises(FlowError, match=r"name no A2Q layer of QuantResNet18: \['nosuch'\]; its A2Q layers: layer1.0.conv1"):
        make_model(plan)
