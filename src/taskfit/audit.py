"""`taskfit audit RUN_DIR`: one HTML + JSON trust report.

Privacy, robustness, fairness, explanations, data provenance and the model card.
"""
