"""Evaluation metrics, each tested against a reference implementation."""
