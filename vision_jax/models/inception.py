"""Inception-v3 (Szegedy et al. 2016, "Rethinking the Inception architecture for computer vision"),
as torchvision builds it, and the variant whose weights define the standard FID.

Layer names and shapes are torchvision's `Inception3` (Conv2d_1a_3x3 ... Mixed_7c; its `fc` is
our "head", as in every registered classifier), so that its state_dict imports
(`scripts.import_torchvision inception_v3`); every convolution is bias-free and followed by
BatchNorm with epsilon 1e-3. The auxiliary classifier, used only to
train it, is not built: this model is for inference, features and fine-tuning from
"pre_logits", and the importer skips torchvision's `AuxLogits.*` weights.

`inception_v3_fid` is the network of the Fréchet Inception Distance (Heusel et al. 2017): the
TensorFlow Inception graph of 2015-12-05, as ported to PyTorch by pytorch-fid
(`pt_inception-2015-12-05-*.pth`, whose names are torchvision's). It differs from torchvision's
in four places, all in pooling, plus its 1008 classes: the average pools of Mixed_5b-5d,
Mixed_6b-6e and Mixed_7b leave the padding out of the average (torch's count_include_pad=False),
and Mixed_7c's pool branch takes a max instead of an average. FID compares the 2048-d
"pre_logits" of images resized to 299x299 (bilinear) and scaled to [-1, 1]
(`vision_jax.metrics.feature_classifier`).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from vision_jax.errors import ConfigError
from vision_jax.models.layers import Conv, torchvision_transform_input
from vision_jax.models.pooling import max_pool
from vision_jax.models.registry import register

# torchvision initialises convolutions and the classifier with a normal of standard deviation
# 0.1 truncated at two standard deviations.
_init = nn.initializers.truncated_normal(0.1)


class BasicConv2d(nn.Module):
  """Convolution (no bias), BatchNorm (epsilon 1e-3), ReLU; kernels may be 1x7, 7x1, 1x3, 3x1."""

  features: int
  kernel: tuple[int, int]
  stride: int = 1
  padding: tuple[int, int] = (0, 0)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    ph, pw = self.padding
    x = Conv(
      self.features,
      self.kernel,
      strides=self.stride,
      padding=[(ph, ph), (pw, pw)],
      use_bias=False,
      kernel_init=_init,
      dtype=self.dtype,
      name="conv",
    )(x)
    x = nn.BatchNorm(
      use_running_average=not train, momentum=0.9, epsilon=1e-3, dtype=self.dtype, name="bn"
    )(x)
    return nn.relu(x)


def _avg_pool_3x3(x: jnp.ndarray, count_include_pad: bool) -> jnp.ndarray:
  """torch's avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=...) for NHWC inputs."""
  return nn.avg_pool(
    x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=count_include_pad
  )


class _Block(nn.Module):
  """An Inception block (or the network): `conv(features, kernel, name, stride, padding)` builds
  its layers."""

  dtype: Any = jnp.float32

  def conv(self, features: int, kernel, name: str, stride: int = 1, padding=(0, 0)) -> BasicConv2d:
    kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
    padding = (padding, padding) if isinstance(padding, int) else padding
    return BasicConv2d(features, kernel, stride, padding, dtype=self.dtype, name=name)


class InceptionA(_Block):
  """Mixed_5b-5d (35x35): 1x1; 1x1-5x5; 1x1-3x3-3x3; 3x3 average pool-1x1."""

  pool_features: int = 32
  fid: bool = False

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    b1 = self.conv(64, 1, "branch1x1")(x, train=train)
    b5 = self.conv(48, 1, "branch5x5_1")(x, train=train)
    b5 = self.conv(64, 5, "branch5x5_2", padding=2)(b5, train=train)
    b3 = self.conv(64, 1, "branch3x3dbl_1")(x, train=train)
    b3 = self.conv(96, 3, "branch3x3dbl_2", padding=1)(b3, train=train)
    b3 = self.conv(96, 3, "branch3x3dbl_3", padding=1)(b3, train=train)
    bp = self.conv(self.pool_features, 1, "branch_pool")(
      _avg_pool_3x3(x, not self.fid), train=train
    )
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(_Block):
  """Mixed_6a (35x35 -> 17x17): 3x3 stride 2; 1x1-3x3-3x3 stride 2; 3x3 max pool stride 2."""

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    b3 = self.conv(384, 3, "branch3x3", stride=2)(x, train=train)
    bd = self.conv(64, 1, "branch3x3dbl_1")(x, train=train)
    bd = self.conv(96, 3, "branch3x3dbl_2", padding=1)(bd, train=train)
    bd = self.conv(96, 3, "branch3x3dbl_3", stride=2)(bd, train=train)
    return jnp.concatenate([b3, bd, max_pool(x, 3, 2)], axis=-1)


class InceptionC(_Block):
  """Mixed_6b-6e (17x17), with 7x7 convolutions factorised into 1x7 and 7x1."""

  channels_7x7: int = 128
  fid: bool = False

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    c7 = self.channels_7x7
    b1 = self.conv(192, 1, "branch1x1")(x, train=train)
    b7 = self.conv(c7, 1, "branch7x7_1")(x, train=train)
    b7 = self.conv(c7, (1, 7), "branch7x7_2", padding=(0, 3))(b7, train=train)
    b7 = self.conv(192, (7, 1), "branch7x7_3", padding=(3, 0))(b7, train=train)
    bd = self.conv(c7, 1, "branch7x7dbl_1")(x, train=train)
    bd = self.conv(c7, (7, 1), "branch7x7dbl_2", padding=(3, 0))(bd, train=train)
    bd = self.conv(c7, (1, 7), "branch7x7dbl_3", padding=(0, 3))(bd, train=train)
    bd = self.conv(c7, (7, 1), "branch7x7dbl_4", padding=(3, 0))(bd, train=train)
    bd = self.conv(192, (1, 7), "branch7x7dbl_5", padding=(0, 3))(bd, train=train)
    bp = self.conv(192, 1, "branch_pool")(_avg_pool_3x3(x, not self.fid), train=train)
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(_Block):
  """Mixed_7a (17x17 -> 8x8): 1x1-3x3 stride 2; 1x1-1x7-7x1-3x3 stride 2; 3x3 max pool stride 2."""

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    b3 = self.conv(192, 1, "branch3x3_1")(x, train=train)
    b3 = self.conv(320, 3, "branch3x3_2", stride=2)(b3, train=train)
    b7 = self.conv(192, 1, "branch7x7x3_1")(x, train=train)
    b7 = self.conv(192, (1, 7), "branch7x7x3_2", padding=(0, 3))(b7, train=train)
    b7 = self.conv(192, (7, 1), "branch7x7x3_3", padding=(3, 0))(b7, train=train)
    b7 = self.conv(192, 3, "branch7x7x3_4", stride=2)(b7, train=train)
    return jnp.concatenate([b3, b7, max_pool(x, 3, 2)], axis=-1)


class InceptionE(_Block):
  """Mixed_7b-7c (8x8), with 3x3 convolutions split into parallel 1x3 and 3x1.

  pool: "avg" (torchvision), "avg_exclude_pad" (FID's Mixed_7b) or "max" (FID's Mixed_7c).
  """

  pool: str = "avg"

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    b1 = self.conv(320, 1, "branch1x1")(x, train=train)
    b3 = self.conv(384, 1, "branch3x3_1")(x, train=train)
    b3 = jnp.concatenate(
      [
        self.conv(384, (1, 3), "branch3x3_2a", padding=(0, 1))(b3, train=train),
        self.conv(384, (3, 1), "branch3x3_2b", padding=(1, 0))(b3, train=train),
      ],
      axis=-1,
    )
    bd = self.conv(448, 1, "branch3x3dbl_1")(x, train=train)
    bd = self.conv(384, 3, "branch3x3dbl_2", padding=1)(bd, train=train)
    bd = jnp.concatenate(
      [
        self.conv(384, (1, 3), "branch3x3dbl_3a", padding=(0, 1))(bd, train=train),
        self.conv(384, (3, 1), "branch3x3dbl_3b", padding=(1, 0))(bd, train=train),
      ],
      axis=-1,
    )
    if self.pool == "max":
      pooled = max_pool(x, 3, 1, padding=1)
    elif self.pool in ("avg", "avg_exclude_pad"):
      pooled = _avg_pool_3x3(x, self.pool == "avg")
    else:
      raise ConfigError(f"pool must be 'avg', 'avg_exclude_pad' or 'max', got {self.pool!r}")
    bp = self.conv(192, 1, "branch_pool")(pooled, train=train)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


@register("inception_v3")
class InceptionV3(_Block):
  """Inception-v3 as torchvision builds it (without the auxiliary classifier).

  Attributes:
    num_classes: outputs of the classifier (1000 for ImageNet, 1008 for the FID network).
    fid: the FID network's pooling (see the module's docstring).
    transform_input: map inputs normalised with the ImageNet mean and std to (x - 0.5) / 0.5,
      as torchvision does for its pretrained weights.
    dropout: dropout rate before the classifier.
    dtype: computation dtype (parameters stay float32).
  """

  num_classes: int = 1000
  fid: bool = False
  transform_input: bool = False
  dropout: float = 0.5

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool = False):
    """x: [batch, height, width, 3] float, 299x299 as trained (at least 75x75).

    Returns:
      logits [batch, num_classes] and features: "stem" (35x35x192 at 299), "mixed5" (35x35x288),
      "mixed6" (17x17x768), "mixed7" (8x8x2048) and "pre_logits" [batch, 2048] (the average
      of "mixed7": FID's pool3 features).
    """
    if min(x.shape[1:3]) < 75:
      raise ConfigError(
        f"Inception-v3 needs inputs of at least 75x75, got {x.shape[1]}x{x.shape[2]}"
      )
    if self.transform_input:
      x = torchvision_transform_input(x)
    x = jnp.asarray(x, self.dtype)
    x = self.conv(32, 3, "Conv2d_1a_3x3", stride=2)(x, train=train)
    x = self.conv(32, 3, "Conv2d_2a_3x3")(x, train=train)
    x = self.conv(64, 3, "Conv2d_2b_3x3", padding=1)(x, train=train)
    x = max_pool(x, 3, 2)
    x = self.conv(80, 1, "Conv2d_3b_1x1")(x, train=train)
    x = self.conv(192, 3, "Conv2d_4a_3x3")(x, train=train)
    x = max_pool(x, 3, 2)
    out = {"stem": x}
    for name, pool_features in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
      x = InceptionA(pool_features=pool_features, fid=self.fid, dtype=self.dtype, name=name)(
        x, train=train
      )
    out["mixed5"] = x
    x = InceptionB(dtype=self.dtype, name="Mixed_6a")(x, train=train)
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
      x = InceptionC(channels_7x7=c7, fid=self.fid, dtype=self.dtype, name=name)(x, train=train)
    out["mixed6"] = x
    x = InceptionD(dtype=self.dtype, name="Mixed_7a")(x, train=train)
    x = InceptionE(
      pool="avg_exclude_pad" if self.fid else "avg", dtype=self.dtype, name="Mixed_7b"
    )(x, train=train)
    x = InceptionE(pool="max" if self.fid else "avg", dtype=self.dtype, name="Mixed_7c")(
      x, train=train
    )
    out["mixed7"] = x
    x = x.mean(axis=(1, 2))
    out["pre_logits"] = x
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    logits = nn.Dense(self.num_classes, kernel_init=_init, dtype=self.dtype, name="head")(x)
    return logits, out


InceptionV3FID = register("inception_v3_fid")(partial(InceptionV3, fid=True, num_classes=1008))
