"""The one exception tree of taskfit.

Every error a user can cause derives from :class:`TaskfitError`. The CLI prints these without a
traceback and exits with status 2; anything else is a bug in taskfit and keeps its traceback.

Messages follow one shape: what is wrong, where (file, row, column, dotted config path), the value
that was seen, what was expected, and how to fix it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class TaskfitError(Exception):
    """Base class for every error taskfit raises on purpose."""


class ConfigError(TaskfitError, ValueError):
    """The recipe (or a CLI override) is invalid.

    Attributes:
        problems: one line per problem, each starting with the dotted path of the key.
    """

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        self.problems = list(problems)
        if self.problems:
            lines = "\n".join(f"  - {p}" for p in self.problems)
            message = f"{message}\n{lines}"
        super().__init__(message)


class DataError(TaskfitError, ValueError):
    """The data cannot be used: unreadable file, missing column, malformed row, unknown label...

    Attributes:
        source: the file the problem is in, if any.
        rows: 1-based data row numbers (header excluded) involved, if any.
        column: the column involved, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | Path | None = None,
        rows: Sequence[int] = (),
        column: str | None = None,
    ) -> None:
        self.source = str(source) if source is not None else None
        self.rows = list(rows)
        self.column = column
        where = []
        if self.source:
            where.append(f"file {self.source}")
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows[:10])
            more = f" (+{len(self.rows) - 10} more)" if len(self.rows) > 10 else ""
            where.append(f"row{'s' if len(self.rows) > 1 else ''} {shown}{more}")
        if self.column:
            where.append(f"column {self.column!r}")
        prefix = f"[{', '.join(where)}] " if where else ""
        super().__init__(prefix + message)


class IncompatibleError(TaskfitError):
    """Two valid choices cannot be combined (e.g. a method with a task it does not support)."""


class NotFittedError(TaskfitError):
    """A run directory has no trained model yet (training never finished, or the path is wrong)."""


class ModelNotFoundError(TaskfitError):
    """A model name resolves to nothing: not packaged, not a local directory, not reachable online."""


class NotFoundError(TaskfitError, LookupError):
    """A named record does not exist: an API key, a registered model or version, a logged request id."""
