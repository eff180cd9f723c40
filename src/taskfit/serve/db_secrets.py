"""Secrets and personal data on their way into the serving database: API-key hashing and request-text masking.

Keys are hashed with scrypt (a fresh 16-byte salt per key; parameters stored in the hash string so they can be
raised later without breaking old keys) and compared in constant time. Texts are masked with taskfit's PII
recognisers (:mod:`taskfit.trust.pii`) before the request log stores them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
from collections.abc import Mapping
from typing import Any

__all__ = ["check_key", "hash_key", "mask_record"]

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}  # ~35 ms and 16 MiB per hash; Store caches verified keys in memory


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_key(raw: str, salt: bytes | None = None) -> str:
    """``scrypt$n$r$p$salt$hash`` of a raw key (a fresh 16-byte salt unless one is given)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    n, r, p = _SCRYPT["n"], _SCRYPT["r"], _SCRYPT["p"]
    digest = hashlib.scrypt(raw.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def check_key(raw: str, stored: str) -> bool:
    """Whether ``raw`` hashes to ``stored`` (parameters read from ``stored``; constant-time comparison)."""
    try:
        algo, n, r, p, salt, digest = stored.split("$")
        if algo != "scrypt":
            return False
        got = hashlib.scrypt(raw.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    except ValueError:
        return False
    return hmac.compare_digest(got, _unb64(digest))


_mask_lock = threading.Lock()


def mask_record(text: str, outputs: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """``text`` with personal data replaced by placeholders (``<EMAIL>``), and ``outputs`` with every string
    containing one of the values found masked the same way (NER spans echo the input)."""
    from taskfit.trust import pii

    pii.check_dependencies("serve request log (log_predictions mask=True)")
    with _mask_lock:  # Presidio's engines are shared process-wide; one caller at a time
        results = pii.analyze(text)
        masked = pii.anonymize(text, results)
    out = dict(outputs or {})
    if not results:
        return masked, out
    found = sorted({(text[r.start:r.end], pii.placeholder(r.entity_type)) for r in results}, key=lambda v: -len(v[0]))

    def scrub(value: Any) -> Any:
        if isinstance(value, str):
            for raw, holder in found:
                value = value.replace(raw, holder)
            return value
        if isinstance(value, Mapping):
            return {k: scrub(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [scrub(v) for v in value]
        return value

    return masked, scrub(out)
