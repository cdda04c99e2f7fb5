"""`make train` for the zoo: one short epoch of each model at a tiny width on the built-in data, then resume."""

from dataclasses import replace

import pytest

from flow.options import BuildOptions, resolve_plan
from flow.pipeline import ensure_checkpoint
from flow.training.checkpoints import load_checkpoint
from models import get_model_spec


# ResNet18's variant is slow-only (its test-set evaluation dominates; the code path is the others')
@pytest.mark.parametrize("name,metric", [pytest.param("resnet18", "test_top1", marks=pytest.mark.slow),
                                         ("mobilenetv1", "test_top1"), ("espcn", "test_psnr"), ("unet", "test_psnr")])
def test_short_training_writes_a_checkpoint_and_resumes(name, metric, tmp_path, fashion_mnist, capsys):
    spec = get_model_spec(name)
    opts = BuildOptions(model=name, acc_bits=16, width=1 / 16, epochs=1, max_steps_per_epoch=2,
                        checkpoint_root=tmp_path)
    path, metrics = ensure_checkpoint(resolve_plan(opts), train=True)
    payload = load_checkpoint(path)
    assert payload["epoch"] == 1 and payload["recipe"] == spec.recipe
    assert metric in metrics and metrics[metric] == payload["metrics"][metric]
    if metric == "test_top1":
        assert 0.0 <= metrics[metric] <= 1.0
    else:
        assert 0.0 < metrics[metric] < 100.0  # PSNR in dB of real photographs
    capsys.readouterr()
    # as if the first run had been interrupted after epoch 1 of 2
    ensure_checkpoint(resolve_plan(replace(opts, epochs=2)), train=True)
    output = capsys.readouterr().out
    assert f"resuming {path.name} after epoch 1/2" in output and "epoch 1/2 step" not in output
    assert load_checkpoint(path)["epoch"] == 2
