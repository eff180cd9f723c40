"""`taskfit audit RUN_DIR`: one HTML + JSON trust report (privacy, robustness, fairness, explanations, provenance, model card)."""
