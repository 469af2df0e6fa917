"""Eigenfaces (Turk & Pentland 1991, "Eigenfaces for recognition"): PCA of face images in JAX.

The principal components of the training faces (the eigenfaces) come from the SVD of the
centred data matrix X - mean = U S V^T: the rows of V^T, with variances S^2 / (n - 1). With
fewer faces than pixels (ORL: 200 faces of 10,304 pixels) the economy SVD costs what the
paper's trick (the eigenvectors of the small n x n matrix (X - mean)(X - mean)^T) costs. A face
is described by its projection on the first k eigenfaces and named after the nearest training
face in that space.

    pca = fit_pca(train_faces)                         # [n, pixels] float
    codes = project(pca, faces, k)                     # [m, k]
    approx = reconstruct(pca, codes)                   # [m, pixels]
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp


class PCA(NamedTuple):
  """A fitted PCA.

  Attributes:
    mean: [d] the mean of the training data (the mean face).
    components: [k, d] orthonormal rows, by decreasing variance (the eigenfaces).
    explained_variance: [k] the variance of the training data along each component (n - 1 denominator).
    explained_variance_ratio: [k] that variance over the total variance.
  """
  mean: jnp.ndarray
  components: jnp.ndarray
  explained_variance: jnp.ndarray
  explained_variance_ratio: jnp.ndarray


def fit_pca(x: jnp.ndarray, num_components: int | None = None) -> PCA:
  """The first `num_components` (default: min(n, d)) principal components of `x` [n, d].

  Each component's sign is fixed so that its largest-magnitude entry is positive, so that a
  fit is reproducible across SVD implementations (as sklearn does).
  """
  x = jnp.asarray(x, jnp.float32)
  if x.ndim != 2 or x.shape[0] < 2:
    raise ValueError(f"fit_pca expects data [n >= 2, d], got {x.shape}")
  n, d = x.shape
  k = min(n, d) if num_components is None else num_components
  if not 0 < k <= min(n, d):
    raise ValueError(f"num_components must be in [1, {min(n, d)}] for data of {x.shape}, got {k}")
  mean = jnp.mean(x, axis=0)
  _, singular_values, vt = jnp.linalg.svd(x - mean, full_matrices=False)
  largest = jnp.take_along_axis(vt, jnp.argmax(jnp.abs(vt), axis=1)[:, None], axis=1)
  vt = vt * jnp.sign(largest)
  variance = singular_values ** 2 / (n - 1)
  return PCA(mean=mean, components=vt[:k], explained_variance=variance[:k],
             explained_variance_ratio=variance[:k] / jnp.sum(variance))


def project(pca: PCA, x: jnp.ndarray, num_components: int | None = None) -> jnp.ndarray:
  """The coordinates of `x` [m, d] on the first `num_components` eigenfaces: [m, k]."""
  components = pca.components if num_components is None else pca.components[:num_components]
  return (jnp.asarray(x, jnp.float32) - pca.mean) @ components.T


def reconstruct(pca: PCA, codes: jnp.ndarray) -> jnp.ndarray:
  """The faces [m, d] that `codes` [m, k] describe on the first k eigenfaces."""
  return pca.mean + codes @ pca.components[: codes.shape[-1]]
