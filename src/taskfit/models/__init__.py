"""Models stage: resolving pretrained backbones (offline first)."""

from taskfit.models.resolve import list_models, resolve_model

__all__ = ["list_models", "resolve_model"]
