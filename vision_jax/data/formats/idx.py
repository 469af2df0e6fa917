"""IDX files (LeCun's format): MNIST, Fashion-MNIST, KMNIST and any dataset stored the same way.

A root folder holds `<prefix>-images-idx3-ubyte[.gz]` and `<prefix>-labels-idx1-ubyte[.gz]` per
split, with the prefix `train` for the train split and `t10k` or `test` for the test split.
All splits must hold images of one size, and labels in the one class range (see `IdxFormat`).
"""

from __future__ import annotations

import dataclasses
import gzip
import os
from typing import Iterator

import numpy as np

from vision_jax.data.formats.base import DatasetSpec, LocalFormat, register_format
from vision_jax.errors import DatasetError

_SPLIT_PREFIXES = {"train": ("train",), "test": ("t10k", "test")}
_DTYPES = {
  0x08: np.uint8,
  0x09: np.int8,
  0x0B: np.dtype(">i2"),
  0x0C: np.dtype(">i4"),
  0x0D: np.dtype(">f4"),
  0x0E: np.dtype(">f8"),
}


def read_idx(path: str) -> np.ndarray:
  """Reads one IDX file (optionally gzipped) into an array, checking its header against its size."""
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      data = f.read()
  except (OSError, EOFError) as e:
    raise DatasetError(f"{path}: cannot read an IDX file ({e})") from None
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
    raise DatasetError(
      f"{path}: not an IDX file: expected a magic number 0x0000<type><ndim> "
      f"with type in {sorted(hex(t) for t in _DTYPES)}, got {data[:4].hex()}"
    )
  dtype, ndim = np.dtype(_DTYPES[data[2]]), data[3]
  header = 4 + 4 * ndim
  shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
  expected = header + int(np.prod(shape)) * dtype.itemsize
  if len(data) != expected:
    raise DatasetError(
      f"{path}: IDX header says shape {shape} ({expected} bytes), "
      f"but the file has {len(data)} bytes (truncated or corrupt)"
    )
  return np.frombuffer(data, dtype, offset=header).reshape(shape)


def _find(root: str, split: str, kind: str) -> str:
  for prefix in _SPLIT_PREFIXES[split]:
    for ndim in ("3", "1"):
      for suffix in ("", ".gz"):
        path = os.path.join(root, f"{prefix}-{kind}-idx{ndim}-ubyte{suffix}")
        if os.path.exists(path):
          return path
  raise DatasetError(
    f"{root}: no {split} {kind} IDX file: expected "
    f"{_SPLIT_PREFIXES[split][0]}-{kind}-idx{'3' if kind == 'images' else '1'}-ubyte[.gz]"
  )


def _read_split(root: str, split: str) -> tuple[np.ndarray, np.ndarray, str, str]:
  """(images uint8 [n, h, w, c], labels [n], images path, labels path) of `split`, each file
  checked to hold what its name says: images of 2 or 3 dimensions each, one integer label each."""
  images_path, labels_path = _find(root, split, "images"), _find(root, split, "labels")
  images, labels = read_idx(images_path), read_idx(labels_path)
  if images.ndim not in (3, 4) or images.dtype != np.uint8:
    raise DatasetError(
      f"{images_path}: expected images, uint8 [count, height, width] or [count, height, width, "
      f"channels], got {images.dtype} {list(images.shape)}"
    )
  if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
    raise DatasetError(
      f"{labels_path}: expected labels, integers [count] (one per image), got "
      f"{labels.dtype} {list(labels.shape)}"
    )
  if len(images) != len(labels):
    raise DatasetError(
      f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels"
    )
  if not len(images):
    raise DatasetError(f"{images_path}: no images (count 0 in its header)")
  return (images[..., None] if images.ndim == 3 else images), labels, images_path, labels_path


@register_format
@dataclasses.dataclass(frozen=True)
class IdxFormat(LocalFormat):
  """Option (`config.data.format_options`): num_classes, the number of classes (labels 0 to
  num_classes - 1). IDX files declare no classes; by default (0) they are 0..K-1 for the largest
  training label K-1, and every one of them must have training examples, so that a stray label
  (a 12 among MNIST's 0..9) is refused rather than taken for classes 10 to 12. A dataset whose
  classes are not all in its training labels (EMNIST letters: 1..26) declares the count. Labels
  of every split must lie in the classes."""

  name = "idx"
  num_classes: int = 0

  def __post_init__(self):
    if not isinstance(self.num_classes, int) or isinstance(self.num_classes, bool):
      raise DatasetError(f"idx: num_classes must be an int, got {self.num_classes!r}")
    if self.num_classes == 1 or self.num_classes < 0:
      raise DatasetError(
        f"idx: num_classes must be 2 or more (or 0: from the training labels), got "
        f"{self.num_classes}"
      )

  def options(self) -> dict:
    # The default prepares what the format prepared before it had options: the same cache key.
    return {"num_classes": self.num_classes} if self.num_classes else {}

  def spec(self, root: str) -> DatasetSpec:
    if not os.path.isdir(root):
      raise DatasetError(
        f"{root}: not a folder; expected a folder of IDX files (train-images-idx3-ubyte.gz, ...)"
      )
    splits = tuple(
      s
      for s in _SPLIT_PREFIXES
      if any(
        os.path.exists(os.path.join(root, f"{p}-images-idx3-ubyte{z}"))
        for p in _SPLIT_PREFIXES[s]
        for z in ("", ".gz")
      )
    )
    if "train" not in splits:
      _find(root, "train", "images")  # raises with the expected name
    # Every split is read here, before preparation starts: the files must agree with each other.
    images, labels, images_path, labels_path = _read_split(root, "train")
    num_classes = self.num_classes or _classes_of(labels, labels_path)
    for split in splits:
      if split != "train":
        other, labels, other_path, labels_path = _read_split(root, split)
        if other.shape[1:] != images.shape[1:]:
          raise DatasetError(
            f"{other_path}: {split} images of shape {other.shape[1:]}, but the train images "
            f"({images_path}) are {images.shape[1:]}; every split needs images of one size"
          )
      outside = np.flatnonzero((labels < 0) | (labels >= num_classes))
      if outside.size:
        i = int(outside[0])
        raise DatasetError(
          f"{labels_path}: label {int(labels[i])} at index {i} (split {split!r}"
          + (f", and {outside.size - 1} more" if outside.size > 1 else "")
          + f") is outside the class range [0, {num_classes}) "
          + (
            "that format_options.num_classes declares"
            if self.num_classes
            else "of the training labels"
          )
        )
    return DatasetSpec(
      image_shape=images.shape[1:],
      class_names=tuple(str(i) for i in range(num_classes)),
      splits=splits,
    )

  def examples(self, root: str, split: str) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    images, labels, _, labels_path = _read_split(root, split)
    for i in range(len(images)):
      yield (
        f"{split}-{i:07d}",
        {"image": images[i], "label": int(labels[i]), "_source": f"{labels_path} index {i}"},
      )


def _classes_of(labels: np.ndarray, path: str) -> int:
  """The class count that training `labels` imply: K for labels 0..K-1, each of them present."""
  if labels.min() < 0:
    i = int(np.argmin(labels))
    raise DatasetError(f"{path}: label {int(labels[i])} at index {i} is negative")
  counts = np.bincount(labels.astype(np.int64))
  missing = np.flatnonzero(counts == 0)
  if missing.size:
    first = int(missing[0])
    i = int(np.flatnonzero(labels > first)[0])
    raise DatasetError(
      f"{path}: label {int(labels[i])} at index {i} (split 'train') leaves "
      f"{_some(missing.tolist())} without a training example; the classes are 0..K-1, each in "
      f"the training labels. Correct the label, or declare the class count K in the config: "
      f"data.format_options = {{'num_classes': K}} (K >= {len(counts)})"
    )
  if len(counts) < 2:
    raise DatasetError(
      f"{path}: every training label is {int(labels[0])}; a classifier needs two classes or more"
    )
  return len(counts)


def _some(values: list[int], shown: int = 5) -> str:
  """'label 10', 'labels 10, 11' or 'labels 10, 11, ... (7 in all)'."""
  head = ", ".join(map(str, values[:shown]))
  return (
    f"label {head}"
    if len(values) == 1
    else f"labels {head}" + (f", ... ({len(values)} in all)" if len(values) > shown else "")
  )
