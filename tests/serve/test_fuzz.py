"""Schemathesis fuzzes every operation of the app's own /openapi.json (bounded examples) against the app with a
real trained model, an admin key and the real request log: no answer may be a 5xx."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from conftest import tiny_recipe
from taskfit.serve.db import Store


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, bbc_csv: Path) -> Iterator[dict[str, Any]]:
    from fastapi.testclient import TestClient

    from taskfit.config import parse_recipe
    from taskfit.pipeline import train_recipe
    from taskfit.serve.app import create_app
    from taskfit.serve.settings import ModelSpec, ServeSettings

    tmp = tmp_path_factory.mktemp("fuzz")
    run = Path(train_recipe(parse_recipe(tiny_recipe(bbc_csv, tiny_model_dir, tmp, max_steps=3,
                                                     checkpoint_every=100))).run_dir)
    store = Store(f"sqlite:///{tmp / 'fuzz.db'}")
    key = store.create_key("fuzz-admin", scopes=("admin",))
    # Small limits so generated bodies reach them (413 / 422) instead of spending minutes on huge inputs.
    cfg = ServeSettings(models=[ModelSpec(name="news", path=run)], max_items=16, max_text_chars=2000,
                        max_request_bytes=64_000, max_wait_ms=1)
    app = create_app(cfg, store)
    with TestClient(app):  # runs the lifespan: batchers and monitors start and stop
        yield {"schema": schemathesis.openapi.from_asgi("/openapi.json", app), "key": key}
    store.close()


def test_no_server_errors(served: dict[str, Any]) -> None:
    """Every operation, fuzzed from its schema (positive and negative bodies, paths, queries); failures of all
    operations are collected, then reported together."""
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    errors: list[str] = []
    operations = [result.ok() for result in served["schema"].get_all_operations()]
    assert len(operations) >= 10  # predict, models, health, metrics, admin, feedback, drift, alerts
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=12, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case: Any) -> None:
            if case.method.upper() == "DELETE" and case.path.startswith("/v1/admin/keys"):
                case.path_parameters = {**(case.path_parameters or {}), "name": "no-such-key"}  # keep ours
            response = case.call(headers={"X-API-Key": served["key"]})
            statuses[response.status_code] += 1
            if response.status_code >= 500:  # kept verbatim: Hypothesis may only report "unreliable"
                errors.append(f"{case.method} {case.formatted_path} body={case.body!r} → {response.status_code} "
                              f"{response.text[:500]}")
            case.validate_response(response, checks=[not_a_server_error])

        try:
            fuzz()
        except Exception as e:  # collect, so one broken route does not hide the others
            failures.append(f"{operation.method.upper()} {operation.path}: {str(e)[:1500]}")
    assert not failures, "\n\n".join(failures + errors[:5])
    assert statuses[200] > 0 and statuses[422] > 0, statuses  # valid and invalid inputs both got through auth
