"""Generators and critics for adversarial training (the task is `vision_jax.tasks.gan`).

- `mlp_generator`, `mlp_critic`: fully connected, as in Goodfellow et al. 2014 ("Generative
  adversarial nets"; ReLU generator, LeakyReLU rather than maxout in the discriminator).
- `dcgan_generator`, `dcgan_critic`: Radford, Metz & Chintala 2015 ("Unsupervised representation
  learning with deep convolutional GANs", Section 3): strided (transposed) convolutions instead of
  pooling, BatchNorm, ReLU in the generator with a tanh output, LeakyReLU(0.2) in the critic, no
  fully connected hidden layers, weights initialised from N(0, 0.02). For 28x28 (MNIST) and
  32x32 (CIFAR-10) images.

Contract (as every registered model): `__call__(x, *, train)` returns `(output, intermediates)`.
A generator maps latents [batch, latent_dim] to images [batch, h, w, c] in [-1, 1]; a critic
maps images to one unbounded score per image [batch] (the GAN losses apply the sigmoid inside
the loss; the Wasserstein critic has none), with its penultimate features as "pre_logits".
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from vision_jax.errors import ConfigError
from vision_jax.models.layers import Conv, ConvTranspose
from vision_jax.models.registry import register

_DCGAN_INIT = nn.initializers.normal(0.02)
CRITIC_NORMS = ("batch", "layer", "none")


def _dcgan_stages(image_shape: Sequence[int], who: str) -> tuple[int, int]:
  """(upsampling stages, starting size) for a DCGAN at this image size."""
  if tuple(image_shape[:2]) == (32, 32):
    return 3, 4  # 4 -> 8 -> 16 -> 32
  if tuple(image_shape[:2]) == (28, 28):
    return 2, 7  # 7 -> 14 -> 28
  raise ConfigError(
    f"{who} is built for 28x28 or 32x32 images, got {tuple(image_shape)}; "
    "set data.pad_to or use the MLP models for other sizes"
  )


@register("mlp_generator")
class MLPGenerator(nn.Module):
  """z -> ReLU hidden layers -> tanh pixels.

  Attributes:
    image_shape: (height, width, channels) of the images to make.
    hidden: widths of the hidden layers.
  """

  image_shape: Sequence[int] = (28, 28, 1)
  hidden: Sequence[int] = (256, 512, 1024)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z: jnp.ndarray, *, train: bool = False):
    """z: [batch, latent_dim]. Returns (images [batch, h, w, c] in [-1, 1], features)."""
    x = z
    for i, width in enumerate(self.hidden):
      x = nn.relu(nn.Dense(width, dtype=self.dtype, name=f"fc{i + 1}")(x))
    out = {"pre_logits": x}
    x = nn.Dense(int(np.prod(self.image_shape)), dtype=self.dtype, name="head")(x)
    return jnp.tanh(x).reshape((z.shape[0], *self.image_shape)).astype(jnp.float32), out


@register("mlp_critic")
class MLPCritic(nn.Module):
  """Flattened pixels -> LeakyReLU(0.2) hidden layers -> one score."""

  hidden: Sequence[int] = (512, 256)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool = False):
    """x: [batch, h, w, c] in [-1, 1]. Returns (scores [batch], features)."""
    x = x.reshape((x.shape[0], -1))
    for i, width in enumerate(self.hidden):
      x = nn.leaky_relu(nn.Dense(width, dtype=self.dtype, name=f"fc{i + 1}")(x), 0.2)
    score = nn.Dense(1, dtype=self.dtype, name="head")(x)
    return score[:, 0].astype(jnp.float32), {"pre_logits": x}


@register("dcgan_generator")
class DCGANGenerator(nn.Module):
  """DCGAN's generator: project and reshape, then stride-2 transposed convolutions.

  Attributes:
    image_shape: (28, 28, c) or (32, 32, c).
    width: channels of the last hidden layer; each earlier stage has twice as many (DCGAN's
      CIFAR/LSUN generator is width 128 at 64x64; 64 suits 32x32).
  """

  image_shape: Sequence[int] = (32, 32, 3)
  width: int = 64
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z: jnp.ndarray, *, train: bool = False):
    """z: [batch, latent_dim]. Returns (images [batch, h, w, c] in [-1, 1], features)."""
    stages, start = _dcgan_stages(self.image_shape, "dcgan_generator")
    norm = lambda name: nn.BatchNorm(
      use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype, name=name
    )
    channels = self.width * 2 ** (stages - 1)
    x = nn.Dense(
      start * start * channels,
      use_bias=False,
      kernel_init=_DCGAN_INIT,
      dtype=self.dtype,
      name="project",
    )(z)
    x = nn.relu(norm("project_bn")(x.reshape((z.shape[0], start, start, channels))))
    out = {"project": x}
    for i in range(stages - 1):
      channels //= 2
      x = ConvTranspose(
        channels,
        (4, 4),
        strides=(2, 2),
        padding="SAME",
        use_bias=False,
        kernel_init=_DCGAN_INIT,
        dtype=self.dtype,
        name=f"up{i + 1}",
      )(x)
      x = nn.relu(norm(f"up{i + 1}_bn")(x))
      out[f"up{i + 1}"] = x
    x = ConvTranspose(
      self.image_shape[-1],
      (4, 4),
      strides=(2, 2),
      padding="SAME",
      kernel_init=_DCGAN_INIT,
      dtype=self.dtype,
      name="to_image",
    )(x)
    return jnp.tanh(x).astype(jnp.float32), out


@register("dcgan_critic")
class DCGANCritic(nn.Module):
  """DCGAN's discriminator: stride-2 convolutions with LeakyReLU(0.2), then one linear score.

  Attributes:
    width: channels of the first convolution; doubled at each stage.
    norm: "batch" (DCGAN; not on the first layer, as in the paper), "layer" (WGAN-GP's drop-in
      replacement: a gradient penalty needs each score to depend on its own image only) or
      "none".
  """

  width: int = 64
  norm: str = "batch"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool = False):
    """x: [batch, 28 or 32, 28 or 32, c] in [-1, 1]. Returns (scores [batch], features)."""
    if x.ndim != 4:
      raise ValueError(f"dcgan_critic expects images [batch, h, w, c], got {x.shape}")
    stages, _ = _dcgan_stages(x.shape[1:], "dcgan_critic")
    if self.norm not in CRITIC_NORMS:
      raise ConfigError(f"norm must be one of {CRITIC_NORMS}, got {self.norm!r}")
    out = {}
    for i in range(stages):
      x = Conv(
        self.width * 2**i,
        (4, 4),
        strides=(2, 2),
        padding="SAME",
        kernel_init=_DCGAN_INIT,
        use_bias=i == 0 or self.norm == "none",
        dtype=self.dtype,
        name=f"down{i + 1}",
      )(x)
      if i > 0 and self.norm == "batch":
        x = nn.BatchNorm(
          use_running_average=not train,
          momentum=0.9,
          epsilon=1e-5,
          dtype=self.dtype,
          name=f"down{i + 1}_bn",
        )(x)
      elif i > 0 and self.norm == "layer":
        x = nn.LayerNorm(
          reduction_axes=(-3, -2, -1), feature_axes=-1, dtype=self.dtype, name=f"down{i + 1}_ln"
        )(x)
      x = nn.leaky_relu(x, 0.2)
      out[f"down{i + 1}"] = x
    x = x.reshape((x.shape[0], -1))
    out["pre_logits"] = x
    score = nn.Dense(1, kernel_init=_DCGAN_INIT, dtype=self.dtype, name="head")(x)
    return score[:, 0].astype(jnp.float32), out
