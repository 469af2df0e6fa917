"""Preprocessing and augmentation on the device, batched, as pure jax functions.

Images arrive as uint8 [batch, height, width, channels]; these run inside the jitted step, so
augmentation never waits for the host. Randomness comes from the step's rng.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from vision_jax.errors import ConfigError

Batch = dict[str, jnp.ndarray]


def to_float(images: jnp.ndarray, mean: Sequence[float], std: Sequence[float]) -> jnp.ndarray:
  """uint8 [b, h, w, c] -> float32, scaled to [0, 1] then standardised per channel."""
  channels = images.shape[-1]
  if len(mean) not in (1, channels) or len(std) not in (1, channels):
    raise ConfigError(
      f"data.mean and data.std need one value per channel ({channels}) or one for all, "
      f"got {tuple(mean)} and {tuple(std)}"
    )
  x = images.astype(jnp.float32) / 255.0
  return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def pad_to(images: jnp.ndarray, size: int) -> jnp.ndarray:
  """Zero-pads [b, h, w, c] symmetrically to [b, size, size, c] (MNIST's 28 -> LeNet-5's 32)."""
  h, w = images.shape[1:3]
  if h > size or w > size:
    raise ConfigError(f"data.pad_to {size}: cannot pad images of {h}x{w} to {size}x{size}")
  top, left = (size - h) // 2, (size - w) // 2
  return jnp.pad(images, ((0, 0), (top, size - h - top), (left, size - w - left), (0, 0)))


def random_crop(rng: jax.Array, images: jnp.ndarray, padding: int) -> jnp.ndarray:
  """Pads by `padding` zeros on each side, then crops each image back at a random offset."""
  b, h, w, c = images.shape
  padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  offsets = jax.random.randint(rng, (b, 2), 0, 2 * padding + 1)
  crop = lambda img, o: jax.lax.dynamic_slice(img, (o[0], o[1], 0), (h, w, c))
  return jax.vmap(crop)(padded, offsets)


def random_flip(rng: jax.Array, images: jnp.ndarray) -> jnp.ndarray:
  """Flips each image left-right with probability 1/2."""
  flip = jax.random.bernoulli(rng, 0.5, (images.shape[0], 1, 1, 1))
  return jnp.where(flip, images[:, :, ::-1], images)


def random_shift(rng: jax.Array, images: jnp.ndarray, pixels: int) -> jnp.ndarray:
  """Shifts each image by up to `pixels` in each direction, filling with zeros."""
  return random_crop(rng, images, pixels)


def gaussian_noise(rng: jax.Array, images: jnp.ndarray, std: float) -> jnp.ndarray:
  """Adds N(0, std^2) noise to float images."""
  return images + std * jax.random.normal(rng, images.shape, images.dtype)


def random_brightness(rng: jax.Array, images: jnp.ndarray, max_delta: float) -> jnp.ndarray:
  """Adds one offset drawn from U[-max_delta, max_delta] to each image (float, in [0, 1] units)."""
  delta = jax.random.uniform(rng, (images.shape[0], 1, 1, 1), images.dtype, -max_delta, max_delta)
  return images + delta


def shift(images: jnp.ndarray, dy: int, dx: int) -> jnp.ndarray:
  """Shifts every image by (dy, dx) pixels, filling with zeros (the lecture's shifted test set)."""
  out = jnp.roll(images, (dy, dx), axis=(1, 2))
  h, w = images.shape[1:3]
  rows = jnp.arange(h)[:, None] - dy
  cols = jnp.arange(w)[None, :] - dx
  valid = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
  return jnp.where(valid[None, :, :, None], out, jnp.zeros_like(out))


def make_preprocess(
  data: ml_collections.ConfigDict,
) -> tuple[Callable[[Batch, jax.Array], Batch], Callable[[Batch], Batch]]:
  """The train (augmenting) and eval preprocessing functions for a `config.data`.

  Reads: `pad_to` (0 = off), `mean`, `std`, `augment.crop_padding` (0 = off),
  `augment.flip`, `augment.noise_std` (0 = off), `augment.brightness` (0 or absent = off).
  """
  aug = data.augment

  def common(images: jnp.ndarray) -> jnp.ndarray:
    if data.pad_to:
      images = pad_to(images, data.pad_to)
    return images

  def train_fn(batch: Batch, rng: jax.Array) -> Batch:
    images = common(batch["image"])
    crop_rng, flip_rng, noise_rng = jax.random.split(rng, 3)
    if aug.crop_padding:
      images = random_crop(crop_rng, images, aug.crop_padding)
    if aug.flip:
      images = random_flip(flip_rng, images)
    if aug.get("brightness", 0.0):
      # Its own stream (fold_in, not a 4th split), so the other augmentations draw as before.
      brightness_rng = jax.random.fold_in(rng, 3)
      images = (
        random_brightness(brightness_rng, images.astype(jnp.float32) / 255.0, aug.brightness)
        * 255.0
      )
    images = to_float(images, data.mean, data.std)
    if aug.noise_std:
      images = gaussian_noise(noise_rng, images, aug.noise_std)
    return {**batch, "image": images}

  def eval_fn(batch: Batch) -> Batch:
    return {**batch, "image": to_float(common(batch["image"]), data.mean, data.std)}

  return train_fn, eval_fn
