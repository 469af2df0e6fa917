"""Gaussian mixtures fitted by expectation-maximisation (Dempster, Laird & Rubin 1977), in JAX.

    mixture = gmm.init_kmeans_plusplus(rng, x, n_components=10, covariance_type="full")
    mixture, log_likelihoods = gmm.fit(x, mixture, max_iter=100)
    samples, components = gmm.sample(rng, mixture, 64)

The E step (responsibilities) and the M step (weights, means, covariances) are jitted; `fit`
runs them from the host so that it can report the log-likelihood of every iteration and stop at
convergence. A covariance floor `reg` is added to every covariance's diagonal in the M step (as
scikit-learn's `reg_covar`), so that a component that collapses onto a few points keeps an
invertible covariance. EM computes in float32: a component that shrinks onto about `dim` points
without a sufficient floor gets a covariance with a condition number near 1e7, and then rounding
can make the log-likelihood dip by ~1e-3 nats between iterations (in float64 it never does).

This is not a gradient-trained model, so it does not go through the training loop; its
experiment (`experiments/gmm_mnist.py`) runs EM directly.
"""

from __future__ import annotations

import functools
import math

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

COVARIANCE_TYPES = ("full", "diag")


@flax.struct.dataclass
class GaussianMixture:
  """A mixture of Gaussians.

  Attributes:
    weights: [components] mixing proportions, summing to 1.
    means: [components, dim].
    covariances: [components, dim, dim] ("full") or [components, dim] (variances, "diag").
  """

  weights: jax.Array
  means: jax.Array
  covariances: jax.Array

  @property
  def covariance_type(self) -> str:
    return "full" if self.covariances.ndim == 3 else "diag"

  @property
  def n_components(self) -> int:
    return self.means.shape[0]

  @property
  def precisions(self) -> np.ndarray:
    """Inverse covariances (as scikit-learn's `precisions_init` expects), float64 on the host."""
    cov = np.asarray(self.covariances, np.float64)
    return np.linalg.inv(cov) if cov.ndim == 3 else 1.0 / cov


def _check_covariance_type(covariance_type: str) -> None:
  if covariance_type not in COVARIANCE_TYPES:
    raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}")


def _check_data(x: jax.Array, n_components: int | None = None) -> None:
  if x.ndim != 2:
    raise ValueError(f"expected data of shape [examples, dim], got {x.shape}")
  if n_components is not None and not 1 <= n_components <= x.shape[0]:
    raise ValueError(
      f"n_components must be between 1 and the {x.shape[0]} examples, got {n_components}"
    )


def component_log_probs(mixture: GaussianMixture, x: jax.Array) -> jax.Array:
  """log(weight_k N(x | mean_k, cov_k)) for every example and component: [n, components].

  x: [n, dim].
  """
  x = x.astype(jnp.float32)
  dim = x.shape[-1]
  diff = x[None, :, :] - mixture.means[:, None, :]  # [k, n, d]
  if mixture.covariance_type == "full":
    chol = jnp.linalg.cholesky(mixture.covariances)  # [k, d, d]
    # Solve L y = (x - mu): the Mahalanobis distance is |y|^2, without forming the inverse.
    y = jax.vmap(lambda l, d: jax.scipy.linalg.solve_triangular(l, d.T, lower=True))(
      chol, diff
    )  # [k, d, n]
    mahalanobis = jnp.sum(y**2, axis=1)  # [k, n]
    log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=1, axis2=2)), axis=1)  # [k]
  else:
    mahalanobis = jnp.sum(diff**2 / mixture.covariances[:, None, :], axis=2)
    log_det = jnp.sum(jnp.log(mixture.covariances), axis=1)
  log_normal = -0.5 * (dim * math.log(2.0 * math.pi) + log_det[:, None] + mahalanobis)
  return (log_normal + jnp.log(mixture.weights)[:, None]).T


@jax.jit
def e_step(mixture: GaussianMixture, x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Responsibilities and the data's mean log-likelihood under `mixture`.

  Returns (log_resp [n, components], mean over examples of log p(x)).
  """
  log_probs = component_log_probs(mixture, x)
  log_px = jax.nn.logsumexp(log_probs, axis=1)
  return log_probs - log_px[:, None], jnp.mean(log_px)


@functools.partial(jax.jit, static_argnames=("covariance_type",))
def m_step(x: jax.Array, resp: jax.Array, covariance_type: str, reg: float) -> GaussianMixture:
  """The mixture that maximises the expected complete-data log-likelihood under `resp`.

  x: [n, dim]; resp: [n, components] (rows sum to 1). `reg` is added to every variance.
  """
  x = x.astype(jnp.float32)
  # As scikit-learn: a tiny floor on the counts, so that an empty component does not divide by 0.
  counts = jnp.sum(resp, axis=0) + 10 * jnp.finfo(jnp.float32).eps  # [k]
  means = resp.T @ x / counts[:, None]  # [k, d]
  diff = x[None, :, :] - means[:, None, :]  # [k, n, d]
  if covariance_type == "full":
    cov = jnp.einsum("nk,knd,kne->kde", resp, diff, diff) / counts[:, None, None]
    cov = cov + reg * jnp.eye(x.shape[1], dtype=cov.dtype)
  else:
    cov = jnp.einsum("nk,knd->kd", resp, diff**2) / counts[:, None] + reg
  return GaussianMixture(weights=counts / x.shape[0], means=means, covariances=cov)


@functools.partial(jax.jit, static_argnames=("covariance_type",))
def em_step(
  mixture: GaussianMixture, x: jax.Array, covariance_type: str, reg: float
) -> tuple[GaussianMixture, jax.Array]:
  """One EM iteration. Returns (the updated mixture, the mean log-likelihood of the old one)."""
  log_resp, log_likelihood = e_step(mixture, x)
  return m_step(x, jnp.exp(log_resp), covariance_type, reg), log_likelihood


@functools.partial(jax.jit, static_argnames=("n_components",))
def kmeans_plusplus(rng: jax.Array, x: jax.Array, n_components: int) -> jax.Array:
  """k-means++ seeding (Arthur & Vassilvitskii 2007): [n_components, dim] centres taken from x.

  The first centre is uniform over the examples; each next one is drawn with probability
  proportional to the squared distance to the nearest centre chosen so far.
  """
  x = x.astype(jnp.float32)
  first_rng, rng = jax.random.split(rng)
  first = x[jax.random.randint(first_rng, (), 0, x.shape[0])]
  centres = jnp.zeros((n_components, x.shape[1]), x.dtype).at[0].set(first)
  nearest = jnp.sum((x - first) ** 2, axis=1)

  def add_centre(i, carry):
    centres, nearest = carry
    # log(0) = -inf for points that already are centres: they are never drawn again.
    idx = jax.random.categorical(jax.random.fold_in(rng, i), jnp.log(nearest))
    centres = centres.at[i].set(x[idx])
    return centres, jnp.minimum(nearest, jnp.sum((x - x[idx]) ** 2, axis=1))

  centres, _ = jax.lax.fori_loop(1, n_components, add_centre, (centres, nearest))
  return centres


def init_kmeans_plusplus(
  rng: jax.Array, x: jax.Array, n_components: int, covariance_type: str = "full", reg: float = 1e-6
) -> GaussianMixture:
  """The mixture of one M step on hard assignments to k-means++ centres (scikit-learn's
  `init_params="k-means++"`)."""
  _check_covariance_type(covariance_type)
  x = jnp.asarray(x, jnp.float32)
  _check_data(x, n_components)
  centres = kmeans_plusplus(rng, x, n_components)
  nearest = jnp.argmin(jnp.sum((x[:, None, :] - centres[None]) ** 2, axis=2), axis=1)
  return m_step(x, jax.nn.one_hot(nearest, n_components), covariance_type, reg)


def fit(
  x: jax.Array,
  mixture: GaussianMixture,
  *,
  max_iter: int = 100,
  tol: float = 1e-3,
  reg: float = 1e-6,
) -> tuple[GaussianMixture, list[float]]:
  """Runs EM from `mixture` until the mean log-likelihood improves by less than `tol`.

  Returns (the fitted mixture, the mean log-likelihood per example of the initial mixture and
  after every iteration: `max_iter + 1` values at most).
  """
  x = jnp.asarray(x, jnp.float32)
  _check_data(x)
  if x.shape[1] != mixture.means.shape[1]:
    raise ValueError(f"data have {x.shape[1]} dimensions, the mixture {mixture.means.shape[1]}")
  if max_iter < 1:
    raise ValueError(f"max_iter must be at least 1, got {max_iter}")
  history = []
  for _ in range(max_iter):
    new, log_likelihood = em_step(mixture, x, mixture.covariance_type, reg)
    history.append(float(log_likelihood))
    if not all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(new)):
      raise FloatingPointError(
        f"EM produced non-finite parameters after {len(history)} iterations; "
        f"raise the covariance floor reg (now {reg})"
      )
    mixture = new
    if len(history) > 1 and abs(history[-1] - history[-2]) < tol:
      break
  history.append(float(e_step(mixture, x)[1]))
  return mixture, history


def score_samples(mixture: GaussianMixture, x: jax.Array) -> jax.Array:
  """log p(x) per example: [n]."""
  return jax.nn.logsumexp(component_log_probs(mixture, jnp.asarray(x)), axis=1)


def sample(rng: jax.Array, mixture: GaussianMixture, n: int) -> tuple[jax.Array, jax.Array]:
  """n draws from the mixture: (samples [n, dim], their components [n])."""
  comp_rng, noise_rng = jax.random.split(rng)
  components = jax.random.categorical(comp_rng, jnp.log(mixture.weights), shape=(n,))
  z = jax.random.normal(noise_rng, (n, mixture.means.shape[1]))
  if mixture.covariance_type == "full":
    chol = jnp.linalg.cholesky(mixture.covariances)
    offsets = jnp.einsum("nde,ne->nd", chol[components], z)
  else:
    offsets = jnp.sqrt(mixture.covariances[components]) * z
  return mixture.means[components] + offsets, components
