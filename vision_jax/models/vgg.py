"""VGG (Simonyan & Zisserman 2015, "Very deep convolutional networks for large-scale image
recognition", Table 1 configurations A, B, D, E = VGG-11, 13, 16, 19), in torchvision's layout.

As torchvision: every convolution is 3x3 with padding 1 and a bias, optionally followed by
BatchNorm (the `_bn` variants, which the paper does not have); an adaptive average pool to 7x7
precedes the classifier (so inputs down to 32x32 work, the pool then repeating the one remaining
pixel), and the classifier is 4096-4096-num_classes with ReLU and dropout. VGG-16 has
138,357,544 parameters.

On CIFAR-sized inputs that classifier is the wrong shape: at 32x32 the last map is already
1x1x512, which the 7x7 pool copies 49 times into 102M parameters of fc1. `classifier="cifar"`
(registered as `vgg16_bn_cifar`) is the head that CIFAR reimplementations of VGG-16 with
BatchNorm use instead (Zagoruyko's cifar.torch `vgg_bn_drop`; Liu & Deng
2015 adapt VGG-16 similarly, their exact head unchecked here): the map globally average-pooled
to 512, then dropout, FC 512, BatchNorm, ReLU, dropout,
FC num_classes. VGG-16-BN with it has 14,991,946 parameters for 10 classes.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from vision_jax.errors import ConfigError
from vision_jax.models.layers import Conv
from vision_jax.models.pooling import adaptive_avg_pool, max_pool
from vision_jax.models.registry import register

# The paper's Table 1: convolution widths per block; each block ends in a 2x2 max pool.
CONFIGS: dict[str, tuple[tuple[int, ...], ...]] = {
  "A": ((64,), (128,), (256, 256), (512, 512), (512, 512)),
  "B": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
  "D": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
  "E": ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512)),
}

# torchvision's initialisation: He (fan-out) for convolutions, N(0, 0.01) for the classifier.
_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
_dense_init = nn.initializers.normal(0.01)


CLASSIFIERS = ("imagenet", "cifar")


class VGG(nn.Module):
  """VGG with torchvision's classifier, or the CIFAR one.

  Attributes:
    blocks: convolution widths per block (one of CONFIGS).
    batch_norm: BatchNorm after every convolution (and, with the CIFAR classifier, after its
      hidden layer).
    num_classes: outputs of the last layer.
    dropout: dropout rate of the classifier: after each hidden layer ("imagenet"), or before
      the hidden layer and before the last ("cifar").
    classifier: "imagenet" (torchvision's: 7x7 adaptive pool, 4096-4096-num_classes) or
      "cifar" (global average pool; dropout, FC 512, BatchNorm, ReLU, dropout, FC).
    dtype: computation dtype (parameters stay float32).
  """

  blocks: Sequence[Sequence[int]]
  batch_norm: bool = False
  num_classes: int = 1000
  dropout: float = 0.5
  classifier: str = "imagenet"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool = False):
    """x: [batch, height, width, 3] float, height and width >= 32.

    Returns:
      logits [batch, num_classes] and features: "block1".."block5", each block's last
      activation before its max pool (strides 1, 2, 4, 8, 16), and for the "imagenet"
      classifier "pool" [batch, 7, 7, 512], "fc1", "fc2", "pre_logits" = "fc2"; for the
      "cifar" one "pool" [batch, 512], "fc1", "pre_logits" = "fc1".
    """
    if self.classifier not in CLASSIFIERS:
      raise ConfigError(
        f"classifier must be one of {', '.join(CLASSIFIERS)}, got {self.classifier!r}"
      )
    if min(x.shape[1:3]) < 32:
      raise ConfigError(f"VGG needs images of at least 32x32, got {x.shape}")
    out = {}
    x = jnp.asarray(x, self.dtype)
    for b, widths in enumerate(self.blocks, start=1):
      for i, width in enumerate(widths, start=1):
        x = Conv(
          width,
          (3, 3),
          padding=[(1, 1), (1, 1)],
          kernel_init=_conv_init,
          dtype=self.dtype,
          name=f"block{b}_conv{i}",
        )(x)
        if self.batch_norm:
          x = nn.BatchNorm(
            use_running_average=not train,
            momentum=0.9,
            epsilon=1e-5,
            dtype=self.dtype,
            name=f"block{b}_bn{i}",
          )(x)
        x = nn.relu(x)
      out[f"block{b}"] = x
      x = max_pool(x, 2, 2)
    if self.classifier == "cifar":
      return self._cifar_classifier(x, out, train)
    x = adaptive_avg_pool(x, (7, 7))
    out["pool"] = x
    # Flattened in NHWC order; the importer permutes torch's NCHW-ordered fc1 weights to match.
    x = x.reshape((x.shape[0], -1))
    for i in (1, 2):
      x = nn.Dense(4096, kernel_init=_dense_init, dtype=self.dtype, name=f"fc{i}")(x)
      x = nn.relu(x)
      out[f"fc{i}"] = x
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    out["pre_logits"] = out["fc2"]
    logits = nn.Dense(self.num_classes, kernel_init=_dense_init, dtype=self.dtype, name="head")(x)
    return logits, out

  def _cifar_classifier(self, x: jnp.ndarray, out: dict, train: bool):
    """Dropout, FC 512, [BatchNorm], ReLU, dropout, FC num_classes on the pooled last map."""
    x = x.mean(axis=(1, 2))  # 1x1 at 32x32 input: the pool only matters for larger inputs.
    out["pool"] = x
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = nn.Dense(512, kernel_init=_dense_init, dtype=self.dtype, name="fc1")(x)
    if self.batch_norm:
      x = nn.BatchNorm(
        use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype, name="fc1_bn"
      )(x)
    x = nn.relu(x)
    out["fc1"] = x
    out["pre_logits"] = x
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    logits = nn.Dense(self.num_classes, kernel_init=_dense_init, dtype=self.dtype, name="head")(x)
    return logits, out


VGG11 = register("vgg11")(partial(VGG, blocks=CONFIGS["A"]))
VGG13 = register("vgg13")(partial(VGG, blocks=CONFIGS["B"]))
VGG16 = register("vgg16")(partial(VGG, blocks=CONFIGS["D"]))
VGG19 = register("vgg19")(partial(VGG, blocks=CONFIGS["E"]))
VGG11_BN = register("vgg11_bn")(partial(VGG, blocks=CONFIGS["A"], batch_norm=True))
VGG13_BN = register("vgg13_bn")(partial(VGG, blocks=CONFIGS["B"], batch_norm=True))
VGG16_BN = register("vgg16_bn")(partial(VGG, blocks=CONFIGS["D"], batch_norm=True))
VGG19_BN = register("vgg19_bn")(partial(VGG, blocks=CONFIGS["E"], batch_norm=True))
VGG16_BN_CIFAR = register("vgg16_bn_cifar")(
  partial(VGG, blocks=CONFIGS["D"], batch_norm=True, classifier="cifar", num_classes=10)
)
