"""Model registry: name -> factory, data set, training recipe and build defaults.

A factory is ``"module:function"`` (imported when first used) or a callable, called as
``factory(quantizer, acc_bits, weight_bits=..., act_bits=..., width=..., **data_kwargs)`` and returning
a Brevitas ``nn.Module``. Recipes are plain data, read by ``flow.train``; ``lr_gamma`` multiplies the
learning rate every ``lr_step_epochs`` epochs; ``lr_by_quantizer`` overrides ``lr`` per quantizer. A model module may define ``init_for_a2q(model)``,
used for untrained builds (A2Q-constrained initial weights).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

from flow.errors import FlowError


def _resolve(reference):
    if callable(reference):
        return reference
    module_name, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    factory: Callable | str
    dataset: str  # a loader name known to flow.train.load_dataset
    task: str  # "classification" or "super_resolution"
    input_shape: tuple  # one sample, without the batch dimension (built-in data)
    recipe: dict = field(default_factory=dict)
    weight_bits: int = 4
    act_bits: int = 4
    description: str = ""
    # "module:attribute" of the FINN step list for this topology (default: flow.steps.ESTIMATE_STEPS)
    finn_steps: str | None = None
    # inputs compared between torch, QONNX and FINN in a build (Python execution of big graphs is slow)
    check_samples: int = 8
    # whether `make build` trains when no checkpoint exists (else it builds A2Q-initialized weights)
    train_on_build: bool = False

    def sample_shape(self, data_dir: str | None) -> tuple:
        """One input sample's shape for the data in ``data_dir`` (CIFAR-10 has 3 channels)."""
        if self.dataset == "image-classification":
            from flow.data import image_classification_channels

            return (image_classification_channels(data_dir), *self.input_shape[1:])
        return tuple(self.input_shape)

    def make(self, quantizer: str, acc_bits, weight_bits: int | None = None, act_bits: int | None = None,
             width: float = 1.0, data_dir: str | None = None):
        """Instantiate the Brevitas model for this configuration and data."""
        kwargs = {"weight_bits": weight_bits or self.weight_bits, "act_bits": act_bits or self.act_bits, "width": width}
        if self.dataset == "image-classification":
            kwargs["in_channels"] = self.sample_shape(data_dir)[0]
        return _resolve(self.factory)(quantizer, acc_bits, **kwargs)

    def _module_hook(self, name: str):
        module_name = self.factory.partition(":")[0] if isinstance(self.factory, str) else self.factory.__module__
        return getattr(importlib.import_module(module_name), name, None)

    def init_for_a2q(self, model) -> bool:
        """Apply the model module's A2Q-aware initialization if it has one; True if applied."""
        init = self._module_hook("init_for_a2q")
        if init is None:
            return False
        init(model)
        return True

    def after_calibration(self, model, inputs) -> bool:
        """Apply the model module's ``center_output_level(model, inputs)`` (untrained builds) if it has one."""
        hook = self._module_hook("center_output_level")
        if hook is None:
            return False
        hook(model, inputs)
        return True


def _sgd(epochs, batch_size, lr, weight_decay, step, gamma):
    return {"optimizer": "sgd", "epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
            "lr_step_epochs": step, "lr_gamma": gamma, "reg_lambda": 1e-3}


def _adam(epochs, batch_size, lr, weight_decay, step, gamma):
    return {**_sgd(epochs, batch_size, lr, weight_decay, step, gamma), "optimizer": "adam"}


MODELS: dict[str, ModelSpec] = {
    "linear": ModelSpec(
        name="linear",
        factory="models.linear:build_linear",
        dataset="binary-mnist",
        task="classification",
        input_shape=(784,),
        weight_bits=8,
        act_bits=1,
        # A2Q's weight-norm parametrization (direction and norm g) learns slower at the same step size:
        # 3 epochs on Fashion-MNIST gave A2Q P=12 70.3% top-1 at lr 1e-2 and 78.4% at 3e-2, while the
        # baseline is best at 1e-2 (79.2% against 78.3%).
        recipe={**_adam(epochs=3, batch_size=256, lr=1e-2, weight_decay=0.0, step=1, gamma=0.5),
                "lr_by_quantizer": {"a2q": 3e-2, "a2q+": 3e-2}},
        train_on_build=True,
        description="1-layer linear QNN, K=784 binary inputs, 8-bit weights, 10 classes",
    ),
    "resnet18": ModelSpec(
        name="resnet18",
        factory="models.resnet18:build_resnet18",
        dataset="image-classification",
        task="classification",
        input_shape=(3, 32, 32),
        recipe=_sgd(epochs=100, batch_size=256, lr=1e-3, weight_decay=1e-5, step=30, gamma=0.1),
        finn_steps="flow.model_steps.resnet18:STEPS",
        check_samples=2,
        description="ResNet18 for CIFAR-10 (3x3 stem, no max-pool, 1x1-conv shortcuts)",
    ),
    "mobilenetv1": ModelSpec(
        name="mobilenetv1",
        factory="models.mobilenetv1:build_mobilenetv1",
        dataset="image-classification",
        task="classification",
        input_shape=(3, 32, 32),
        recipe=_sgd(epochs=100, batch_size=64, lr=1e-3, weight_decay=1e-5, step=1, gamma=0.9),
        finn_steps="flow.model_steps.mobilenetv1:STEPS",
        check_samples=2,
        description="MobileNetV1 for CIFAR-10 (stride 2 in the first conv and the final pool)",
    ),
    "espcn": ModelSpec(
        name="espcn",
        factory="models.espcn:build_espcn",
        dataset="super-resolution",
        task="super_resolution",
        input_shape=(1, 16, 16),
        recipe=_adam(epochs=100, batch_size=16, lr=1e-4, weight_decay=1e-4, step=1, gamma=0.98),
        finn_steps="flow.model_steps.espcn:STEPS",
        check_samples=2,
        description="ESPCN x3 super-resolution, nearest-neighbour resize convolution",
    ),
    "unet": ModelSpec(
        name="unet",
        factory="models.unet:build_unet",
        dataset="super-resolution",
        task="super_resolution",
        input_shape=(1, 16, 16),
        recipe=_adam(epochs=200, batch_size=16, lr=1e-3, weight_decay=1e-4, step=50, gamma=0.3),
        finn_steps="flow.model_steps.unet:STEPS",
        check_samples=2,
        description="3-level UNet x3 super-resolution, resize convolutions, additive skips",
    ),
}


def get_model_spec(name: str) -> ModelSpec:
    """The registry entry for ``name``; a FlowError listing valid names otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise FlowError(f"unknown model {name!r}; valid: {', '.join(sorted(MODELS))}") from None
