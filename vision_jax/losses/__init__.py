"""Losses: the classification losses (`classification`: cross-entropy, MSE, focal), re-exported
here as `losses.<name>`, the embedding losses of face recognition (`metric_learning`), and
YOLOv1's target encoding, loss and decoding (`yolo`)."""

from vision_jax.losses.classification import (
  CLASSIFICATION_LOSSES,
  classification_loss,
  focal_loss,
  mse,
  softmax_cross_entropy,
  softmax_mse,
)

__all__ = [
  "CLASSIFICATION_LOSSES",
  "classification_loss",
  "focal_loss",
  "mse",
  "softmax_cross_entropy",
  "softmax_mse",
]
