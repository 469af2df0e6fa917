"""Face verification: are two faces the same person? Scores of pairs, ROC, AUC, TAR at a FAR.

A pair is accepted as "same person" when its score (a cosine similarity, or a negated
distance) is at least a threshold. The ROC sweeps every threshold; its points agree with
`sklearn.metrics.roc_curve(..., drop_intermediate=False)` and the AUC with `roc_auc_score`.

    scores = pair_scores(embeddings, first, second)
    fpr, tpr, thresholds = roc_curve(scores, same)
    auc(fpr, tpr), tar_at_far(fpr, tpr, 0.01)
    threshold, _ = best_threshold(train_scores, train_same)
    verification_accuracy(scores, same, threshold)
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def all_pairs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Every unordered pair (i < j) of `labels` [n]: (first [p], second [p], same person [p] bool)."""
  labels = np.asarray(labels)
  first, second = np.triu_indices(len(labels), k=1)
  return first, second, labels[first] == labels[second]


def pair_scores(
  embeddings: jnp.ndarray, first: np.ndarray, second: np.ndarray, metric: str = "cosine"
) -> np.ndarray:
  """Similarity of each pair (first[p], second[p]) of rows of `embeddings` [n, d]: [p] float64.

  metric: "cosine" (the embeddings' cosine) or "euclidean" (the negated Euclidean distance, so
  that higher always means more alike).
  """
  x = jnp.asarray(embeddings, jnp.float32)
  a, b = x[jnp.asarray(first)], x[jnp.asarray(second)]
  if metric == "cosine":
    norms = jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b, axis=-1)
    scores = jnp.sum(a * b, axis=-1) / jnp.maximum(norms, 1e-12)
  elif metric == "euclidean":
    scores = -jnp.linalg.norm(a - b, axis=-1)
  else:
    raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
  return np.asarray(scores, np.float64)


def _check(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  scores, same = np.asarray(scores, np.float64), np.asarray(same, bool)
  if scores.ndim != 1 or scores.shape != same.shape:
    raise ValueError(
      f"scores and same must be 1-D of one length, got {scores.shape} and {same.shape}"
    )
  if same.all() or not same.any():
    raise ValueError(
      f"need both same and different pairs; got {int(same.sum())} same of {len(same)}"
    )
  if not np.all(np.isfinite(scores)):
    raise ValueError("scores must be finite")
  return scores, same


def roc_curve(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The ROC of accepting pairs with score >= threshold, at every distinct score.

  Args:
    scores: [p] similarity of each pair.
    same: [p] bool, whether the pair is one person.
  Returns:
    (false accept rate [t], true accept rate [t], thresholds [t]), thresholds decreasing from
    +inf (nothing accepted: the point (0, 0)) to the lowest score (everything accepted: (1, 1)).
  """
  scores, same = _check(scores, same)
  order = np.argsort(-scores, kind="stable")
  scores, same = scores[order], same[order]
  # The last position of each run of equal scores: a threshold accepts all of a tie or none.
  ends = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
  true_accepts = np.cumsum(same)[ends]
  false_accepts = ends + 1 - true_accepts
  tpr = np.r_[0.0, true_accepts / true_accepts[-1]]
  fpr = np.r_[0.0, false_accepts / false_accepts[-1]]
  return fpr, tpr, np.r_[np.inf, scores[ends]]


def auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
  """The area under the ROC (trapezoids; ties count half, as the Mann-Whitney statistic)."""
  fpr, tpr = np.asarray(fpr, np.float64), np.asarray(tpr, np.float64)
  return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def tar_at_far(fpr: np.ndarray, tpr: np.ndarray, far: float) -> float:
  """The highest true accept rate at a threshold whose false accept rate is at most `far`."""
  if not 0.0 <= far <= 1.0:
    raise ValueError(f"far must be in [0, 1], got {far}")
  return float(np.max(np.asarray(tpr)[np.asarray(fpr) <= far + 1e-12]))


def best_threshold(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
  """The threshold that classifies the pairs most accurately, and that accuracy.

  Of equally accurate thresholds, the highest. Choose it on training pairs, then report
  `verification_accuracy` of the test pairs at it.
  """
  scores, same = _check(scores, same)
  fpr, tpr, thresholds = roc_curve(scores, same)
  positives = same.sum()
  accuracy = (tpr * positives + (1.0 - fpr) * (len(same) - positives)) / len(same)
  best = int(np.argmax(accuracy))
  return float(thresholds[best]), float(accuracy[best])


def verification_accuracy(scores: np.ndarray, same: np.ndarray, threshold: float) -> float:
  """The fraction of pairs classified right when accepting those with score >= `threshold`."""
  scores, same = np.asarray(scores, np.float64), np.asarray(same, bool)
  return float(np.mean((scores >= threshold) == same))


def verification_report(
  train_features: jnp.ndarray,
  train_labels: np.ndarray,
  test_features: jnp.ndarray,
  test_labels: np.ndarray,
  far: float = 0.01,
  metric: str = "cosine",
) -> dict:
  """Verification of all test pairs, with the threshold chosen on all training pairs.

  Args:
    train_features, test_features: [n, d] features of the training and the test images.
    train_labels, test_labels: [n] int, the person of each.
    far: the false accept rate at which to report the true accept rate.
    metric: how pairs are scored (`pair_scores`).
  Returns:
    {"auc", "tar_at_far", "accuracy" (test pairs, at the training threshold), "threshold",
     "train_accuracy", "test_best_accuracy" (at the test pairs' own best threshold, optimistic),
     "pairs", "same_pairs", "fpr", "tpr"} of the test pairs.
  """
  train_first, train_second, train_same = all_pairs(train_labels)
  threshold, train_accuracy = best_threshold(
    pair_scores(train_features, train_first, train_second, metric), train_same
  )
  first, second, same = all_pairs(test_labels)
  scores = pair_scores(test_features, first, second, metric)
  fpr, tpr, _ = roc_curve(scores, same)
  return {
    "auc": auc(fpr, tpr),
    "tar_at_far": tar_at_far(fpr, tpr, far),
    "accuracy": verification_accuracy(scores, same, threshold),
    "threshold": threshold,
    "train_accuracy": train_accuracy,
    "test_best_accuracy": best_threshold(scores, same)[1],
    "pairs": int(len(same)),
    "same_pairs": int(same.sum()),
    "fpr": fpr,
    "tpr": tpr,
  }
