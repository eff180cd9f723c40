"""Data stage: reading files, splitting, quality checks, packaged datasets."""

from taskfit.data.load import Splits, load_splits
from taskfit.data.readers import read_table

__all__ = ["Splits", "load_splits", "read_table"]
