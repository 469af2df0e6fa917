"""Log-likelihoods of latent-variable models: the ELBO's terms and the importance-weighted bound.

The ELBO of a VAE (Kingma & Welling 2013, eq. 10) with q(z|x) = N(mean, diag(exp(logvar))) and
p(z) = N(0, I) is E_q[log p(x|z)] - KL(q(z|x) || p(z)), the KL term in closed form
(`gaussian_kl`). The importance-weighted bound (Burda, Grosse & Salakhutdinov 2015, eq. 8)

    L_k(x) = E[log (1/k) sum_i p(x, z_i) / q(z_i|x)],   z_1..z_k ~ q(z|x)

equals the ELBO at k = 1, does not decrease as k grows, and tends to log p(x); with k = 5000 it
is the paper's estimate of the test log-likelihood. `importance_weighted_bound` evaluates it in
chunks of samples with a running log-sum-exp, so memory is that of one chunk whatever k is.
All log-densities are in nats, summed over the dimensions of one example: [batch, ...] -> [batch].
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

LOG_2PI = math.log(2.0 * math.pi)


def _sum_per_example(values: jnp.ndarray) -> jnp.ndarray:
  return values.reshape(values.shape[0], -1).sum(axis=-1)


def bernoulli_log_likelihood(logits: jnp.ndarray, targets: jnp.ndarray) -> jnp.ndarray:
  """log p(targets | logits) of independent Bernoulli pixels: [batch, ...] -> [batch].

  Targets may be probabilities in [0, 1] (then it is the negative binary cross-entropy).
  """
  logits, targets = logits.astype(jnp.float32), targets.astype(jnp.float32)
  # log sigmoid(l) * t + log sigmoid(-l) * (1 - t), written to stay finite for large |l|.
  return _sum_per_example(targets * logits - jax.nn.softplus(logits))


def gaussian_log_likelihood(means: jnp.ndarray, targets: jnp.ndarray, std: float) -> jnp.ndarray:
  """log N(targets; means, std^2 I): [batch, ...] -> [batch]."""
  if std <= 0:
    raise ValueError(f"the Gaussian decoder's std must be positive, got {std}")
  sq = ((targets.astype(jnp.float32) - means.astype(jnp.float32)) / std) ** 2
  return _sum_per_example(-0.5 * (sq + LOG_2PI) - math.log(std))


def gaussian_kl(mean: jnp.ndarray, logvar: jnp.ndarray) -> jnp.ndarray:
  """KL(N(mean, diag(exp(logvar))) || N(0, I)) in closed form: [batch, latent] -> [batch]."""
  mean, logvar = mean.astype(jnp.float32), logvar.astype(jnp.float32)
  return 0.5 * jnp.sum(jnp.exp(logvar) + mean**2 - 1.0 - logvar, axis=-1)


def diagonal_gaussian_log_density(
  z: jnp.ndarray, mean: jnp.ndarray, logvar: jnp.ndarray
) -> jnp.ndarray:
  """log N(z; mean, diag(exp(logvar))), summed over the last axis: [..., latent] -> [...]."""
  return -0.5 * jnp.sum(LOG_2PI + logvar + (z - mean) ** 2 * jnp.exp(-logvar), axis=-1)


def standard_normal_log_density(z: jnp.ndarray) -> jnp.ndarray:
  """log N(z; 0, I), summed over the last axis: [..., latent] -> [...]."""
  return -0.5 * jnp.sum(LOG_2PI + z**2, axis=-1)


def reparameterize(
  rng: jax.Array, mean: jnp.ndarray, logvar: jnp.ndarray, num_samples: int | None = None
) -> jnp.ndarray:
  """z = mean + exp(logvar / 2) * eps, eps ~ N(0, I): differentiable in (mean, logvar).

  mean, logvar: [batch, latent]. Returns [batch, latent], or [num_samples, batch, latent].
  """
  shape = mean.shape if num_samples is None else (num_samples, *mean.shape)
  eps = jax.random.normal(rng, shape, jnp.float32)
  return mean + jnp.exp(0.5 * logvar) * eps


def importance_weighted_bound(
  log_weights_fn: Callable[[jax.Array, int], jnp.ndarray],
  rng: jax.Array,
  num_samples: int,
  chunk_size: int = 100,
) -> jnp.ndarray:
  """The importance-weighted bound L_k = log (1/k) sum_i w_i, for each example: [batch].

  Args:
    log_weights_fn: (rng, n) -> log w = log p(x, z) - log q(z|x) of n fresh samples z ~ q(z|x),
      [n, batch]. Called once per chunk with the chunk's own rng (`fold_in(rng, chunk)`), so the
      samples of a chunk do not depend on k or on the other chunks.
    rng: the samples' rng.
    num_samples: k >= 1.
    chunk_size: samples drawn per call; memory is that of one chunk. The last chunk's samples
      beyond k are drawn and discarded, so for a given (rng, chunk_size) the samples of a smaller k
      are the first k samples of a larger one.

  Jit-compatible: the chunks run in a `lax.fori_loop` with a running log-sum-exp.
  """
  if not isinstance(num_samples, int) or num_samples < 1:
    raise ValueError(
      f"the number of importance samples k must be an integer >= 1, got {num_samples!r}"
    )
  if chunk_size < 1:
    raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
  num_chunks = -(-num_samples // chunk_size)

  def chunk_logsumexp(i):
    log_w = log_weights_fn(jax.random.fold_in(rng, i), chunk_size).astype(jnp.float32)
    valid = (i * chunk_size + jnp.arange(chunk_size)) < num_samples
    return jax.nn.logsumexp(jnp.where(valid[:, None], log_w, -jnp.inf), axis=0)

  first = chunk_logsumexp(0)
  total = jax.lax.fori_loop(
    1, num_chunks, lambda i, acc: jnp.logaddexp(acc, chunk_logsumexp(i)), first
  )
  return total - math.log(num_samples)
