"""Training: seeded, resumable after an interruption, checkpoints that are checked on load."""

import pytest
import torch

from flow.errors import FlowError
from flow.train import A2QRegularizer, load_checkpoint, model_identity, train_model
from models import get_model_spec


def test_train_resumes_after_the_last_finished_epoch(tmp_path, fashion_mnist):
    spec = get_model_spec("linear")
    identity = model_identity(spec, "a2q", 14, 8, 1, 1.0)
    path = tmp_path / "linear.pt"
    lines = []
    train_model(spec, spec.make("a2q", 14), identity, path, epochs=1, max_steps_per_epoch=3, log=lines.append)
    first = load_checkpoint(path)
    assert first["epoch"] == 1 and 0.0 <= first["metrics"]["test_top1"] <= 1.0
    # an "interrupted" run asked for 2 epochs: the second call continues from epoch 1
    lines.clear()
    metrics = train_model(spec, spec.make("a2q", 14), identity, path, epochs=2, max_steps_per_epoch=3, log=lines.append)
    assert any("resuming linear.pt after epoch 1/2" in line for line in lines)
    assert not any("epoch 1/2 step" in line for line in lines)
    assert load_checkpoint(path)["epoch"] == 2 and metrics["epochs"] == 2


def test_same_seed_same_weights(tmp_path, fashion_mnist):
    spec = get_model_spec("linear")
    identity = model_identity(spec, "a2q", 14, 8, 1, 1.0)
    states = []
    for run in range(2):
        torch.manual_seed(0)  # the same initial weights; training itself is seeded by train_model
        path = tmp_path / f"run{run}.pt"
        train_model(spec, spec.make("a2q", 14), identity, path, epochs=1, max_steps_per_epoch=2, seed=7, log=lambda line: None)
        states.append(load_checkpoint(path)["state_dict"])
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_a2q_regularizer_sees_every_a2q_layer():
    spec = get_model_spec("linear")
    model = spec.make("a2q", 12)
    regularizer = A2QRegularizer(model)
    assert regularizer.active
    model(torch.ones(2, 784))
    assert float(regularizer.pop()) >= 0.0
    assert not A2QRegularizer(spec.make("baseline", None)).active


def test_checkpoint_errors(tmp_path):
    with pytest.raises(FlowError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(FlowError, match="not a checkpoint of this flow"):
        load_checkpoint(tmp_path / "other.pt")
