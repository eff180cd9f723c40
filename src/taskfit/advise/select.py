"""Which table of measured figures advice uses: a profile file, this machine's profile, or the built-in reference.

Order: ``--profile FILE`` → this machine's default profile (:func:`default_profile_path`) when it exists → the
reference figures built into taskfit (measured on the project's 2-core CPU; advice then says so). ``--hardware``
names the machine the advice is for ("cpu", or a GPU name such as "H100"); a table measured on other hardware
is refused, because step times do not carry from one device to another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from taskfit.advise.profile import default_profile_path, load_profile
from taskfit.errors import ConfigError


def hardware_of(doc: dict[str, Any]) -> str:
    """"cpu" or the GPU name a table was measured on."""
    return str(doc["machine"].get("gpu") or "cpu")


def matches(hardware: str, doc: dict[str, Any]) -> bool:
    """``hardware`` ("cpu" or a case-insensitive part of a GPU name) describes the table's machine."""
    gpu = doc["machine"].get("gpu")
    want = hardware.strip().lower()
    if want == "cpu":
        return not gpu
    return bool(gpu) and want in str(gpu).lower()


def select_profile(hardware: str | None = None, profile: Path | None = None) -> tuple[dict[str, Any], str]:
    """Return (table, source) where source is "profile" or "reference".

    Raises:
        ConfigError: ``--hardware`` names a machine none of the available tables was measured on, or the
            chosen table has no options.
    """
    from taskfit.advise.reference import REFERENCE

    if profile is not None:
        candidates = [(load_profile(profile), "profile", str(profile))]
    else:
        path = default_profile_path()
        candidates = [(load_profile(path), "profile", str(path))] if path.is_file() else []
        candidates.append((REFERENCE, "reference", "built-in reference"))
    if hardware is not None:
        usable = [c for c in candidates if matches(hardware, c[0])]
        if not usable:
            seen = "; ".join(f"{where}: {hardware_of(doc)}" for doc, _, where in candidates)
            raise ConfigError(
                f"--hardware {hardware!r}: no measured figures for it (available: {seen}). Run `taskfit profile` "
                f"on that machine and pass its file with --profile, or use --hardware cpu.")
        candidates = usable
    doc, source, where = candidates[0]
    if not doc.get("options"):
        raise ConfigError(f"the profile {where} has no measured options; run `taskfit profile` (it resumes).")
    return doc, source
