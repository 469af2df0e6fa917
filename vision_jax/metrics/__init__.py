"""Evaluation metrics that need more than a mean of per-example values, each tested against a
reference implementation."""
