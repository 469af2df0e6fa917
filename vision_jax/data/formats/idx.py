"""IDX files (LeCun's format): MNIST, Fashion-MNIST, KMNIST and any dataset stored the same way.

A root folder holds `<prefix>-images-idx3-ubyte[.gz]` and `<prefix>-labels-idx1-ubyte[.gz]` per
split, with the prefix `train` for the train split and `t10k` or `test` for the test split.
"""

from __future__ import annotations

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


@register_format
class IdxFormat(LocalFormat):
  name = "idx"

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
    images = read_idx(_find(root, "train", "images"))
    labels = read_idx(_find(root, "train", "labels"))
    num_classes = int(labels.max()) + 1
    shape = images.shape[1:] + ((1,) if images.ndim == 3 else ())
    return DatasetSpec(
      image_shape=shape, class_names=tuple(str(i) for i in range(num_classes)), splits=splits
    )

  def examples(self, root: str, split: str) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    images_path, labels_path = _find(root, split, "images"), _find(root, split, "labels")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8:
      raise DatasetError(f"{images_path}: expected uint8 images, got {images.dtype}")
    if len(images) != len(labels):
      raise DatasetError(
        f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels"
      )
    if images.ndim == 3:
      images = images[..., None]
    for i in range(len(images)):
      yield (
        f"{split}-{i:07d}",
        {"image": images[i], "label": int(labels[i]), "_source": labels_path},
      )
