"""Real datasets that ship inside installed packages, written out in the format their task reads.

Each module of this package registers :class:`PackagedDataset` entries in :data:`DATASETS`; each entry
knows its task, language, licence, how to write itself (a CSV/JSONL file, a CoNLL file or an image
folder) and the recipe defaults that make a good demo (``taskfit demo --dataset NAME``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskfit.errors import DataError
from taskfit.registry import Registry


@dataclass(frozen=True)
class PackagedDataset:
    """A real labelled dataset installed from a package.

    Attributes:
        name: registry name (``taskfit dataset NAME DEST``).
        task: the task it is for (a task registry name).
        language: "en", "zh", ...
        description: one line for listings.
        licence: the licence of the data (named in NOTICE when a demo uses it).
        writer: ``writer(dest, n, seed) -> path written``; ``n`` keeps a seeded sample of n rows.
        suffix: file suffix of what ``writer`` writes ("" for a folder).
        recipe: recipe defaults for a demo on it (``task``, ``data`` columns, ``model``, ``train``...).
        demo_rows: rows the demo samples by default (None = all), so a CPU demo takes minutes, not hours.
    """

    name: str
    task: str
    language: str
    description: str
    licence: str
    writer: Callable[[Path, int | None, int], Path]
    suffix: str = ".csv"
    recipe: dict[str, Any] = field(default_factory=dict)
    demo_rows: int | None = None


DATASETS: Registry[PackagedDataset] = Registry("packaged dataset")


def register_dataset(ds: PackagedDataset) -> PackagedDataset:
    DATASETS.register(ds.name)(ds)
    return ds


def package_dir(package: str, install_hint: str) -> Path:
    """The folder of an installed package (works for packages that cannot be imported)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"The package {package!r} is not installed. Install it with: {install_hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def write_dataset(name: str, dest: str | Path, n: int | None = None, seed: int = 0) -> Path:
    """Write packaged dataset ``name`` to ``dest`` (atomically); returns what was written.

    Args:
        n: keep a seeded random sample of ``n`` rows (or sentences, pairs, images).
        seed: seed of that sample.

    Raises:
        DataError: unknown name (listing the available ones) or the source package is missing.
    """
    if name not in DATASETS:
        raise DataError(f"Unknown packaged dataset {name!r}; available: {', '.join(DATASETS.names())}.")
    return DATASETS.get(name).writer(Path(dest), n, seed)


# Registration side effects: one module per family of datasets.
from taskfit.data.packaged import (  # noqa: E402,F401
    faq,
    groups,
    images,
    instructions,
    multilabel,
    ner,
    scores,
    text,
)
from taskfit.data.packaged.text import bbc_news_rows, zh_sentiment_rows  # noqa: E402

__all__ = ["DATASETS", "PackagedDataset", "bbc_news_rows", "package_dir", "register_dataset", "write_dataset",
           "zh_sentiment_rows"]
