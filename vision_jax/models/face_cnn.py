"""A small CNN that maps a face to a unit-length embedding, sized for ORL on a CPU.

    [avg pool input_pool] - conv5x5/2 16 - pool - conv3x3 32 - pool - conv3x3 64 - pool - conv3x3 128 - global avg pool
    - dense `embedding_dim` - L2 normalise

Each convolution is followed by BatchNorm and ReLU. A 112x92 ORL face costs about 16 MFLOPs at
full resolution, and a quarter of that with `input_pool=2` (56x46, the default: on a CPU).
The output is the normalised embedding; the intermediates hold each stage and, under
"pre_logits", the embedding before normalisation (what a softmax classifier head reads).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from vision_jax.errors import ConfigError
from vision_jax.models.layers import Conv, l2_normalize
from vision_jax.models.registry import register


@register("face_cnn")
class FaceCNN(nn.Module):
  """Attributes:
  num_classes: unused (the embedding has no class head; the task adds one where its loss needs it).
  embedding_dim: the size of the embedding.
  input_pool: average-pools the input by this factor first (1 = full resolution).
  widths: channels of the four convolution stages.
  dtype: the computation dtype; parameters stay float32.
  """

  num_classes: int = 0
  embedding_dim: int = 128
  input_pool: int = 2
  widths: tuple[int, ...] = (16, 32, 64, 128)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool = False):
    """x: [batch, height, width, channels] float. Returns (embedding [batch, embedding_dim], features)."""
    if x.ndim != 4 or min(x.shape[1:3]) < 16 * self.input_pool:
      raise ConfigError(
        f"face_cnn expects images of [batch, height, width >= {16 * self.input_pool}, channels], got {x.shape}"
      )
    if len(self.widths) != 4:
      raise ConfigError(f"face_cnn has four stages: widths must have 4 entries, got {self.widths}")
    norm = lambda name: nn.BatchNorm(
      use_running_average=not train, momentum=0.9, dtype=self.dtype, name=name
    )
    out = {}
    if self.input_pool > 1:
      x = nn.avg_pool(
        x,
        (self.input_pool, self.input_pool),
        strides=(self.input_pool, self.input_pool),
        padding="SAME",
      )
    for i, width in enumerate(self.widths):
      kernel, stride = ((5, 5), (2, 2)) if i == 0 else ((3, 3), (1, 1))
      x = Conv(
        width,
        kernel,
        strides=stride,
        padding="SAME",
        use_bias=False,
        dtype=self.dtype,
        name=f"conv{i + 1}",
      )(x)
      x = nn.relu(norm(f"bn{i + 1}")(x))
      if i < len(self.widths) - 1:
        x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
      out[f"stage{i + 1}"] = x
    x = jnp.mean(x, axis=(1, 2))
    embedding = nn.Dense(self.embedding_dim, dtype=self.dtype, name="embedding")(x)
    out["pre_logits"] = embedding
    return l2_normalize(embedding), out
