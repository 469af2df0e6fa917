"""AlexNet (Krizhevsky, Sutskever & Hinton 2012, "ImageNet classification with deep
convolutional neural networks"), in torchvision's single-tower form.

torchvision follows Krizhevsky's "One weird trick" (2014) variant: one tower instead of the
paper's two GPUs' halves, 64/192/384/256/256 filters, no local response normalisation, and an
adaptive average pool to 6x6 before the classifier so that any input of at least 63x63 works.
The layout (and so the parameter count, 61,100,840) is torchvision's, so its weights import
with `scripts.import_torchvision alexnet`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from vision_jax.errors import ConfigError
from vision_jax.models.layers import Conv
from vision_jax.models.pooling import adaptive_avg_pool, max_pool
from vision_jax.models.registry import register

# (features, kernel, stride, padding, max pool after) of the five convolutions.
_CONVS = (
  (64, 11, 4, 2, True),
  (192, 5, 1, 2, True),
  (384, 3, 1, 1, False),
  (256, 3, 1, 1, False),
  (256, 3, 1, 1, True),
)


@register("alexnet")
class AlexNet(nn.Module):
  """AlexNet as torchvision builds it.

  Attributes:
    num_classes: outputs of the last layer.
    dropout: dropout rate before each of the two hidden fully connected layers.
    dtype: computation dtype (parameters stay float32).
  """

  num_classes: int = 1000
  dropout: float = 0.5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool = False):
    """x: [batch, height, width, 3] float, height and width >= 63.

    Returns:
      logits [batch, num_classes] and features: "conv1".."conv5" (after ReLU, before pooling),
      "pool" [batch, 6, 6, 256] and "fc1", "fc2"; "pre_logits" is "fc2", the head's input.
    """
    if min(x.shape[1:3]) < 63:
      raise ConfigError(f"AlexNet needs images of at least 63x63, got {x.shape}")
    out = {}
    x = jnp.asarray(x, self.dtype)
    for i, (features, kernel, stride, padding, pool) in enumerate(_CONVS):
      x = Conv(
        features,
        (kernel, kernel),
        strides=stride,
        padding=[(padding, padding)] * 2,
        dtype=self.dtype,
        name=f"conv{i + 1}",
      )(x)
      x = nn.relu(x)
      out[f"conv{i + 1}"] = x
      if pool:
        x = max_pool(x, 3, 2)
    x = adaptive_avg_pool(x, (6, 6))
    out["pool"] = x
    # Flattened in NHWC order; the importer permutes torch's NCHW-ordered fc1 weights to match.
    x = x.reshape((x.shape[0], -1))
    for i in (1, 2):
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
      x = nn.relu(nn.Dense(4096, dtype=self.dtype, name=f"fc{i}")(x))
      out[f"fc{i}"] = x
    out["pre_logits"] = x
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)
    return logits, out
