"""FINN step lists for topologies that FINN's default streamlining cannot take to HW layers."""

from flow.finn.model_steps import espcn, mobilenetv1, resnet18, unet
from flow.finn.steps import ESTIMATE_STEPS

STEPS_BY_MODEL = {
    "resnet18": resnet18.STEPS,
    "mobilenetv1": mobilenetv1.STEPS,
    "espcn": espcn.STEPS,
    "unet": unet.STEPS,
}


def steps_for_model(name: str) -> list:
    """The FINN step list of a zoo model (FINN's estimate-only steps with the flow's A2Q step by default)."""
    return list(STEPS_BY_MODEL.get(name, ESTIMATE_STEPS))
