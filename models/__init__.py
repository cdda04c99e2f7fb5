"""Brevitas model definitions and the registry mapping a model name to its factory, data and recipe."""

from models.registry import MODELS, get_model_spec

__all__ = ["MODELS", "get_model_spec"]
