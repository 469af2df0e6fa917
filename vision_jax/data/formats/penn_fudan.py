"""The Penn-Fudan pedestrians (Wang, Shi, Song & Shen, ACCV 2007) in their original layout:

    <root>/PennFudanPed.tar.gz, or <root>/PennFudanPed/ extracted (or <root> that folder):
      PennFudanPed/PNGImages/<name>.png     RGB, 253-1017 pixels wide
      PennFudanPed/Annotation/<name>.txt    PASCAL annotation version 1.00 text

One class, "person": every object of an annotation is a pedestrian ("PASperson..." labels; any
other label is refused, naming the file). An annotation's boxes `(Xmin, Ymin) - (Xmax, Ymax)`
count pixels from 1 and include both ends; they become 0-based pixel edges x0 = Xmin - 1,
y0 = Ymin - 1, x1 = Xmax, y1 = Ymax (the last pixel's far edge, `DatasetSpec.features`), so a box
covers exactly the pixels it names. A box reaching outside the image is clipped with a warning;
one without area is refused.

The dataset has no official split: `test_size` images (default 50, as torchvision's detection
tutorial holds out) chosen by a permutation seeded with `seed` are "test", the rest "train".
Images are resized at preparation to `image_size` x `image_size` by `resize` ("letterbox":
scaled by the longer side and padded with black, default; "stretch"), their boxes with them.
The instance masks (PedMasks/) are not read yet: segmentation will add them as a feature here.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tarfile
import zlib
from typing import Iterator

import numpy as np
from PIL import Image

from vision_jax.data.formats.base import (
  DatasetSpec,
  LocalFormat,
  check_boxes,
  check_image_options,
  register_format,
  resize_with_boxes,
)
from vision_jax.data.formats.image_folder import decode_image, read_files
from vision_jax.errors import DatasetError

SPLITS = ("train", "test")
_TOP = "PennFudanPed"
_LAYOUT = (
  "expected the Penn-Fudan layout: PennFudanPed.tar.gz, or the folder PennFudanPed/ holding "
  "PNGImages/<name>.png and Annotation/<name>.txt"
)
_SIZE = re.compile(r"Image size \(X x Y x C\)\s*:\s*(\d+)\s*x\s*(\d+)\s*x\s*(\d+)")
_COUNT = re.compile(r"Objects with ground truth\s*:\s*(\d+)")
_BOX = re.compile(
  r'Bounding box for object (\d+) "([^"]*)"\s*\(Xmin, Ymin\) - \(Xmax, Ymax\)\s*:\s*'
  r"\(\s*(-?\d+)\s*,\s*(-?\d+)\s*\)\s*-\s*\(\s*(-?\d+)\s*,\s*(-?\d+)\s*\)"
)


def _container(root: str) -> str:
  """The tarball, or the folder holding PennFudanPed/, that `root` names."""
  if os.path.isfile(root):
    return root
  for name in ("PennFudanPed.tar.gz", "PennFudanPed.tgz", "PennFudanPed.tar"):
    if os.path.isfile(os.path.join(root, name)):
      return os.path.join(root, name)
  if os.path.isdir(os.path.join(root, _TOP, "Annotation")):
    return root
  if os.path.basename(os.path.normpath(root)) == _TOP and os.path.isdir(
    os.path.join(root, "Annotation")
  ):
    return os.path.dirname(os.path.normpath(root))
  raise DatasetError(f"{root}: no PennFudanPed.tar.gz or PennFudanPed/Annotation/; {_LAYOUT}")


def _where(container: str, member: str) -> str:
  return f"{container}:{member}" if os.path.isfile(container) else os.path.join(container, member)


def _annotation_names(container: str) -> list[str]:
  """The image names (FudanPed00001, ...) that have an annotation, sorted."""
  prefix = f"{_TOP}/Annotation/"
  if os.path.isdir(container):
    members = [prefix + f for f in os.listdir(os.path.join(container, prefix))]
  else:
    try:
      with tarfile.open(container) as tar:
        members = [m.name for m in tar if m.isfile() and m.name.startswith(prefix)]
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
      raise DatasetError(f"{container}: corrupt or truncated tarball ({e})") from None
  names = sorted(os.path.basename(m)[: -len(".txt")] for m in members if m.endswith(".txt"))
  if not names:
    raise DatasetError(f"{_where(container, prefix)}: no annotations (*.txt); {_LAYOUT}")
  return names


def parse_annotation(text: str, where: str) -> tuple[int, int, np.ndarray]:
  """(width, height, boxes float32 [n, 4] as 0-based x0, y0, x1, y1 edges) of a PASCAL 1.00 text
  annotation, checked: its image size, as many boxes as it says, pedestrians only."""
  size, count = _SIZE.search(text), _COUNT.search(text)
  if not size or not count:
    raise DatasetError(
      f"{where}: expected a PASCAL annotation 1.00 with 'Image size (X x Y x C) : W x H x C' "
      "and 'Objects with ground truth : N' lines"
    )
  boxes = _BOX.findall(text)
  if len(boxes) != int(count.group(1)):
    raise DatasetError(
      f"{where}: says {count.group(1)} objects with ground truth but has {len(boxes)} "
      "'Bounding box for object' lines"
    )
  for _, label, *_ in boxes:
    if not label.startswith("PASperson"):
      raise DatasetError(
        f"{where}: object label {label!r} is not a pedestrian; expected 'PASperson...' labels "
        "(the dataset's one class, person)"
      )
  pixels = np.asarray([[int(v) for v in b[2:]] for b in boxes], np.float32).reshape(-1, 4)
  # Pixels from 1, both ends included -> 0-based edges: the first pixel's near edge, the last's far.
  return int(size.group(1)), int(size.group(2)), pixels - np.asarray([1, 1, 0, 0], np.float32)


@register_format
@dataclasses.dataclass(frozen=True)
class PennFudanFormat(LocalFormat):
  """Options (`config.data.format_options`): image_size, resize ("letterbox" or "stretch"),
  test_size (images held out as "test"), seed (of the split)."""

  name = "penn_fudan"
  image_size: int = 256
  resize: str = "letterbox"
  test_size: int = 50
  seed: int = 0

  def __post_init__(self):
    check_image_options("penn_fudan", self.image_size, self.resize)
    if not isinstance(self.test_size, int) or self.test_size < 1:
      raise DatasetError(f"penn_fudan: test_size must be a positive int, got {self.test_size!r}")

  def spec(self, root: str) -> DatasetSpec:
    _container(root)  # fails early, naming what is missing
    return DatasetSpec(
      image_shape=(self.image_size, self.image_size, 3),
      class_names=("person",),
      splits=SPLITS,
      task="detection",
    )

  def _split(self, names: list[str], split: str, container: str) -> list[str]:
    if self.test_size >= len(names):
      raise DatasetError(
        f"{container}: test_size {self.test_size} leaves no training images of the "
        f"{len(names)} annotated"
      )
    perm = np.random.default_rng(self.seed).permutation(len(names))
    chosen = perm[-self.test_size :] if split == "test" else perm[: -self.test_size]
    return [names[i] for i in sorted(chosen)]

  def examples(self, root: str, split: str) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    container = _container(root)
    names = self._split(_annotation_names(container), split, container)
    annotations = {}
    for member, data in read_files(container, [f"{_TOP}/Annotation/{n}.txt" for n in names]):
      where = _where(container, member)
      annotations[os.path.basename(member)[: -len(".txt")]] = (
        where,
        *parse_annotation(data.decode("utf-8", "replace"), where),
      )
    for member, data in read_files(container, [f"{_TOP}/PNGImages/{n}.png" for n in names]):
      name = os.path.basename(member)[: -len(".png")]
      where, width, height, boxes = annotations[name]
      image = decode_image(data, _where(container, member), "RGB")
      if image.shape[:2] != (height, width):
        raise DatasetError(
          f"{_where(container, member)}: {image.shape[1]}x{image.shape[0]} pixels, but its "
          f"annotation {where} says {width}x{height}"
        )
      boxes = check_boxes(boxes, width, height, where)
      pixels, boxes = resize_with_boxes(Image.fromarray(image), boxes, self.image_size, self.resize)
      yield (
        name,
        {
          "image": pixels,
          "boxes": boxes,
          "labels": np.zeros(len(boxes), np.int32),
          "_source": where,
        },
      )
