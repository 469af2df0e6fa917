"""Autoencoders: an encoder to a latent code, a decoder back to the image.

    ae_mlp, ae_conv     the plain autoencoder (linear code by default); the denoising AE
                        (Vincent et al. 2008) is this model trained on corrupted inputs
    sae_mlp, sae_conv   the sparse autoencoder's sigmoid code (its penalty is the task's)
    vae_mlp, vae_conv   the VAE (Kingma & Welling 2013): a Gaussian encoder q(z|x) = N(mean,
                        diag(exp(logvar))) and a decoder p(x|z), sampled by reparameterisation

The decoder returns logits, [batch, height, width, channels]: Bernoulli logits for a Bernoulli
decoder, and sigmoid(logits) is the reconstruction in [0, 1] for every loss. `__call__` returns
`(logits, intermediates)` with the code under "code" (the VAE's sample z, or its mean outside
training), and the VAE's "mean" and "logvar". `encode` and `decode` are methods, for
`model.apply(variables, x, method="encode")`: the importance-weighted bound and prior samples
decode latents without an image.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from vision_jax.errors import ConfigError
from vision_jax.metrics import likelihood
from vision_jax.models.layers import Conv, ConvTranspose
from vision_jax.models.registry import register

ACTIVATIONS = {
  "relu": nn.relu,
  "tanh": jnp.tanh,
  "elu": nn.elu,
  "softplus": nn.softplus,
  "sigmoid": nn.sigmoid,
  "linear": lambda x: x,
}
ARCHITECTURES = ("mlp", "conv")


def _activation(name: str, what: str):
  if name not in ACTIVATIONS:
    raise ConfigError(f"unknown {what} {name!r}; valid: {', '.join(ACTIVATIONS)}")
  return ACTIVATIONS[name]


class MLPEncoder(nn.Module):
  """Flattened pixels -> hidden fully connected layers -> `outputs` features (no activation)."""

  hidden: Sequence[int]
  outputs: int
  activation: str = "relu"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    """x: [batch, height, width, channels] -> [batch, outputs]."""
    act = _activation(self.activation, "activation")
    x = x.reshape((x.shape[0], -1))
    for i, width in enumerate(self.hidden):
      x = act(nn.Dense(width, dtype=self.dtype, name=f"fc{i + 1}")(x))
    return nn.Dense(self.outputs, dtype=self.dtype, name="out")(x)


class MLPDecoder(nn.Module):
  """Code -> hidden fully connected layers (the encoder's, mirrored) -> pixel logits."""

  hidden: Sequence[int]
  image_shape: tuple[int, int, int]
  activation: str = "relu"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z: jnp.ndarray) -> jnp.ndarray:
    """z: [batch, latent] -> logits [batch, height, width, channels]."""
    act = _activation(self.activation, "activation")
    for i, width in enumerate(reversed(tuple(self.hidden))):
      z = act(nn.Dense(width, dtype=self.dtype, name=f"fc{i + 1}")(z))
    h, w, c = self.image_shape
    return nn.Dense(h * w * c, dtype=self.dtype, name="out")(z).reshape((-1, h, w, c))


class ConvEncoder(nn.Module):
  """Stride-2 3x3 convolutions of `features` channels, flattened -> `outputs` features."""

  features: Sequence[int]
  outputs: int
  activation: str = "relu"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    """x: [batch, height, width, channels] -> [batch, outputs]."""
    act = _activation(self.activation, "activation")
    for i, f in enumerate(self.features):
      x = act(
        Conv(f, (3, 3), strides=(2, 2), padding="SAME", dtype=self.dtype, name=f"conv{i + 1}")(x)
      )
    return nn.Dense(self.outputs, dtype=self.dtype, name="out")(x.reshape((x.shape[0], -1)))


class ConvDecoder(nn.Module):
  """Code -> a [h / 2^n, w / 2^n, features[-1]] map -> n stride-2 transposed convolutions.

  The last transposed convolution has the image's channels; the output is cropped to the image
  when its size is not a multiple of 2^n (rounded up on the way down by the encoder's SAME padding).
  """

  features: Sequence[int]
  image_shape: tuple[int, int, int]
  activation: str = "relu"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z: jnp.ndarray) -> jnp.ndarray:
    """z: [batch, latent] -> logits [batch, height, width, channels]."""
    act = _activation(self.activation, "activation")
    h, w, c = self.image_shape
    n = len(self.features)
    h0, w0 = -(-h // 2**n), -(-w // 2**n)
    x = act(nn.Dense(h0 * w0 * self.features[-1], dtype=self.dtype, name="fc")(z))
    x = x.reshape((-1, h0, w0, self.features[-1]))
    widths = [*reversed(tuple(self.features)[:-1]), c]
    for i, f in enumerate(widths):
      x = ConvTranspose(
        f, (3, 3), strides=(2, 2), padding="SAME", dtype=self.dtype, name=f"deconv{i + 1}"
      )(x)
      if i < n - 1:
        x = act(x)
    return x[:, :h, :w, :]


def _check(
  latent_dim: int, architecture: str, hidden: Sequence[int], image_shape: Sequence[int]
) -> None:
  if not isinstance(latent_dim, int) or latent_dim < 1:
    raise ConfigError(
      f"the latent size (model.latent_dim) must be an integer >= 1, got {latent_dim!r}"
    )
  if architecture not in ARCHITECTURES:
    raise ConfigError(
      f"unknown autoencoder architecture {architecture!r}; valid: {', '.join(ARCHITECTURES)}"
    )
  if architecture == "conv" and not hidden:
    raise ConfigError(
      "a convolutional autoencoder needs at least one layer in model.hidden (its channels)"
    )
  if len(image_shape) != 3 or any(not isinstance(d, int) or d < 1 for d in image_shape):
    raise ConfigError(
      f"image_shape must be (height, width, channels) of positive ints, got {image_shape!r}"
    )


def _encoder_decoder(module, outputs: int):
  """The (encoder, decoder) pair of `module`'s architecture."""
  if module.architecture == "mlp":
    return (
      MLPEncoder(module.hidden, outputs, module.activation, module.dtype, name="encoder"),
      MLPDecoder(
        module.hidden, tuple(module.image_shape), module.activation, module.dtype, name="decoder"
      ),
    )
  return (
    ConvEncoder(module.hidden, outputs, module.activation, module.dtype, name="encoder"),
    ConvDecoder(
      module.hidden, tuple(module.image_shape), module.activation, module.dtype, name="decoder"
    ),
  )


class Autoencoder(nn.Module):
  """A deterministic autoencoder: code = latent_activation(encoder(x)), logits = decoder(code).

  Attributes:
    architecture: "mlp" (hidden = layer widths) or "conv" (hidden = channels of the stride-2 layers).
    latent_dim: the size of the code.
    hidden: the encoder's layers; the decoder mirrors them.
    activation: of the hidden layers.
    latent_activation: of the code: "linear" (AE, DAE) or "sigmoid" (SAE), or any of ACTIVATIONS.
    image_shape: (height, width, channels) of the images it reconstructs.
    dtype: the computation dtype; parameters stay float32.
  """

  architecture: str = "mlp"
  latent_dim: int = 32
  hidden: Sequence[int] = (256, 128)
  activation: str = "relu"
  latent_activation: str = "linear"
  image_shape: Sequence[int] = (28, 28, 1)
  dtype: Any = jnp.float32

  def setup(self):
    _check(self.latent_dim, self.architecture, self.hidden, self.image_shape)
    self._latent_act = _activation(self.latent_activation, "latent_activation")
    self.encoder, self.decoder = _encoder_decoder(self, self.latent_dim)

  def encode(self, x: jnp.ndarray) -> jnp.ndarray:
    """x: [batch, height, width, channels] float -> code [batch, latent_dim]."""
    return self._latent_act(self.encoder(x))

  def decode(self, code: jnp.ndarray) -> jnp.ndarray:
    """code: [batch, latent_dim] -> logits [batch, height, width, channels]."""
    return self.decoder(code)

  def __call__(self, x: jnp.ndarray, *, train: bool = False):
    """x: [batch, height, width, channels] float. Returns (logits like x, {"code": [batch, latent]})."""
    del train  # no dropout or normalisation: the same function in training and evaluation
    code = self.encode(x)
    return self.decode(code), {"code": code}


class VariationalAutoencoder(nn.Module):
  """The VAE: q(z|x) = N(mean, diag(exp(logvar))) from the encoder, p(x|z) from the decoder.

  In training (or with `sample=True`) the code is one reparameterised sample z = mean + std * eps,
  eps from the "latent" rng stream (`rngs={"latent": rng}`); otherwise it is the mean.
  Attributes as `Autoencoder`'s, without latent_activation.
  """

  architecture: str = "mlp"
  latent_dim: int = 50
  hidden: Sequence[int] = (200, 200)
  activation: str = "tanh"
  image_shape: Sequence[int] = (28, 28, 1)
  dtype: Any = jnp.float32

  def setup(self):
    _check(self.latent_dim, self.architecture, self.hidden, self.image_shape)
    self.encoder, self.decoder = _encoder_decoder(self, 2 * self.latent_dim)

  def encode(self, x: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """x: [batch, height, width, channels] -> (mean, logvar), each [batch, latent_dim] float32."""
    stats = self.encoder(x).astype(jnp.float32)
    return stats[:, : self.latent_dim], stats[:, self.latent_dim :]

  def decode(self, z: jnp.ndarray) -> jnp.ndarray:
    """z: [batch, latent_dim] -> logits [batch, height, width, channels]."""
    return self.decoder(z)

  def __call__(self, x: jnp.ndarray, *, train: bool = False, sample: bool | None = None):
    """x: [batch, height, width, channels]. Returns (logits like x, {"code", "mean", "logvar"})."""
    mean, logvar = self.encode(x)
    if train if sample is None else sample:
      z = likelihood.reparameterize(self.make_rng("latent"), mean, logvar)
    else:
      z = mean
    return self.decode(z), {"code": z, "mean": mean, "logvar": logvar}


# The convolutional variants default to two stride-2 layers of 32 and 64 channels (28 -> 14 -> 7).
_CONV = {"architecture": "conv", "hidden": (32, 64)}
register("ae_mlp")(Autoencoder)
register("ae_conv")(functools.partial(Autoencoder, **_CONV))
register("sae_mlp")(functools.partial(Autoencoder, latent_activation="sigmoid"))
register("sae_conv")(functools.partial(Autoencoder, latent_activation="sigmoid", **_CONV))
register("vae_mlp")(VariationalAutoencoder)
register("vae_conv")(functools.partial(VariationalAutoencoder, activation="relu", **_CONV))
