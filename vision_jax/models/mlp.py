"""A multilayer perceptron on flattened pixels: the lecture's baseline against convolution."""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from vision_jax.models.registry import register


@register("mlp")
class MLP(nn.Module):
  """Flattens the image and applies fully connected layers.

  Attributes:
    hidden: widths of the hidden layers.
    num_classes: width of the output layer.
    dropout: dropout rate after each hidden layer (0 disables it).
    dtype: the computation dtype (e.g. jnp.bfloat16); parameters are kept in float32.
  """

  hidden: Sequence[int] = (300, 100)
  num_classes: int = 10
  dropout: float = 0.0
  dtype: Any = jnp.float32  # compute dtype; parameters stay float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool = False):
    """x: [batch, height, width, channels] float. Returns (logits [batch, classes], features)."""
    out = {}
    x = x.reshape((x.shape[0], -1))
    for i, width in enumerate(self.hidden):
      x = nn.relu(nn.Dense(width, dtype=self.dtype, name=f"fc{i + 1}")(x))
      out[f"fc{i + 1}"] = x
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    out["pre_logits"] = x
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)
    return logits, out
