"""Sample quality of a generator, measured with a classifier trained in this project.

- The Fréchet distance (Heusel et al. 2017, "GANs trained by a two time-scale update rule
  converge to a local Nash equilibrium", eq. 6) between Gaussians fitted to the classifier's
  features of real and of generated images:
      d^2 = |mu_r - mu_g|^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)).
- An Inception-style score (Salimans et al. 2016, "Improved techniques for training GANs",
  Section 4): exp(E_x KL(p(y|x) || p(y))), from the classifier's predicted class probabilities.
  It is 1 when every prediction is the same, and K when K classes are used equally and each image
  is classified with certainty. Computed over the whole set (the paper averages 10 splits).

These are *not* the papers' FID and Inception score: those use the Inception-v3 network trained
on ImageNet (`pool_3` features, 2048-d, and its 1008-way softmax), whose weights are not available
offline here. With the standard Inception weights imported as saved variables, the same formulas
give the standard numbers; with our classifiers (LeNet-5 on MNIST, a small CNN on CIFAR-10) they
compare runs with each other, not with numbers in papers.

Both are written in sum form, so that an eval step returns (sum, count) pairs that add up over
batches and devices: a feature mean is s1 / n and its covariance (s2 - n mu mu^T) / (n - 1), with
s1 the sum of the features and s2 the sum of their outer products.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
  """The squared Fréchet (2-Wasserstein) distance between N(mu1, cov1) and N(mu2, cov2).

  mu: [d]; cov: [d, d] symmetric positive semi-definite. Tr((cov1 cov2)^(1/2)) is computed as the
  sum of the square roots of the eigenvalues of cov1^(1/2) cov2 cov1^(1/2), which is symmetric:
  no general matrix square root, and no complex parts from rounding.
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
  if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != mu1.shape * 2:
    raise ValueError(
      f"expected means [d] and covariances [d, d], got {mu1.shape}, {cov1.shape}, "
      f"{mu2.shape}, {cov2.shape}"
    )
  values, vectors = np.linalg.eigh((cov1 + cov1.T) / 2)
  sqrt1 = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
  middle = sqrt1 @ cov2 @ sqrt1
  trace_sqrt = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)))
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_sqrt)


def classifier_score(probs: np.ndarray) -> float:
  """The Inception-style score exp(mean_x KL(p(y|x) || p(y))) of predictions [n, classes]."""
  probs = np.asarray(probs, np.float64)
  return classifier_score_from_sums(np.sum(_xlogx(probs)), np.sum(probs, axis=0), len(probs))


def classifier_score_from_sums(plogp_sum: float, probs_sum: np.ndarray, count: float) -> float:
  """The score from sum_x sum_y p log p, sum_x p(y|x) [classes] and the number of images."""
  marginal = np.asarray(probs_sum, np.float64) / count
  return float(np.exp(float(plogp_sum) / count - np.sum(_xlogx(marginal))))


def gaussian_from_sums(
  feature_sum: np.ndarray, outer_sum: np.ndarray, count: float
) -> tuple[np.ndarray, np.ndarray]:
  """(mean [d], unbiased covariance [d, d]) from sum_x f, sum_x f f^T and the count."""
  if count < 2:
    raise ValueError(f"a covariance needs at least 2 examples, got {count}")
  mu = np.asarray(feature_sum, np.float64) / count
  cov = (np.asarray(outer_sum, np.float64) - count * np.outer(mu, mu)) / (count - 1)
  return mu, cov


def feature_sums(
  features: jnp.ndarray, mask: jnp.ndarray
) -> dict[str, tuple[jnp.ndarray, jnp.ndarray]]:
  """Sum-form statistics of features [b, d] over the real rows (mask [b]): sum and outer-product sum."""
  m = mask.astype(jnp.float32)
  f = features.astype(jnp.float32) * m[:, None]
  count = jnp.sum(m)
  return {"feature_sum": (jnp.sum(f, axis=0), count), "outer_sum": (f.T @ f, count)}


def prediction_sums(
  probs: jnp.ndarray, mask: jnp.ndarray
) -> dict[str, tuple[jnp.ndarray, jnp.ndarray]]:
  """Sum-form statistics of class probabilities [b, classes] for the score."""
  m = mask.astype(jnp.float32)
  p = probs.astype(jnp.float32)
  count = jnp.sum(m)
  return {
    "probs_sum": (jnp.sum(p * m[:, None], axis=0), count),
    "plogp_sum": (jnp.sum(jnp.sum(_xlogx(p), axis=1) * m), count),
  }


def _xlogx(p):
  """p log p with 0 log 0 = 0 (numpy or jax arrays)."""
  xp = jnp if isinstance(p, jnp.ndarray) and not isinstance(p, np.ndarray) else np
  return xp.where(p > 0, p * xp.log(xp.where(p > 0, p, 1.0)), 0.0)
