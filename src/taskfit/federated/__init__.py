"""Federated training with Flower: `taskfit federate recipe.yaml` (see docs/trust.md)."""
