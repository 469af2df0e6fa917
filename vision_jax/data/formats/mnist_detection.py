"""Digits to find: canvases of real MNIST digits at random scales and places, a detection
workload that trains on a CPU.

    mnist_detection:mnist     # the IDX files of $VISION_JAX_DATASETS/mnist (see formats/idx.py)

Each canvas is `canvas_size` x `canvas_size` grey, black, holding `min_digits` to `max_digits`
digits, each an MNIST digit resized (bilinear) to a square of `min_scale` to `max_scale` pixels
and drawn at a random place (where digits meet, the brighter pixel wins). A digit whose ink box
would overlap an earlier one's by an IoU above `max_overlap` is placed again, up to 20 tries,
then left out: a canvas may hold fewer digits than drawn, never a hidden one. The label is the
digit (10 classes, "0" to "9"); the box is the digit's tight ink box, every pixel it inked
(x1, y1 exclusive: `DatasetSpec.features`).

The train canvases use only MNIST's training digits and the test canvases only its test digits,
so no digit is seen in both. Everything is drawn from `seed` and the split, so a preparation is
the same on every machine. `train_size` and `test_size` canvases (10,000 and 1,000 by default).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterator

import numpy as np
from PIL import Image

from vision_jax.data.formats.base import DatasetSpec, LocalFormat, register_format
from vision_jax.data.formats.idx import _read_split
from vision_jax.errors import DatasetError

SPLITS = ("train", "test")
_TRIES = 20


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
  """IoU of one box [4] with others [k, 4] (x0, y0, x1, y1): [k]."""
  lo, hi = np.maximum(box[:2], others[:, :2]), np.minimum(box[2:], others[:, 2:])
  inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
  area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
  return inter / (area(box) + area(others) - inter)


@register_format
@dataclasses.dataclass(frozen=True)
class MnistDetectionFormat(LocalFormat):
  """Options (`config.data.format_options`): train_size, test_size (canvases), canvas_size,
  min_digits, max_digits, min_scale, max_scale (pixels of a digit's square), max_overlap (IoU
  between ink boxes), seed."""

  name = "mnist_detection"
  train_size: int = 10_000
  test_size: int = 1_000
  canvas_size: int = 128
  min_digits: int = 1
  max_digits: int = 6
  min_scale: int = 14
  max_scale: int = 40
  max_overlap: float = 0.2
  seed: int = 0

  def __post_init__(self):
    for field in ("train_size", "test_size", "canvas_size", "min_scale", "max_scale", "seed"):
      value = getattr(self, field)
      low = 0 if field == "seed" else 1
      if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise DatasetError(f"mnist_detection: {field} must be an int >= {low}, got {value!r}")
    if not 0 <= self.min_digits <= self.max_digits:
      raise DatasetError(
        f"mnist_detection: expected 0 <= min_digits <= max_digits, got {self.min_digits} and "
        f"{self.max_digits}"
      )
    if not 1 <= self.min_scale <= self.max_scale <= self.canvas_size:
      raise DatasetError(
        f"mnist_detection: expected 1 <= min_scale <= max_scale <= canvas_size, got "
        f"{self.min_scale}, {self.max_scale} and {self.canvas_size}"
      )
    if not 0 <= self.max_overlap <= 1:
      raise DatasetError(f"mnist_detection: max_overlap must be in [0, 1], got {self.max_overlap}")

  def spec(self, root: str) -> DatasetSpec:
    if not os.path.isdir(root):
      raise DatasetError(
        f"{root}: not a folder; expected MNIST's IDX files (train-images-idx3-ubyte.gz, ...)"
      )
    return DatasetSpec(
      image_shape=(self.canvas_size, self.canvas_size, 1),
      class_names=tuple(str(i) for i in range(10)),
      splits=SPLITS,
      task="detection",
    )

  def examples(self, root: str, split: str) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    digits, labels, _, labels_path = _read_split(root, split)
    if digits.shape[-1] != 1 or labels.max() > 9 or labels.min() < 0:
      raise DatasetError(
        f"{labels_path}: expected MNIST, grey digits labelled 0-9; got images of "
        f"{digits.shape[1:]} and labels {int(labels.min())}-{int(labels.max())}"
      )
    rng = np.random.default_rng([self.seed, SPLITS.index(split)])
    size = self.canvas_size
    for i in range(self.train_size if split == "train" else self.test_size):
      canvas = np.zeros((size, size), np.uint8)
      boxes: list[np.ndarray] = []
      classes: list[int] = []
      for _ in range(rng.integers(self.min_digits, self.max_digits + 1)):
        d = int(rng.integers(len(digits)))
        scale = int(rng.integers(self.min_scale, self.max_scale + 1))
        glyph = np.asarray(
          Image.fromarray(digits[d, :, :, 0]).resize((scale, scale), Image.BILINEAR)
        )
        rows, cols = np.flatnonzero(glyph.any(1)), np.flatnonzero(glyph.any(0))
        if not rows.size:
          continue  # a blank digit has nothing to find
        ink = np.asarray([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float32)
        for _ in range(_TRIES):
          x, y = rng.integers(0, size - scale + 1, 2)
          box = ink + np.asarray([x, y, x, y], np.float32)
          if not boxes or _iou(box, np.stack(boxes)).max() <= self.max_overlap:
            region = canvas[y : y + scale, x : x + scale]
            np.maximum(region, glyph, out=region)
            boxes.append(box)
            classes.append(int(labels[d]))
            break
      yield (
        f"{split}-{i:06d}",
        {
          "image": canvas[..., None],
          "boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
          "labels": np.asarray(classes, np.int32),
          "_source": f"{labels_path} canvas {i}",
        },
      )
