"""The interface every local format implements."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from typing import Iterator

import numpy as np
from PIL import Image

from vision_jax.errors import DatasetError

TASKS = ("classification", "detection")
# The per-box features a detection format may add to `boxes` and `labels`, with their dtypes.
BOX_FEATURES = {"difficult": np.bool_, "crowd": np.bool_, "area": np.float32}
DETECTION_RESIZES = ("stretch", "letterbox")


def check_image_options(
  format_name: str, image_size, resize: str, resizes=DETECTION_RESIZES
) -> None:
  """One DatasetError for a format's `image_size` that is not a positive int, or a `resize` that
  is not one of `resizes`: the options every resizing format takes."""
  if not isinstance(image_size, int) or image_size < 1:
    raise DatasetError(f"{format_name}: image_size must be a positive int, got {image_size!r}")
  if resize not in resizes:
    raise DatasetError(f"{format_name}: resize must be one of {', '.join(resizes)}, got {resize!r}")


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """What a prepared dataset holds.

  Attributes:
    image_shape: (height, width, channels) of every image; None for a varying dimension.
    class_names: the label names, index = label.
    splits: the split names.
    task: "classification": examples {"image", "label"}; "detection": examples {"image",
      "boxes", "labels"} and `box_features`, one row per object (see `features`).
    box_features: a detection dataset's per-box features besides boxes and labels, from
      BOX_FEATURES (e.g. VOC's "difficult", COCO's "crowd" and "area").
    class_ids: the source's own id of each class, index = label (COCO's category ids, which
      skip numbers: `metrics.detection.coco_results(..., category_ids=spec.class_ids)` maps
      labels back); () where the labels are the ids.
  """

  image_shape: tuple
  class_names: tuple[str, ...]
  splits: tuple[str, ...]
  task: str = "classification"
  box_features: tuple[str, ...] = ()
  class_ids: tuple[int, ...] = ()

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def features(self) -> dict[str, tuple[tuple, np.dtype]]:
    """name -> (shape, dtype) of a prepared example; None for a varying dimension.

    Detection: image uint8 [h, w, c]; boxes float32 [n, 4], pixels x0, y0, x1, y1 in the stored
    image (x1, y1 exclusive edges: a box of one pixel at column 3 is 3.0 to 4.0); labels int32
    [n]; each box feature [n]. n varies (0: an image without objects, a negative example); the
    pipeline pads them to `data.max_boxes` with a `box_mask` (pipeline.Split.read).
    """
    features = {"image": (tuple(self.image_shape), np.dtype(np.uint8))}
    if self.task == "classification":
      return {**features, "label": ((), np.dtype(np.int64))}
    features["boxes"] = ((None, 4), np.dtype(np.float32))
    features["labels"] = ((None,), np.dtype(np.int32))
    for name in self.box_features:
      features[name] = ((None,), np.dtype(BOX_FEATURES[name]))
    return features

  @classmethod
  def from_dict(cls, d: dict) -> "DatasetSpec":
    """The spec saved as `dataclasses.asdict` JSON (specs saved before `task` read as
    classification)."""
    return cls(
      image_shape=tuple(d["image_shape"]),
      class_names=tuple(d["class_names"]),
      splits=tuple(d["splits"]),
      task=d.get("task", "classification"),
      box_features=tuple(d.get("box_features", ())),
      class_ids=tuple(d.get("class_ids", ())),
    )


def resized_extent(width: int, height: int, size: int, resize: str) -> tuple[int, int, int, int]:
  """(new width, new height, left, top): where `resize_with_boxes` puts a `width` x `height`
  picture in the `size` x `size` image. An area scales by new width * new height / (width *
  height)."""
  if resize == "stretch":
    return size, size, 0, 0
  scale = size / max(width, height)
  new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
  return new_w, new_h, (size - new_w) // 2, (size - new_h) // 2


def resize_with_boxes(
  image: Image.Image, boxes: np.ndarray, size: int, resize: str, resample: int = Image.BILINEAR
) -> tuple[np.ndarray, np.ndarray]:
  """`image` as `size` x `size` and its boxes [n, 4] (x0, y0, x1, y1 pixels) moved with it.

  "stretch" scales each axis on its own; "letterbox" scales both by size / longer side and pads
  the shorter one with zeros, the picture centred. Pixel edges map exactly: an edge at x maps to
  x * new_width / width (+ the letterbox offset), as PIL's resize maps them.
  Returns (uint8 [size, size, c], float32 [n, 4]).
  """
  w, h = image.size
  new_w, new_h, left, top = resized_extent(w, h, size, resize)
  pixels = np.asarray(image.resize((new_w, new_h), resample))
  if pixels.ndim == 2:
    pixels = pixels[..., None]
  out = np.zeros((size, size, pixels.shape[-1]), np.uint8)
  out[top : top + new_h, left : left + new_w] = pixels
  factor = np.asarray([new_w / w, new_h / h, new_w / w, new_h / h], np.float32)
  offset = np.asarray([left, top, left, top], np.float32)
  moved = np.asarray(boxes, np.float32).reshape(-1, 4) * factor + offset
  # An edge on the image's border stays on it, not a rounding error beyond.
  return out, np.clip(moved, 0, size).astype(np.float32)


def check_boxes(boxes: np.ndarray, width: int, height: int, where: str) -> np.ndarray:
  """`boxes` [n, 4] (x0, y0, x1, y1 pixels of an image `width` x `height`) as float32, checked.

  A box reaching outside the image is clipped to it, with a warning naming the file and the
  count (annotation tools often draw a pixel past the edge); a box of no area, after clipping,
  is refused as a DatasetError naming the file: it is a mistake, not an object.
  """
  boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
  limits = np.asarray([width, height, width, height], np.float32)
  clipped = np.clip(boxes, 0, limits)
  outside = int(np.any(clipped != boxes, axis=1).sum())
  if outside:
    logging.warning(
      "%s: %d %s outside the %dx%d image; clipped to it",
      where,
      outside,
      "box reaches" if outside == 1 else "boxes reach",
      width,
      height,
    )
  empty = np.flatnonzero((clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1]))
  if empty.size:
    i = int(empty[0])
    raise DatasetError(
      f"{where}: box {i} ({', '.join(f'{v:g}' for v in boxes[i])}, as x0, y0, x1, y1) has no "
      f"area inside the {width}x{height} image; expected x0 < x1 and y0 < y1"
    )
  return clipped


class LocalFormat:
  """A format of files on disk. Subclasses implement `spec` and `examples`.

  `root` is the path the user named: a file or folder. Errors name the offending file and what
  was expected, as `DatasetError`. A format with preparation options (an image size, say) is a
  dataclass whose fields are the options, set from `config.data.format_options`; they are part
  of the fingerprint, so each setting is prepared and cached on its own.
  """

  name: str = ""
  version: str = "1.0.0"  # bump when the prepared output of this format changes

  def spec(self, root: str) -> DatasetSpec:
    raise NotImplementedError

  def examples(self, root: str, split: str) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """Yields (unique key, example) for `split`: {"image": uint8 [h, w, c], "label": int} for
    classification, the arrays of `DatasetSpec.features` for detection. An optional "_source"
    entry names the file in errors."""
    raise NotImplementedError

  def fingerprint(self, root: str) -> str:
    """Identifies the input files (paths, sizes, modification times) for the cache's name."""
    h = hashlib.sha256(f"{self.name}-{self.version}".encode())
    if self.options():
      h.update(repr(sorted(self.options().items())).encode())
    paths = (
      [root]
      if os.path.isfile(root)
      else sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)
    )
    for p in paths:
      st = os.stat(p)
      h.update(f"{os.path.relpath(p, root)}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:12]

  def options(self) -> dict:
    """The preparation options this instance was made with (a dataclass format's fields)."""
    return dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}


_FORMATS: dict[str, type[LocalFormat]] = {}


def register_format(cls: type[LocalFormat]) -> type[LocalFormat]:
  _FORMATS[cls.name] = cls
  return cls


def get_format(name: str, **options) -> LocalFormat:
  """The format registered as `name`, made with its preparation `options`."""
  if name not in _FORMATS:
    raise DatasetError(
      f"unknown dataset format {name!r}; known formats: {', '.join(sorted(_FORMATS))} "
      "(or tfds:<name> for a TFDS dataset)"
    )
  cls = _FORMATS[name]
  valid = [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else []
  unknown = sorted(set(options) - set(valid))
  if unknown:
    raise DatasetError(
      f"format {name!r} has no option {', '.join(map(repr, unknown))}; "
      + (f"its options: {', '.join(valid)}" if valid else "it takes no options")
    )
  return cls(**options)


def list_formats() -> list[str]:
  return sorted(_FORMATS)
