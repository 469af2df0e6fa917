"""Residual networks (He, Zhang, Ren & Sun 2015, "Deep residual learning for image recognition").

Two families:
- ImageNet ResNet-18/34/50/101/152 (the paper's Table 1) in torchvision's layout: a 7x7 stride-2
  stem and 3x3 max pool, four stages of 64/128/256/512 (x4 for bottlenecks) filters, projection
  shortcuts (1x1 convolution and BatchNorm, "option B") where the shape changes, and the
  bottleneck's stride on its 3x3 convolution ("ResNet v1.5"; the paper strides the first 1x1).
  ResNet-18 has 11,689,512 parameters, ResNet-50 25,557,032.
- CIFAR ResNet-20/32/44/56/110 (the paper's section 4.2): a 3x3 convolution of 16 filters, three
  stages of n basic blocks with 16/32/64 filters (6n+2 layers), identity shortcuts zero-padded
  where the width doubles ("option A", so shortcuts add no parameters), global average pooling
  and the classifier; and their "plain" counterparts, the same stacks without any shortcut.

All convolutions are bias-free and followed by BatchNorm; padding is symmetric as in torch.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from vision_jax.errors import ConfigError
from vision_jax.models.layers import Conv
from vision_jax.models.pooling import max_pool
from vision_jax.models.registry import register

# He et al.'s (and torchvision's) initialisation for convolutions followed by ReLU.
_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class _ConvBN(nn.Module):
  """Builders shared by the networks: bias-free convolutions with torch's padding, and BatchNorm."""

  dtype: Any = jnp.float32

  def conv(self, features: int, kernel: int, stride: int, name: str) -> Conv:
    pad = (kernel - 1) // 2
    return Conv(
      features,
      (kernel, kernel),
      strides=stride,
      padding=[(pad, pad)] * 2,
      use_bias=False,
      kernel_init=_conv_init,
      dtype=self.dtype,
      name=name,
    )

  def norm(self, train: bool, name: str) -> nn.BatchNorm:
    # torch's BatchNorm2d defaults: its momentum 0.1 is flax's 0.9.
    return nn.BatchNorm(
      use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype, name=name
    )


class _Block(_ConvBN):
  """A residual block's attributes and shortcut branch.

  Attributes:
    features: channels of the 3x3 convolutions (the output is 4x that for Bottleneck).
    stride: stride of the block's strided convolution and of its shortcut.
    shortcut: "projection" (1x1 convolution and BatchNorm where the shape changes, else
      identity; the paper's option B), "zero_pad" (identity, subsampled by taking every other
      pixel and widened with zero channels where the shape changes; option A) or "none" (a
      plain network's block).
  """

  features: int = 64
  stride: int = 1
  shortcut: str = "projection"

  def add_shortcut(self, x: jnp.ndarray, y: jnp.ndarray, train: bool) -> jnp.ndarray:
    """The residual sum relu(y + shortcut(x)); x is the block's input, y its last BatchNorm's."""
    features = y.shape[-1]
    if self.shortcut == "none":
      return nn.relu(y)
    if self.stride != 1 or x.shape[-1] != features:
      if self.shortcut == "projection":
        x = self.conv(features, 1, self.stride, "proj_conv")(x)
        x = self.norm(train, "proj_bn")(x)
      elif self.shortcut == "zero_pad":
        x = x[:, :: self.stride, :: self.stride, :]
        x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, features - x.shape[-1])))
      else:
        raise ConfigError(
          f"shortcut must be 'projection', 'zero_pad' or 'none', got {self.shortcut!r}"
        )
    return nn.relu(y + x)


class BasicBlock(_Block):
  """Two 3x3 convolutions plus a shortcut."""

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """x: [batch, height, width, channels] -> [batch, height/stride, width/stride, features]."""
    y = self.conv(self.features, 3, self.stride, "conv1")(x)
    y = nn.relu(self.norm(train, "bn1")(y))
    y = self.conv(self.features, 3, 1, "conv2")(y)
    y = self.norm(train, "bn2")(y)
    return self.add_shortcut(x, y, train)


class Bottleneck(_Block):
  """1x1 reduce, 3x3 (strided, as torchvision's v1.5), 1x1 expand to 4 x features, plus a
  shortcut."""

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """x: [batch, height, width, channels] -> [batch, height/stride, width/stride, 4*features]."""
    y = self.conv(self.features, 1, 1, "conv1")(x)
    y = nn.relu(self.norm(train, "bn1")(y))
    y = self.conv(self.features, 3, self.stride, "conv2")(y)
    y = nn.relu(self.norm(train, "bn2")(y))
    y = self.conv(4 * self.features, 1, 1, "conv3")(y)
    y = self.norm(train, "bn3")(y)
    return self.add_shortcut(x, y, train)


class ResNet(_ConvBN):
  """ImageNet ResNet, torchvision's layout.

  Attributes:
    stage_sizes: blocks per stage, e.g. [3, 4, 6, 3] for ResNet-50.
    block_cls: BasicBlock or Bottleneck.
    num_classes: outputs of the last layer.
    dtype: computation dtype (parameters stay float32).
  """

  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  block_cls: type[nn.Module] = BasicBlock
  num_classes: int = 1000

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool = False):
    """x: [batch, height, width, 3] float; 224x224 on ImageNet, anything >= 32x32 works.

    Returns:
      logits [batch, num_classes] and features "stage1".."stage4" (strides 4, 8, 16, 32) and
      "pre_logits" [batch, 512 or 2048], the globally average-pooled "stage4".
    """
    out = {}
    x = jnp.asarray(x, self.dtype)
    x = self.conv(64, 7, 2, "conv_init")(x)
    x = nn.relu(self.norm(train, "bn_init")(x))
    x = max_pool(x, 3, 2, padding=1)
    for s, num_blocks in enumerate(self.stage_sizes):
      for b in range(num_blocks):
        stride = 2 if s > 0 and b == 0 else 1
        x = self.block_cls(
          features=64 * 2**s, stride=stride, dtype=self.dtype, name=f"stage{s + 1}_block{b + 1}"
        )(x, train=train)
      out[f"stage{s + 1}"] = x
    x = x.mean(axis=(1, 2))
    out["pre_logits"] = x
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)
    return logits, out


class CifarResNet(_ConvBN):
  """He et al.'s CIFAR-10 networks (section 4.2): 6n+2 layers on 32x32 images.

  Attributes:
    depth: 6n + 2 (20, 32, 44, 56, 110, ...).
    shortcut: "zero_pad" (the paper's ResNets, option A) or "none" (its plain networks).
    num_classes: outputs of the last layer.
    dropout: dropout rate before the classifier (0, the paper's setting, disables it).
    dtype: computation dtype (parameters stay float32).
  """

  depth: int = 20
  shortcut: str = "zero_pad"
  num_classes: int = 10
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool = False):
    """x: [batch, 32, 32, 3] float (other sizes work too).

    Returns:
      logits [batch, num_classes] and features "stage1".."stage3" (32x32x16, 16x16x32,
      8x8x64 at 32x32 input) and "pre_logits" [batch, 64], the globally average-pooled "stage3".
    """
    if not isinstance(self.depth, int) or self.depth < 8 or (self.depth - 2) % 6:
      raise ConfigError(
        f"depth must be 6n + 2 with n >= 1 blocks per stage (8, 14, 20, 32, 44, 56, 110, ...), "
        f"got {self.depth!r}"
      )
    out = {}
    x = jnp.asarray(x, self.dtype)
    x = self.conv(16, 3, 1, "conv_init")(x)
    x = nn.relu(self.norm(train, "bn_init")(x))
    for s in range(3):
      for b in range((self.depth - 2) // 6):
        stride = 2 if s > 0 and b == 0 else 1
        x = BasicBlock(
          features=16 * 2**s,
          stride=stride,
          shortcut=self.shortcut,
          dtype=self.dtype,
          name=f"stage{s + 1}_block{b + 1}",
        )(x, train=train)
      out[f"stage{s + 1}"] = x
    x = x.mean(axis=(1, 2))
    out["pre_logits"] = x
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)
    return logits, out


ResNet18 = register("resnet18")(partial(ResNet, stage_sizes=(2, 2, 2, 2), block_cls=BasicBlock))
ResNet34 = register("resnet34")(partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=BasicBlock))
ResNet50 = register("resnet50")(partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=Bottleneck))
ResNet101 = register("resnet101")(partial(ResNet, stage_sizes=(3, 4, 23, 3), block_cls=Bottleneck))
ResNet152 = register("resnet152")(partial(ResNet, stage_sizes=(3, 8, 36, 3), block_cls=Bottleneck))

ResNet20 = register("resnet20")(partial(CifarResNet, depth=20))
ResNet32 = register("resnet32")(partial(CifarResNet, depth=32))
ResNet44 = register("resnet44")(partial(CifarResNet, depth=44))
ResNet56 = register("resnet56")(partial(CifarResNet, depth=56))
ResNet110 = register("resnet110")(partial(CifarResNet, depth=110))
Plain20 = register("plain20")(partial(CifarResNet, depth=20, shortcut="none"))
Plain32 = register("plain32")(partial(CifarResNet, depth=32, shortcut="none"))
Plain44 = register("plain44")(partial(CifarResNet, depth=44, shortcut="none"))
Plain56 = register("plain56")(partial(CifarResNet, depth=56, shortcut="none"))
Plain110 = register("plain110")(partial(CifarResNet, depth=110, shortcut="none"))
