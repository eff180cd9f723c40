"""Process-wide defaults for running offline and quietly."""

from __future__ import annotations

import os


def offline_defaults() -> None:
    """Nothing is fetched at run time unless the user opts in by setting HF_HUB_OFFLINE=0; no telemetry."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # taskfit draws its own progress; HF's load/save bars are noise
