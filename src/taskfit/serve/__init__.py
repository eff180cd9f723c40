"""Serving and operations: ``taskfit serve`` (FastAPI + micro-batching + Prometheus), API keys and the model
registry in a real database (SQLite by default, PostgreSQL by URL), request and feedback logs, drift and alert
monitoring, and ``taskfit retrain`` with replay.

Modules: ``settings`` (ServeSettings), ``batching`` (MicroBatcher), ``app`` (create_app), ``db`` (Store),
``auth`` (Auth), ``admin`` (admin routes), ``monitor`` (drift, alert rules, feedback routes), ``retrain``.
``records`` holds the one record type they pass to each other.
"""
