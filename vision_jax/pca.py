"""Principal component analysis by the singular value decomposition of the centred data, in JAX."""
from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class PCA:
  """A linear projection onto the leading principal directions.

  Attributes:
    mean: [features] the data mean that is subtracted first.
    components: [dims, features] orthonormal rows, by decreasing variance.
    explained_variance: [dims] the variance of the data along each component.
  """
  mean: jax.Array
  components: jax.Array
  explained_variance: jax.Array

  def transform(self, x: jax.Array) -> jax.Array:
    """[n, features] -> [n, dims]."""
    return (x - self.mean) @ self.components.T

  def inverse_transform(self, z: jax.Array) -> jax.Array:
    """[n, dims] -> [n, features]: the point of the principal subspace with these coordinates."""
    return z @ self.components + self.mean


def fit_pca(x: jax.Array, dims: int) -> PCA:
  """The first `dims` principal components of x: [n, features]."""
  if x.ndim != 2:
    raise ValueError(f"expected data of shape [examples, features], got {x.shape}")
  if not 1 <= dims <= min(x.shape):
    raise ValueError(f"dims must be between 1 and min(examples, features) = {min(x.shape)}, got {dims}")
  x = jnp.asarray(x, jnp.float32)
  mean = jnp.mean(x, axis=0)
  _, singular_values, vt = jnp.linalg.svd(x - mean, full_matrices=False)
  return PCA(mean=mean, components=vt[:dims], explained_variance=singular_values[:dims] ** 2 / (x.shape[0] - 1))
