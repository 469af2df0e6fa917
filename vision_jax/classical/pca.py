"""Principal component analysis by the SVD of the centred data, in JAX; eigenfaces are its use on faces.

The principal components of the training data come from the SVD of the centred data matrix
X - mean = U S V^T: the rows of V^T, with variances S^2 / (n - 1). For faces these are the
eigenfaces of Turk & Pentland 1991 ("Eigenfaces for recognition"). With fewer faces than pixels
(ORL: 200 faces of 10,304 pixels) the economy SVD costs what the paper's trick (the eigenvectors
of the small n x n matrix (X - mean)(X - mean)^T) costs. A face is described by its projection
on the first k eigenfaces and named after the nearest training face in that space.

    pca = fit_pca(train_faces)                         # [n, pixels] float
    codes = pca.transform(faces, k)                    # [m, k]
    approx = pca.inverse_transform(codes)              # [m, pixels]
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class PCA:
  """A linear projection onto the leading principal directions.

  Attributes:
    mean: [features] the data mean that is subtracted first (the mean face).
    components: [k, features] orthonormal rows, by decreasing variance (the eigenfaces).
    explained_variance: [k] the variance of the data along each component (n - 1 denominator).
    explained_variance_ratio: [k] that variance over the data's total variance.
  """

  mean: jax.Array
  components: jax.Array
  explained_variance: jax.Array
  explained_variance_ratio: jax.Array

  def transform(self, x: jax.Array, num_components: int | None = None) -> jax.Array:
    """[n, features] -> [n, k]: coordinates on the first `num_components` (default: all) components."""
    components = self.components if num_components is None else self.components[:num_components]
    return (jnp.asarray(x, jnp.float32) - self.mean) @ components.T

  def inverse_transform(self, codes: jax.Array) -> jax.Array:
    """[n, k] -> [n, features]: the point of the first k components' subspace with these coordinates."""
    return self.mean + codes @ self.components[: codes.shape[-1]]


def fit_pca(x: jax.Array, num_components: int | None = None) -> PCA:
  """The first `num_components` (default: min(n, d)) principal components of `x` [n, d].

  Each component's sign is fixed so that its largest-magnitude entry is positive, so that a
  fit is reproducible across SVD implementations (as sklearn does).
  """
  x = jnp.asarray(x, jnp.float32)
  if x.ndim != 2 or x.shape[0] < 2:
    raise ValueError(f"fit_pca expects data of shape [examples >= 2, features], got {x.shape}")
  n, d = x.shape
  k = min(n, d) if num_components is None else num_components
  if not 0 < k <= min(n, d):
    raise ValueError(
      f"num_components must be in [1, min(examples, features) = {min(n, d)}] "
      f"for data of {x.shape}, got {k}"
    )
  mean = jnp.mean(x, axis=0)
  _, singular_values, vt = jnp.linalg.svd(x - mean, full_matrices=False)
  largest = jnp.take_along_axis(vt, jnp.argmax(jnp.abs(vt), axis=1)[:, None], axis=1)
  vt = vt * jnp.sign(largest)
  variance = singular_values**2 / (n - 1)
  return PCA(
    mean=mean,
    components=vt[:k],
    explained_variance=variance[:k],
    explained_variance_ratio=variance[:k] / jnp.sum(variance),
  )
