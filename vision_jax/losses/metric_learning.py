"""Losses that shape an embedding space: one person's faces close, different people's far apart.

Each takes a batch of embeddings [batch, dim] and integer labels [batch] (the person), and
returns a scalar: the mean over the pairs, anchors or examples that the loss is defined on.
They see only the people in the batch, so a batch should hold several images of a person.

- `contrastive_loss`: Hadsell, Chopra & LeCun 2006, over every pair in the batch.
- `batch_hard_triplet_loss`: Hermans, Beyer & Leibe 2017 ("In defense of the triplet loss"):
  for each anchor, its hardest positive and hardest negative in the batch (`batch_hard_mining`).
- `arcface_loss`: Deng et al. 2019, the additive angular margin: cross-entropy over
  s cos(theta_y + m) for the true class and s cos(theta_j) for the others.
Softmax cross-entropy is `vision_jax.losses.softmax_cross_entropy`; `l2_normalize` is a layer
(`vision_jax.models.layers`), since a face model normalises its embedding with it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def pairwise_distances(embeddings: jnp.ndarray) -> jnp.ndarray:
  """Euclidean distances between all rows: [b, d] -> [b, b], with a gradient-safe zero diagonal."""
  x = embeddings.astype(jnp.float32)
  sq = jnp.sum(x * x, axis=-1)
  d2 = jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)
  # sqrt has an infinite gradient at 0: take it only where the distance is positive.
  positive = d2 > 1e-12
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, d2, 1.0)), 0.0)


def _pair_masks(labels: jnp.ndarray, mask: jnp.ndarray | None) -> tuple[jnp.ndarray, jnp.ndarray]:
  """(same person, different person) masks [b, b] over distinct valid pairs."""
  valid = jnp.ones(labels.shape, bool) if mask is None else mask.astype(bool)
  both = valid[:, None] & valid[None, :] & ~jnp.eye(labels.shape[0], dtype=bool)
  same = labels[:, None] == labels[None, :]
  return same & both, ~same & both


def contrastive_loss(
  embeddings: jnp.ndarray, labels: jnp.ndarray, margin: float = 1.0, mask: jnp.ndarray | None = None
) -> jnp.ndarray:
  """Hadsell et al. 2006 over all pairs: d^2 for same-person pairs, max(0, margin - d)^2 otherwise.

  The two kinds of pairs are averaged separately and then summed, so that the many different
  pairs of a batch do not drown the few same pairs.

  Args:
    embeddings: [b, d] float.
    labels: [b] int, the person.
    margin: the distance beyond which different people cost nothing.
    mask: [b] bool, real examples (None: all).
  Returns:
    a scalar: 0 when every same pair coincides and every different pair is `margin` or more apart.
  """
  d = pairwise_distances(embeddings)
  same, different = _pair_masks(labels, mask)
  pos = jnp.sum(jnp.where(same, d**2, 0.0)) / jnp.maximum(jnp.sum(same), 1)
  neg = jnp.sum(jnp.where(different, jax.nn.relu(margin - d) ** 2, 0.0)) / jnp.maximum(
    jnp.sum(different), 1
  )
  return pos + neg


def batch_hard_mining(
  distances: jnp.ndarray, labels: jnp.ndarray, mask: jnp.ndarray | None = None
) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
  """For each anchor, the farthest same-person and the nearest other-person example of the batch.

  Args:
    distances: [b, b] pairwise distances.
    labels: [b] int.
    mask: [b] bool, real examples (None: all).
  Returns:
    (hardest positive [b] int, hardest negative [b] int, valid [b] bool): an anchor is valid when
    it is real and has at least one positive and one negative in the batch.
  """
  same, different = _pair_masks(labels, mask)
  hardest_positive = jnp.argmax(jnp.where(same, distances, -jnp.inf), axis=1)
  hardest_negative = jnp.argmin(jnp.where(different, distances, jnp.inf), axis=1)
  valid = jnp.any(same, axis=1) & jnp.any(different, axis=1)
  return hardest_positive, hardest_negative, valid


def batch_hard_triplet_loss(
  embeddings: jnp.ndarray, labels: jnp.ndarray, margin: float = 0.2, mask: jnp.ndarray | None = None
) -> jnp.ndarray:
  """Hermans et al. 2017: mean over anchors of max(0, d(a, hardest p) - d(a, hardest n) + margin).

  Args:
    embeddings: [b, d] float (L2-normalised, as FaceNet's, so that `margin` has a fixed scale).
    labels: [b] int.
    margin: the gap by which each anchor's negatives must be farther than its positives.
    mask: [b] bool, real examples (None: all).
  Returns:
    a scalar, the mean over anchors with a positive and a negative in the batch (0 if none).
  """
  d = pairwise_distances(embeddings)
  pos, neg, valid = batch_hard_mining(d, labels, mask)
  rows = jnp.arange(labels.shape[0])
  per_anchor = jax.nn.relu(d[rows, pos] - d[rows, neg] + margin)
  return jnp.sum(jnp.where(valid, per_anchor, 0.0)) / jnp.maximum(jnp.sum(valid), 1)


def arcface_logits(
  cosines: jnp.ndarray, labels: jnp.ndarray, scale: float = 30.0, margin: float = 0.5
) -> jnp.ndarray:
  """s cos(theta_y + m) for the true class, s cos(theta_j) for the others (Deng et al. 2019, eq. 3).

  Where theta_y + m would pass pi (cos(theta_y + m) would rise again), the paper's
  implementation uses cos(theta_y) - m sin(m) instead, keeping the target logit decreasing.

  Args:
    cosines: [b, classes], cosines between the normalised embeddings and class centres.
    labels: [b] int.
  Returns:
    logits [b, classes].
  """
  cos = jnp.clip(cosines.astype(jnp.float32), -1.0 + 1e-7, 1.0 - 1e-7)
  sin = jnp.sqrt(1.0 - cos**2)
  with_margin = cos * jnp.cos(margin) - sin * jnp.sin(margin)
  with_margin = jnp.where(
    cos > jnp.cos(jnp.pi - margin), with_margin, cos - jnp.sin(jnp.pi - margin) * margin
  )
  target = jax.nn.one_hot(labels, cos.shape[-1], dtype=bool)
  return scale * jnp.where(target, with_margin, cos)


def arcface_loss(
  cosines: jnp.ndarray,
  labels: jnp.ndarray,
  scale: float = 30.0,
  margin: float = 0.5,
  mask: jnp.ndarray | None = None,
) -> jnp.ndarray:
  """The additive angular margin loss: mean cross-entropy of `arcface_logits` [b, classes]."""
  logits = arcface_logits(cosines, labels, scale, margin)
  per_example = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  if mask is None:
    return jnp.mean(per_example)
  mask = mask.astype(jnp.float32)
  return jnp.sum(per_example * mask) / jnp.maximum(jnp.sum(mask), 1.0)


EMBEDDING_LOSSES = ("cross_entropy", "contrastive", "triplet", "arcface")
