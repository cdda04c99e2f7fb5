"""Training: seeded, resumable after an interruption, checkpoints that are checked on load."""

import pytest
import torch

from flow.core.errors import FlowError
from flow.training.checkpoints import load_checkpoint, model_identity
from flow.training.train import A2QRegularizer, check_device, train_model
from models import get_model_spec


def identity(quantizer="a2q", p=14, seed=0):
    return model_identity("linear", quantizer, p, 8, 1, 1.0, "test-data", seed)


def test_train_resumes_after_the_last_finished_epoch(tmp_path, fashion_mnist):
    spec = get_model_spec("linear")
    path = tmp_path / "linear.pt"
    lines = []
    train_model(spec, spec.make("a2q", 14), identity(), path, epochs=1, max_steps_per_epoch=3, log=lines.append)
    first = load_checkpoint(path)
    # three steps of A2Q training already classify clearly better than chance (10 %; measured 24.5 %)
    assert first["epoch"] == 1 and 0.15 < first["metrics"]["test_top1"] <= 1.0
    # an "interrupted" run asked for 2 epochs: the second call continues from epoch 1
    lines.clear()
    metrics = train_model(spec, spec.make("a2q", 14), identity(), path, epochs=2, max_steps_per_epoch=3, log=lines.append)
    assert any("resuming linear.pt after epoch 1/2" in line for line in lines)
    assert not any("epoch 1/2 step" in line for line in lines)
    assert load_checkpoint(path)["epoch"] == 2 and metrics["epochs"] == 2


def test_same_seed_same_weights(tmp_path, fashion_mnist):
    spec = get_model_spec("linear")
    states = []
    for run in range(2):
        torch.manual_seed(0)  # the same initial weights; training itself is seeded by train_model
        path = tmp_path / f"run{run}.pt"
        train_model(spec, spec.make("a2q", 14), identity(seed=7), path, epochs=1, max_steps_per_epoch=2, seed=7,
                    log=lambda line: None)
        states.append(load_checkpoint(path)["state_dict"])
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_resumed_training_equals_an_uninterrupted_one(tmp_path, fashion_mnist):
    """Data order, RNG and Brevitas's statistics collectors (still collecting after 4 steps) resume exactly."""
    spec = get_model_spec("linear")
    runs = {}
    for name, stops in (("straight", [3]), ("resumed", [1, 2, 3])):
        torch.manual_seed(0)
        path = tmp_path / f"{name}.pt"
        for epochs in stops:
            train_model(spec, spec.make("a2q", 14), identity(seed=3), path, epochs=epochs, max_steps_per_epoch=4, seed=3,
                        log=lambda line: None)
        runs[name] = load_checkpoint(path)
    straight, resumed = runs["straight"], runs["resumed"]
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in straight["history"]]
    assert all(torch.equal(straight["state_dict"][k], resumed["state_dict"][k]) for k in straight["state_dict"])


def test_a2q_regularizer_sees_every_a2q_layer():
    spec = get_model_spec("linear")
    torch.manual_seed(0)
    model = spec.make("a2q", 12)
    regularizer = A2QRegularizer(model)
    assert regularizer.active
    model(torch.ones(2, 784))
    # at initialization every channel's norm g lies far above its P=12 budget T*s: a large, positive penalty
    assert float(regularizer.pop()) > 10.0
    assert float(regularizer.pop()) == 0.0  # popped: the next step starts from zero
    model.eval()
    model(torch.ones(2, 784))
    assert float(regularizer.pop()) == 0.0  # evaluation passes add nothing to the next training step
    assert not A2QRegularizer(spec.make("baseline", None)).active


@pytest.mark.parametrize("device,message", [("foo", "unknown torch device 'foo'"), ("cuda", "no CUDA device here"),
                                            ("cuda:7", "CUDA")])
def test_device_that_this_machine_lacks_is_one_clear_error(device, message):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(FlowError, match=message):
        check_device(device)


def test_checkpoint_errors(tmp_path):
    with pytest.raises(FlowError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(FlowError, match="not a checkpoint of this flow"):
        load_checkpoint(tmp_path / "other.pt")


def test_float_training_starts_quantized_training_and_has_no_hardware_form(tmp_path, fashion_mnist):
    from flow.options import BuildOptions, resolve_plan
    from flow.pipeline import ensure_checkpoint

    roots = {"checkpoint_root": tmp_path / "ckpt", "reports_root": tmp_path / "r", "work_root": tmp_path / "w"}
    float_plan = resolve_plan(BuildOptions(quantizer="float", epochs=1, max_steps_per_epoch=5, **roots), training=True)
    path, metrics = ensure_checkpoint(float_plan)
    assert load_checkpoint(path)["quantizer"] == "float" and metrics["test_top1"] > 0.15
    # trained and evaluated in float: the linear model's logits are exactly x @ W^T, no quantizer in between
    from flow.pipeline import make_model
    from flow.training.train import float_mode

    model = make_model(float_plan)
    # quantizer scales that never saw a statistic are not in a float checkpoint
    model.load_state_dict(load_checkpoint(path)["state_dict"], strict=False)
    x = (torch.rand(4, 784) > 0.5).float()
    with float_mode(model), torch.no_grad():
        model.eval()
        logits = model(x)
    assert torch.allclose(logits, x @ model.fc.weight.T, atol=1e-5)
    a2q_plan = resolve_plan(BuildOptions(acc_bits=14, init_checkpoint=str(path), epochs=1, max_steps_per_epoch=5,
                                         **roots))
    a2q_path, _ = ensure_checkpoint(a2q_plan)
    assert load_checkpoint(a2q_path)["quantizer"] == "a2q"
    with pytest.raises(FlowError, match="a float model has no hardware form"):
        resolve_plan(BuildOptions(quantizer="float", **roots))
