"""Losses, per example: [batch, ...] -> [batch]. Reduce with the batch mask in the task."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from vision_jax.errors import ConfigError


def softmax_cross_entropy(
  logits: jnp.ndarray, labels: jnp.ndarray, label_smoothing: float = 0.0
) -> jnp.ndarray:
  """Cross-entropy of integer `labels` [b] under `logits` [b, classes], with label smoothing."""
  num_classes = logits.shape[-1]
  targets = (
    optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing)
    if label_smoothing
    else jax.nn.one_hot(labels, num_classes)
  )
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def softmax_mse(logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
  """Squared error between the softmax outputs and the one-hot labels, summed over classes."""
  probs = jax.nn.softmax(logits.astype(jnp.float32))
  return jnp.sum((probs - jax.nn.one_hot(labels, logits.shape[-1])) ** 2, axis=-1)


def focal_loss(
  logits: jnp.ndarray, labels: jnp.ndarray, gamma: float = 2.0, alpha: float | None = None
) -> jnp.ndarray:
  """Focal loss (Lin et al. 2017, eq. 5), softmax form: -alpha (1 - p_t)^gamma log p_t.

  gamma = 0 and alpha = None is the cross-entropy.
  """
  log_p = jax.nn.log_softmax(logits.astype(jnp.float32))
  log_pt = jnp.take_along_axis(log_p, labels[:, None], axis=-1)[:, 0]
  loss = -((1.0 - jnp.exp(log_pt)) ** gamma) * log_pt
  return loss * alpha if alpha is not None else loss


def mse(predictions: jnp.ndarray, targets: jnp.ndarray) -> jnp.ndarray:
  """Mean squared error per example, averaged over all but the batch axis."""
  diff = (predictions.astype(jnp.float32) - targets.astype(jnp.float32)) ** 2
  return diff.reshape(diff.shape[0], -1).mean(axis=-1)


CLASSIFICATION_LOSSES = ("cross_entropy", "mse", "focal")


def classification_loss(
  name: str,
  logits: jnp.ndarray,
  labels: jnp.ndarray,
  *,
  label_smoothing: float = 0.0,
  focal_gamma: float = 2.0,
) -> jnp.ndarray:
  """The classification loss named `name`, per example."""
  if name == "cross_entropy":
    return softmax_cross_entropy(logits, labels, label_smoothing)
  if name == "mse":
    return softmax_mse(logits, labels)
  if name == "focal":
    return focal_loss(logits, labels, focal_gamma)
  raise ConfigError(f"unknown loss {name!r}; valid: {', '.join(CLASSIFICATION_LOSSES)}")
