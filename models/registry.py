"""Model registry: name -> factory, data set, training recipe and build defaults.

A factory is called as ``factory(quantizer, acc_bits, weight_bits=..., act_bits=..., width=...)``
and returns a Brevitas ``nn.Module``. Recipes are plain data, read by ``flow.train``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from flow.errors import FlowError
from models.linear import build_linear


@dataclass(frozen=True)
class ModelSpec:
    name: str
    factory: Callable
    dataset: str  # a loader name known to flow.train
    task: str  # "classification" or "super_resolution"
    input_shape: tuple  # one sample, without the batch dimension
    recipe: dict = field(default_factory=dict)
    weight_bits: int = 8
    act_bits: int = 8
    default_board: str = "pynq-z2"
    description: str = ""


MODELS: dict[str, ModelSpec] = {
    "linear": ModelSpec(
        name="linear",
        factory=build_linear,
        dataset="binary-mnist",
        task="classification",
        input_shape=(784,),
        weight_bits=8,
        act_bits=1,
        recipe={
            "optimizer": "adam",
            "epochs": 3,
            "batch_size": 256,
            "lr": 1e-2,
            "weight_decay": 0.0,
            "lr_step_epochs": 1,
            "lr_gamma": 0.5,
            "reg_lambda": 1e-3,
        },
        description="1-layer linear QNN, K=784 binary inputs, 8-bit weights, 10 classes",
    ),
}


def get_model_spec(name: str) -> ModelSpec:
    """The registry entry for ``name``; a FlowError listing valid names otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise FlowError(f"unknown model {name!r}; valid: {', '.join(sorted(MODELS))}") from None
