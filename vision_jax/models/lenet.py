"""LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998, "Gradient-based learning applied to document
recognition", Fig. 2): C1 - S2 - C3 - S4 - C5 - F6 - output, on 32x32 inputs.

C3's partial connection (the paper's Table I) keeps only the connected weights as parameters, so
the parameter count is the paper's own: each of C3's 16 maps sees only 3, 4 or all 6 of S2's maps.
S2 and S4 are either the paper's trainable subsampling (average times a learned coefficient plus
a bias, per map), or plain max or average pooling. The paper's RBF output layer is replaced by a
dense layer, as every modern re-implementation does.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.errors import ConfigError
from vision_jax.models.layers import Conv
from vision_jax.models.pooling import max_pool
from vision_jax.models.registry import register

# Table I of the paper: for each C3 map, the S2 maps it is connected to.
C3_TABLE = (
  (0, 1, 2),
  (1, 2, 3),
  (2, 3, 4),
  (3, 4, 5),
  (4, 5, 0),
  (5, 0, 1),
  (0, 1, 2, 3),
  (1, 2, 3, 4),
  (2, 3, 4, 5),
  (3, 4, 5, 0),
  (4, 5, 0, 1),
  (5, 0, 1, 2),
  (0, 1, 3, 4),
  (1, 2, 4, 5),
  (0, 2, 3, 5),
  (0, 1, 2, 3, 4, 5),
)


def scaled_tanh(x: jnp.ndarray) -> jnp.ndarray:
  """The paper's squashing function f(a) = A tanh(S a), A = 1.7159, S = 2/3 (Appendix A)."""
  return 1.7159 * jnp.tanh(2.0 / 3.0 * x)


_ACTIVATIONS = {"relu": nn.relu, "tanh": jnp.tanh, "scaled_tanh": scaled_tanh}


class PartialConv(nn.Module):
  """A 'valid' convolution where output map j sees only the input maps in `table[j]`.

  Only the connected weights exist as parameters: `kernel` is [k, k, connections], one slice
  per (input map, output map) pair of the table. They are scattered into a dense kernel with
  zeros elsewhere, and one ordinary convolution applies it (grouped convolutions are far slower
  on CPU).
  """

  table: tuple[tuple[int, ...], ...]
  kernel_size: int = 5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    in_maps = np.array([i for inputs in self.table for i in inputs])
    out_maps = np.array([j for j, inputs in enumerate(self.table) for _ in inputs])
    k, c_in, c_out = self.kernel_size, x.shape[-1], len(self.table)
    # LeCun's uniform fan-in initialisation, with the true fan-in of each output map.
    fan_in = np.array([len(self.table[j]) for j in out_maps]) * k * k
    init = lambda rng, shape: (
      jax.random.uniform(rng, shape, minval=-1.0, maxval=1.0) * np.sqrt(3.0 / fan_in)
    ).astype(jnp.float32)
    packed = self.param("kernel", init, (k, k, len(in_maps)))
    bias = self.param("bias", nn.initializers.zeros, (c_out,))
    kernel = jnp.zeros((k, k, c_in, c_out), packed.dtype).at[:, :, in_maps, out_maps].set(packed)
    y = jax.lax.conv_general_dilated(
      x.astype(self.dtype),
      kernel.astype(self.dtype),
      (1, 1),
      "VALID",
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    return y + bias.astype(self.dtype)

  def multiplications(self, input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> int:
    """Per output value, its connected weights and a bias (the paper's 151,600 "connections" for C3).

    The summary cannot see this from the packed kernel's shape (`vision_jax.summary`).
    `output_shape`: [height, width, maps], without the batch.
    """
    del input_shape
    out_h, out_w, out_maps = output_shape
    connections = sum(len(inputs) for inputs in self.table)
    return out_h * out_w * (connections * self.kernel_size**2 + out_maps)


class Subsampling(nn.Module):
  """The paper's S-layer: 2x2 average, times a trainable coefficient, plus a trainable bias."""

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    c = x.shape[-1]
    coeff = self.param("coeff", nn.initializers.ones, (c,))
    bias = self.param("bias", nn.initializers.zeros, (c,))
    return nn.avg_pool(x, (2, 2), strides=(2, 2)) * coeff + bias

  def multiplications(self, input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> int:
    """Per output value, its 4 inputs and a bias: the paper's 5,880 "connections" for S2."""
    del input_shape
    return int(np.prod(output_shape)) * (4 + 1)


@register("lenet5")
class LeNet5(nn.Module):
  """LeNet-5.

  Attributes:
    num_classes: outputs of the last layer.
    pooling: "max", "avg" or "subsample" (the paper's trainable subsampling).
    activation: "relu", "tanh" or "scaled_tanh" (the paper's).
    partial_c3: connect C3 by the paper's Table I (True) or fully (False).
    dropout: dropout rate before the output layer (0 disables it).
    dtype: the computation dtype (e.g. jnp.bfloat16); parameters are kept in float32.
  """

  num_classes: int = 10
  pooling: str = "max"
  activation: str = "relu"
  partial_c3: bool = True
  dropout: float = 0.0
  dtype: Any = jnp.float32  # compute dtype; parameters stay float32

  def _pool(self, x: jnp.ndarray, name: str) -> jnp.ndarray:
    if self.pooling == "max":
      return max_pool(x, 2, 2)
    if self.pooling == "avg":
      return nn.avg_pool(x, (2, 2), strides=(2, 2))
    if self.pooling == "subsample":
      return Subsampling(name=name)(x)
    raise ConfigError(f"pooling must be 'max', 'avg' or 'subsample', got {self.pooling!r}")

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool = False):
    """x: [batch, 32, 32, channels] float. Returns (logits [batch, classes], features)."""
    if x.ndim != 4 or x.shape[1:3] != (32, 32):
      raise ConfigError(f"LeNet-5 expects images of [batch, 32, 32, channels], got {x.shape}")
    if self.activation not in _ACTIVATIONS:
      raise ConfigError(
        f"activation must be one of {sorted(_ACTIVATIONS)}, got {self.activation!r}"
      )
    act = _ACTIVATIONS[self.activation]
    out = {}
    x = act(Conv(6, (5, 5), padding="VALID", dtype=self.dtype, name="C1")(x))  # 28x28x6
    out["C1"] = x
    x = self._pool(x, "S2")  # 14x14x6
    out["S2"] = x
    if self.partial_c3:
      x = PartialConv(C3_TABLE, dtype=self.dtype, name="C3")(x)  # 10x10x16
    else:
      x = Conv(16, (5, 5), padding="VALID", dtype=self.dtype, name="C3")(x)
    x = act(x)
    out["C3"] = x
    x = self._pool(x, "S4")  # 5x5x16
    out["S4"] = x
    x = act(Conv(120, (5, 5), padding="VALID", dtype=self.dtype, name="C5")(x))  # 1x1x120
    x = x.reshape((x.shape[0], -1))
    out["C5"] = x
    x = act(nn.Dense(84, dtype=self.dtype, name="F6")(x))
    out["F6"] = x
    out["pre_logits"] = x
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)
    return logits, out
