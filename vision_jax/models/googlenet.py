"""GoogLeNet, Inception v1 (Szegedy et al. 2015, "Going deeper with convolutions", Table 1), as
torchvision builds it.

torchvision's GoogLeNet differs from the paper, and this module follows torchvision so that its
weights import (`scripts.import_torchvision googlenet`) and the parameter count is its
6,624,904 (without the auxiliary heads):
- every convolution is bias-free and followed by BatchNorm (epsilon 1e-3, not 1e-5), which the
  paper (2014) predates; there is no local response normalisation;
- the "5x5" branch of each Inception module uses a 3x3 convolution (a bug in the original port
  kept for weight compatibility, pytorch/vision#906);
- max pools use ceil mode, as Caffe did;
- the auxiliary heads pool adaptively to 4x4 (the paper: 5x5 average pool, stride 3, which gives
  4x4 at 224x224) and have 1024 hidden units and dropout 0.7.

The auxiliary classifiers run only in training (and at init, so that their parameters exist),
when `aux_logits` is set; their logits are returned as features "aux1" and "aux2". The paper
adds their losses to the main loss with weight 0.3 each; that weighting is the task's business.

`stem="cifar"` (registered as `googlenet_cifar`) is the usual adaptation to 32x32 inputs (as in
kuangliu/pytorch-cifar): the ImageNet stem, which shrinks the input 8x before inception3a (7x7
stride-2 convolution, max pool, 1x1 and 3x3 convolutions, max pool), becomes one stride-1 3x3
convolution to 192 channels, so that inception3a-3b see 32x32, 4a-4e 16x16 and 5a-5b 8x8 maps;
everything after the stem is unchanged. Without the auxiliary heads it has 5,490,986 parameters
for 10 classes.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from vision_jax.errors import ConfigError
from vision_jax.models.layers import Conv, torchvision_transform_input
from vision_jax.models.pooling import adaptive_avg_pool, max_pool
from vision_jax.models.registry import register

# The paper's Table 1 after the stem, in order: each Inception module's name and the widths of
# its 1x1, 3x3 reduce, 3x3, "5x5" reduce, "5x5" and pool projection branches; an int is the
# window of a stride-2 max pool (2x2 after 4e, as torchvision has it; the paper's is 3x3).
INCEPTIONS = (
  ("inception3a", (64, 96, 128, 16, 32, 32)),
  ("inception3b", (128, 128, 192, 32, 96, 64)),
  3,
  ("inception4a", (192, 96, 208, 16, 48, 64)),
  ("inception4b", (160, 112, 224, 24, 64, 64)),
  ("inception4c", (128, 128, 256, 24, 64, 64)),
  ("inception4d", (112, 144, 288, 32, 64, 64)),
  ("inception4e", (256, 160, 320, 32, 128, 128)),
  2,
  ("inception5a", (256, 160, 320, 32, 128, 128)),
  ("inception5b", (384, 192, 384, 48, 128, 128)),
)
# The auxiliary heads branch off after these modules.
AUX_AFTER = {"inception4a": "aux1", "inception4d": "aux2"}

# torchvision initialises every convolution and linear layer with N(0, 0.01) (truncated at
# +-2, i.e. 200 standard deviations: in effect untruncated), biases with zeros.
_init = nn.initializers.normal(0.01)


class BasicConv(nn.Module):
  """Convolution (no bias), BatchNorm (epsilon 1e-3, as torchvision's GoogLeNet), ReLU."""

  features: int
  kernel: int = 1
  stride: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """x: [batch, height, width, channels] -> [batch, height/stride, width/stride, features]."""
    pad = (self.kernel - 1) // 2
    x = Conv(
      self.features,
      (self.kernel, self.kernel),
      strides=self.stride,
      padding=[(pad, pad)] * 2,
      use_bias=False,
      kernel_init=_init,
      dtype=self.dtype,
      name="conv",
    )(x)
    x = nn.BatchNorm(
      use_running_average=not train, momentum=0.9, epsilon=1e-3, dtype=self.dtype, name="bn"
    )(x)
    return nn.relu(x)


class Inception(nn.Module):
  """Four parallel branches (1x1; 1x1-3x3; 1x1-"5x5"; 3x3 max pool-1x1), concatenated."""

  widths: tuple[int, int, int, int, int, int]
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """x: [batch, height, width, channels] -> [batch, height, width, sum of branch widths]."""
    w1, w2_reduce, w2, w3_reduce, w3, w4 = self.widths
    conv = lambda features, kernel, name: BasicConv(features, kernel, dtype=self.dtype, name=name)
    b1 = conv(w1, 1, "branch1")(x, train=train)
    b2 = conv(w2_reduce, 1, "branch2_reduce")(x, train=train)
    b2 = conv(w2, 3, "branch2")(b2, train=train)
    b3 = conv(w3_reduce, 1, "branch3_reduce")(x, train=train)
    b3 = conv(w3, 3, "branch3")(b3, train=train)  # 3x3, not the paper's 5x5: see module doc.
    b4 = max_pool(x, 3, 1, padding=1, ceil_mode=True)
    b4 = conv(w4, 1, "branch4")(b4, train=train)
    return jnp.concatenate([b1, b2, b3, b4], axis=-1)


class InceptionAux(nn.Module):
  """Auxiliary classifier: 4x4 average pool, 1x1 convolution to 128, FC 1024, dropout, FC."""

  num_classes: int
  dropout: float = 0.7
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """x: [batch, height, width, channels] -> logits [batch, num_classes]."""
    x = adaptive_avg_pool(x, (4, 4))
    x = BasicConv(128, 1, dtype=self.dtype, name="conv")(x, train=train)
    # Flattened in NHWC order; the importer permutes torch's NCHW-ordered fc1 weights to match.
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(1024, kernel_init=_init, dtype=self.dtype, name="fc1")(x))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes, kernel_init=_init, dtype=self.dtype, name="fc2")(x)


@register("googlenet")
class GoogLeNet(nn.Module):
  """GoogLeNet as torchvision builds it.

  Attributes:
    num_classes: outputs of the classifier (and of the auxiliary classifiers).
    aux_logits: build the two auxiliary classifiers and run them in training.
    transform_input: map inputs normalised with the ImageNet mean and std to (x - 0.5) / 0.5,
      the normalisation torchvision's pretrained weights were trained with (as torchvision
      does when it loads them).
    dropout: dropout rate before the classifier.
    aux_dropout: dropout rate in the auxiliary classifiers.
    stem: "imagenet" (torchvision's, 8x downsampling) or "cifar" (one stride-1 3x3
      convolution; see the module's docstring).
    dtype: computation dtype (parameters stay float32).
  """

  num_classes: int = 1000
  aux_logits: bool = True
  transform_input: bool = False
  dropout: float = 0.2
  aux_dropout: float = 0.7
  stem: str = "imagenet"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool = False):
    """x: [batch, height, width, 3] float; 224x224 on ImageNet (anything >= 15x15 works), 32x32
    on CIFAR with the "cifar" stem.

    Returns:
      logits [batch, num_classes] and features: the stem's "conv1".."conv3" ("imagenet") or
      "stem" ("cifar"), "inception3a".."inception5b" (strides 8, 16 and 32; with the "cifar"
      stem 1, 2 and 4), "pre_logits" [batch, 1024] (the globally average-pooled "inception5b"),
      and in training with aux_logits the auxiliary logits "aux1", "aux2" [batch, num_classes].
    """
    if self.stem not in ("imagenet", "cifar"):
      raise ConfigError(f"stem must be 'imagenet' or 'cifar', got {self.stem!r}")
    out = {}
    if self.transform_input:
      x = torchvision_transform_input(x)
    x = jnp.asarray(x, self.dtype)
    if self.stem == "cifar":
      x = BasicConv(192, 3, dtype=self.dtype, name="stem")(x, train=train)
      out["stem"] = x
    else:
      x = BasicConv(64, 7, stride=2, dtype=self.dtype, name="conv1")(x, train=train)
      out["conv1"] = x
      x = max_pool(x, 3, 2, ceil_mode=True)
      x = BasicConv(64, 1, dtype=self.dtype, name="conv2")(x, train=train)
      out["conv2"] = x
      x = BasicConv(192, 3, dtype=self.dtype, name="conv3")(x, train=train)
      out["conv3"] = x
      x = max_pool(x, 3, 2, ceil_mode=True)
    # Running the auxiliary heads at init too creates their parameters for evaluation-mode init.
    run_aux = self.aux_logits and (train or self.is_initializing())
    for layer in INCEPTIONS:
      if isinstance(layer, int):
        x = max_pool(x, layer, 2, ceil_mode=True)
        continue
      name, widths = layer
      x = Inception(widths, dtype=self.dtype, name=name)(x, train=train)
      out[name] = x
      if run_aux and name in AUX_AFTER:
        aux = AUX_AFTER[name]
        aux_logits = InceptionAux(self.num_classes, self.aux_dropout, dtype=self.dtype, name=aux)(
          x, train=train
        )
        if train:
          out[aux] = aux_logits
    x = x.mean(axis=(1, 2))
    out["pre_logits"] = x
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    logits = nn.Dense(self.num_classes, kernel_init=_init, dtype=self.dtype, name="head")(x)
    return logits, out


GoogLeNetCifar = register("googlenet_cifar")(partial(GoogLeNet, stem="cifar", num_classes=10))
