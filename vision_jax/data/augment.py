"""Preprocessing and augmentation on the device, batched, as pure jax functions.

Images arrive as uint8 [batch, height, width, channels]; these run inside the jitted step, so
augmentation never waits for the host. Randomness comes from the step's rng.

A detection batch's boxes (float32 [batch, max_boxes, 4], pixels x0, y0, x1, y1) and box_mask
(bool [batch, max_boxes]) move with their images: padding offsets them, a flip mirrors them, a
scale-and-crop scales them, clips them to the picture and drops (mask False, box zeroed) those
of which less than `min_visible` of the area remains. Photometric jitter touches the image only.
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


def flip_boxes(boxes: jnp.ndarray, width: int) -> jnp.ndarray:
  """Boxes [..., 4] (x0, y0, x1, y1) of an image `width` wide, mirrored left-right with it."""
  x0, y0, x1, y1 = jnp.moveaxis(boxes, -1, 0)
  return jnp.stack([width - x1, y0, width - x0, y1], axis=-1)


def random_flip_with_boxes(
  rng: jax.Array, images: jnp.ndarray, boxes: jnp.ndarray
) -> tuple[jnp.ndarray, jnp.ndarray]:
  """`random_flip` (the same draws for the same rng) of images [b, h, w, c] and their boxes
  [b, n, 4]."""
  flip = jax.random.bernoulli(rng, 0.5, (images.shape[0], 1, 1, 1))
  flipped = flip_boxes(boxes, images.shape[2])
  return jnp.where(flip, images[:, :, ::-1], images), jnp.where(flip[:, :, 0], flipped, boxes)


def random_scale_crop(
  rng: jax.Array,
  images: jnp.ndarray,
  boxes: jnp.ndarray,
  box_mask: jnp.ndarray,
  scale_range: Sequence[float],
  min_visible: float,
) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
  """Zooms each image by a factor from U[scale_range] about a random place, keeping its size.

  A factor above 1 crops a window of (h, w) / factor and enlarges it; below 1 shrinks the whole
  image into a random place of a black (h, w) picture. Resampled bilinearly, antialiased when
  shrinking. Boxes [b, n, 4] are scaled and moved with the pixels, then clipped to the picture;
  a box keeps its place in `box_mask` [b, n] only if at least `min_visible` of its area remains.
  Returns (float32 images [b, h, w, c] in the input's units, boxes, box_mask).
  """
  b, h, w, _ = images.shape
  scale_rng, place_rng = jax.random.split(rng)
  scale = jax.random.uniform(scale_rng, (b,), jnp.float32, scale_range[0], scale_range[1])
  place = jax.random.uniform(place_rng, (b, 2), jnp.float32)
  size = jnp.asarray([h, w], jnp.float32)
  # The window's corner, in input pixels: inside the image when zooming in, around it when out.
  corner = place * (size - size / scale[:, None])
  translation = -corner * scale[:, None]

  def zoom(image, s, t):
    return jax.image.scale_and_translate(
      image.astype(jnp.float32), image.shape, (0, 1), jnp.stack([s, s]), t, "linear"
    )

  out = jax.vmap(zoom)(images, scale, translation)
  shift = jnp.stack([translation[:, 1], translation[:, 0]] * 2, axis=-1)[:, None, :]
  moved = boxes * scale[:, None, None] + shift
  clipped = jnp.clip(moved, 0.0, jnp.asarray([w, h, w, h], jnp.float32))
  area = lambda x: jnp.maximum(x[..., 2] - x[..., 0], 0) * jnp.maximum(x[..., 3] - x[..., 1], 0)
  whole = area(moved)
  visible = jnp.where(whole > 0, area(clipped) / jnp.where(whole > 0, whole, 1.0), 0.0)
  keep = box_mask & (visible >= min_visible) & (area(clipped) > 0)
  return out, jnp.where(keep[..., None], clipped, 0.0), keep


def random_contrast(rng: jax.Array, images: jnp.ndarray, max_delta: float) -> jnp.ndarray:
  """Scales each image's deviation from its mean by a factor from U[1 - max_delta, 1 + max_delta]
  (float images)."""
  factor = jax.random.uniform(
    rng, (images.shape[0], 1, 1, 1), images.dtype, 1 - max_delta, 1 + max_delta
  )
  mean = images.mean(axis=(1, 2, 3), keepdims=True)
  return (images - mean) * factor + mean


def random_saturation(rng: jax.Array, images: jnp.ndarray, max_delta: float) -> jnp.ndarray:
  """Scales each pixel's deviation from its grey (the channels' mean) by a factor from
  U[1 - max_delta, 1 + max_delta] per image (float images; grey images are left as they are)."""
  factor = jax.random.uniform(
    rng, (images.shape[0], 1, 1, 1), images.dtype, 1 - max_delta, 1 + max_delta
  )
  grey = images.mean(axis=-1, keepdims=True)
  return (images - grey) * factor + grey


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
  `augment.flip`, `augment.noise_std` (0 = off), and where present (absent = off):
  `augment.brightness`, `augment.contrast`, `augment.saturation` (max deltas, in [0, 1] units),
  `augment.scale_range` ((low, high) zoom factors, e.g. (0.5, 2.0)) with `augment.min_visible`
  (default 0.5). A batch with "boxes" and "box_mask" has them moved with its images.
  """
  aug = data.augment
  scale_range = tuple(aug.get("scale_range", ()) or ())
  if scale_range and not (len(scale_range) == 2 and 0 < scale_range[0] <= scale_range[1]):
    raise ConfigError(
      f"data.augment.scale_range must be (low, high) with 0 < low <= high, got {scale_range}"
    )

  def common(batch: Batch) -> Batch:
    images = batch["image"]
    if data.pad_to:
      h, w = images.shape[1:3]
      images = pad_to(images, data.pad_to)
      if "boxes" in batch:
        top, left = (data.pad_to - h) // 2, (data.pad_to - w) // 2
        offset = jnp.asarray([left, top, left, top], jnp.float32)
        batch = {
          **batch,
          "boxes": jnp.where(batch["box_mask"][..., None], batch["boxes"] + offset, 0.0),
        }
    return {**batch, "image": images}

  def train_fn(batch: Batch, rng: jax.Array) -> Batch:
    batch = common(batch)
    images, has_boxes = batch["image"], "boxes" in batch
    crop_rng, flip_rng, noise_rng = jax.random.split(rng, 3)
    if aug.crop_padding:
      if has_boxes:
        raise ConfigError(
          "data.augment.crop_padding does not move boxes; for detection use "
          "data.augment.scale_range"
        )
      images = random_crop(crop_rng, images, aug.crop_padding)
    if scale_range:
      # Each augmentation added later draws from its own stream (fold_in, not another split), so
      # that those before it draw as they did.
      images, boxes, box_mask = random_scale_crop(
        jax.random.fold_in(rng, 6),
        images,
        batch.get("boxes", jnp.zeros((images.shape[0], 0, 4))),
        batch.get("box_mask", jnp.zeros((images.shape[0], 0), bool)),
        scale_range,
        aug.get("min_visible", 0.5),
      )
      if has_boxes:
        batch = {**batch, "boxes": boxes, "box_mask": box_mask}
    if aug.flip:
      if has_boxes:
        images, boxes = random_flip_with_boxes(flip_rng, images, batch["boxes"])
        batch = {**batch, "boxes": jnp.where(batch["box_mask"][..., None], boxes, 0.0)}
      else:
        images = random_flip(flip_rng, images)
    photometric = [
      (3, random_brightness, aug.get("brightness", 0.0)),
      (4, random_contrast, aug.get("contrast", 0.0)),
      (5, random_saturation, aug.get("saturation", 0.0)),
    ]
    for stream, jitter, max_delta in photometric:
      if max_delta:
        images = (
          jitter(jax.random.fold_in(rng, stream), images.astype(jnp.float32) / 255.0, max_delta)
          * 255.0
        )
    images = to_float(images, data.mean, data.std)
    if aug.noise_std:
      images = gaussian_noise(noise_rng, images, aug.noise_std)
    return {**batch, "image": images}

  def eval_fn(batch: Batch) -> Batch:
    batch = common(batch)
    return {**batch, "image": to_float(batch["image"], data.mean, data.std)}

  return train_fn, eval_fn
