"""Closed-set identification: name each query by its nearest gallery example."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def nearest_neighbour(
  gallery: jnp.ndarray, queries: jnp.ndarray, metric: str = "euclidean"
) -> jnp.ndarray:
  """The index of each query's nearest gallery row.

  Args:
    gallery: [g, d] features.
    queries: [q, d] features.
    metric: "euclidean" or "cosine".
  Returns:
    [q] int indices into `gallery`.
  """
  gallery, queries = jnp.asarray(gallery, jnp.float32), jnp.asarray(queries, jnp.float32)
  if gallery.ndim != 2 or queries.ndim != 2 or gallery.shape[1] != queries.shape[1]:
    raise ValueError(
      f"expected gallery [g, d] and queries [q, d], got {gallery.shape} and {queries.shape}"
    )
  if metric == "euclidean":
    # |q - g|^2 up to |q|^2, which is the same for every gallery row of a query.
    score = 2.0 * queries @ gallery.T - jnp.sum(gallery**2, axis=-1)[None, :]
  elif metric == "cosine":
    unit = lambda x: x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    score = unit(queries) @ unit(gallery).T
  else:
    raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
  return jnp.argmax(score, axis=-1)


def identification_accuracy(
  gallery: jnp.ndarray,
  gallery_labels: np.ndarray,
  queries: jnp.ndarray,
  query_labels: np.ndarray,
  metric: str = "euclidean",
) -> float:
  """The fraction of queries whose nearest gallery example is the same person (rank-1 accuracy)."""
  nearest = np.asarray(nearest_neighbour(gallery, queries, metric))
  return float(np.mean(np.asarray(gallery_labels)[nearest] == np.asarray(query_labels)))
