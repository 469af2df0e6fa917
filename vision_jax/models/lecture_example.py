"""The lecture's worked example of counting a convolutional network's size.

A 256x256x3 image through 64 filters of 3x3 with stride 2 and zero padding gives 128x128x64,
at 128·128·64 outputs times 28 multiplications each (3·3·3 weights and a bias); then 128
filters of 5x5 with stride 2 give 64x64x128 at 64·64·128·1601 multiplications. A layer of k'
filters of h x h over k channels has k'(k·h² + 1) parameters.

    python -m vision_jax.summary lecture_convnet --input-shape 256,256,3

The two convolutions are the example; a global average pool and a dense layer make it a
classifier like every registered model.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from vision_jax.models.layers import Conv
from vision_jax.models.registry import register


@register("lecture_convnet")
class LectureConvNet(nn.Module):
  """Conv 3x3/2 (64) - ReLU - Conv 5x5/2 (128) - ReLU - global average pool - dense.

  Attributes:
    num_classes: outputs of the last layer.
    dtype: the computation dtype (e.g. jnp.bfloat16); parameters are kept in float32.
  """

  num_classes: int = 10
  dtype: Any = jnp.float32  # compute dtype; parameters stay float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool = False):
    """x: [batch, height, width, channels] float. Returns (logits [batch, classes], features)."""
    del train  # no dropout or normalisation
    if x.ndim != 4:
      raise ValueError(
        f"lecture_convnet expects images of [batch, height, width, channels], got {x.shape}"
      )
    out = {}
    x = nn.relu(Conv(64, (3, 3), strides=2, padding="SAME", dtype=self.dtype, name="conv1")(x))
    out["conv1"] = x  # [batch, h/2, w/2, 64]
    x = nn.relu(Conv(128, (5, 5), strides=2, padding="SAME", dtype=self.dtype, name="conv2")(x))
    out["conv2"] = x  # [batch, h/4, w/4, 128]
    x = jnp.mean(x, axis=(1, 2))
    out["pre_logits"] = x
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)
    return logits, out
