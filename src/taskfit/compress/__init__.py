"""Compression stage: ``taskfit compress RUN_DIR --method ...`` (ONNX export and optimisation, int8
quantisation) with a before/after table. See :mod:`taskfit.compress.run`."""

from taskfit.compress.methods import COMPRESSORS, SUPPORTED_TASKS
from taskfit.compress.run import CompressResult, compress_run

__all__ = ["COMPRESSORS", "SUPPORTED_TASKS", "CompressResult", "compress_run"]
