"""PASCAL VOC detection (Everingham et al., IJCV 2010) in the devkit's layout:

    <voc>/Annotations/<id>.xml          per image: <size> (<width>, <height>) and its <object>s
                                        (<name>, <difficult>, <bndbox> xmin, ymin, xmax, ymax)
    <voc>/JPEGImages/<id>.jpg
    <voc>/ImageSets/Main/<split>.txt    optional: the ids of each split, one a line

`voc:<path>` names <voc> itself (VOC2007/), a folder holding exactly one such folder up to two
levels down (VOCdevkit/, or the folder holding VOCdevkit/), or a tarball of one (as
VOCtrainval_06-Nov-2007.tar is, or a folder holding only that tarball).

Splits: each `ImageSets/Main/<split>.txt` whose name has no "_" (VOC2007: train, val, trainval,
test; `<class>_<split>.txt` are per-class lists, not read). Every id a list names must have its
annotation and its JPEG. Without split lists, every annotated image is split by a permutation
seeded with `seed`: round(`test_fraction` * images) are "test", the rest "train".

Classes: the option `classes` (comma-separated names, in label order; an object of another name
is refused, naming its file), else, when every object's name is one of VOC's 20 classes, those 20
(`VOC_CLASSES`, the devkit's order), so a subset of VOC keeps VOC's labels; else the names found,
sorted. `difficult` is kept as a per-box feature (the metrics ignore difficult objects; training
skips them unless `detection.train_on_difficult`).

Boxes: VOC counts pixels from 1 and includes both ends; they become 0-based pixel edges
x0 = xmin - 1, y0 = ymin - 1, x1 = xmax, y1 = ymax (`DatasetSpec.features`), so a box covers
exactly the pixels it names. A box reaching outside its <size> is clipped with a warning; one
without area is refused. An annotation without objects is a negative example. Images are resized
at preparation to `image_size` x `image_size` by `resize` ("letterbox", default, or "stretch"),
their boxes with them.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import tarfile
import xml.etree.ElementTree as ET
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

VOC_CLASSES = (
  "aeroplane",
  "bicycle",
  "bird",
  "boat",
  "bottle",
  "bus",
  "car",
  "cat",
  "chair",
  "cow",
  "diningtable",
  "dog",
  "horse",
  "motorbike",
  "person",
  "pottedplant",
  "sheep",
  "sofa",
  "train",
  "tvmonitor",
)
_SPLIT_ORDER = ("train", "val", "trainval", "test")
_TARBALLS = (".tar", ".tar.gz", ".tgz")
_LAYOUT = (
  "expected the PASCAL VOC layout: a folder (or a tarball of one) holding Annotations/<id>.xml, "
  "JPEGImages/<id>.jpg and optionally ImageSets/Main/<split>.txt"
)


@dataclasses.dataclass(frozen=True)
class _Layout:
  """Where a VOC folder's files are: `container` (a folder or a tarball) + `prefix` + the path in
  the VOC folder; `files`, every file's path under `container`."""

  container: str
  prefix: str
  files: frozenset

  def where(self, member: str) -> str:
    """A member's name for errors: its path, or tarball:member."""
    if os.path.isfile(self.container):
      return f"{self.container}:{member}"
    return os.path.join(self.container, member)

  def ids(self, folder: str, extension: str) -> set[str]:
    start = f"{self.prefix}{folder}/"
    return {
      f[len(start) : -len(extension)]
      for f in self.files
      if f.startswith(start) and f.endswith(extension) and "/" not in f[len(start) :]
    }


def _is_voc(folder: str) -> bool:
  return os.path.isdir(os.path.join(folder, "Annotations")) and os.path.isdir(
    os.path.join(folder, "JPEGImages")
  )


@functools.lru_cache(maxsize=4)
def _tarball_files(path: str, size: int, mtime: float) -> frozenset:
  """The files in a tarball (size and mtime key the cache: a changed file is listed again)."""
  del size, mtime
  try:
    with tarfile.open(path) as tar:
      return frozenset(m.name for m in tar if m.isfile())
  except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
    raise DatasetError(f"{path}: corrupt or truncated tarball ({e})") from None


def _layout(root: str) -> _Layout:
  """The VOC folder that `root` names (see the module docstring)."""
  if os.path.isdir(root):
    found = [root] if _is_voc(root) else []
    for depth in (1, 2):
      if found:
        break
      found = sorted(p for p in _glob_dirs(root, depth) if _is_voc(p))
    if len(found) > 1:
      raise DatasetError(
        f"{root}: holds {len(found)} VOC folders ({', '.join(os.path.relpath(f, root) for f in found)});"
        " name one of them"
      )
    if found:
      voc = found[0]
      files = frozenset(
        os.path.relpath(os.path.join(d, f), voc) for d, _, fs in os.walk(voc) for f in fs
      )
      return _Layout(voc, "", files)
    tars = [e for e in os.listdir(root) if e.endswith(_TARBALLS)]
    if len(tars) != 1:
      raise DatasetError(f"{root}: no Annotations/ and JPEGImages/ folders; {_LAYOUT}")
    root = os.path.join(root, tars[0])
  st = os.stat(root)
  files = _tarball_files(root, st.st_size, st.st_mtime)
  prefixes = sorted(
    {f[: f.index("Annotations/")] for f in files if re.search(r"(^|/)Annotations/[^/]+\.xml$", f)}
  )
  if len(prefixes) != 1:
    raise DatasetError(
      f"{root}: holds {'no' if not prefixes else len(prefixes)} VOC folders"
      + (f" ({', '.join(p or '.' for p in prefixes)})" if prefixes else "")
      + f"; {_LAYOUT}"
    )
  return _Layout(root, prefixes[0], files)


def _glob_dirs(root: str, depth: int) -> list[str]:
  """The folders exactly `depth` levels below `root`."""
  level = [root]
  for _ in range(depth):
    level = [
      os.path.join(d, e)
      for d in level
      for e in sorted(os.listdir(d))
      if os.path.isdir(os.path.join(d, e)) and not e.startswith(".")
    ]
  return level


@dataclasses.dataclass(frozen=True)
class Annotation:
  """One VOC annotation: the image's size and its objects, boxes as 0-based edges [n, 4]."""

  width: int
  height: int
  names: tuple[str, ...]
  boxes: np.ndarray
  difficult: np.ndarray


def parse_annotation(data: bytes, where: str) -> Annotation:
  """A VOC XML annotation, checked: its <size>, and a name and a numeric <bndbox> per object."""
  try:
    root = ET.fromstring(data)
  except ET.ParseError as e:
    raise DatasetError(f"{where}: not well-formed XML ({e}); expected a VOC annotation") from None

  def number(element, tag: str, what: str) -> float:
    text = element.findtext(tag)
    try:
      return float(text)
    except (TypeError, ValueError):
      raise DatasetError(f"{where}: {what} has <{tag}> {text!r}; expected a number") from None

  size = root.find("size")
  if size is None:
    raise DatasetError(f"{where}: no <size>; expected <size> with <width> and <height> pixels")
  width, height = number(size, "width", "<size>"), number(size, "height", "<size>")
  if width < 1 or height < 1 or width != int(width) or height != int(height):
    raise DatasetError(
      f"{where}: <size> of {width:g}x{height:g}; expected positive whole <width> and <height>"
    )
  names, boxes, difficult = [], [], []
  for i, obj in enumerate(root.findall("object")):
    name = (obj.findtext("name") or "").strip()
    box = obj.find("bndbox")
    if not name or box is None:
      raise DatasetError(f"{where}: <object> {i} lacks a <name> or a <bndbox>")
    names.append(name)
    boxes.append([number(box, t, f"<object> {i}") for t in ("xmin", "ymin", "xmax", "ymax")])
    flagged = obj.find("difficult") is not None  # absent (VOC2012's test set): not difficult
    difficult.append(flagged and number(obj, "difficult", f"<object> {i}") != 0)
  # Pixels from 1, both ends included -> 0-based edges: the first pixel's near edge, the last's far.
  edges = np.asarray(boxes, np.float32).reshape(-1, 4) - np.asarray([1, 1, 0, 0], np.float32)
  return Annotation(int(width), int(height), tuple(names), edges, np.asarray(difficult, bool))


@register_format
@dataclasses.dataclass(frozen=True)
class VocFormat(LocalFormat):
  """Options (`config.data.format_options`): image_size, resize ("letterbox" or "stretch"),
  classes (comma-separated names in label order; default from the annotations), test_fraction
  and seed (of the split made where there are no split lists)."""

  name = "voc"
  image_size: int = 256
  resize: str = "letterbox"
  classes: str = ""
  test_fraction: float = 0.2
  seed: int = 0

  def __post_init__(self):
    check_image_options("voc", self.image_size, self.resize)
    if not isinstance(self.classes, str):  # a tuple from a config: kept as the string it means
      object.__setattr__(self, "classes", ",".join(self.classes))
    names = self.class_list()
    if len(set(names)) != len(names) or any(not n for n in names):
      raise DatasetError(f"voc: classes must be distinct names, got {self.classes!r}")
    if not 0 < self.test_fraction < 1:
      raise DatasetError(f"voc: test_fraction must be in (0, 1), got {self.test_fraction!r}")

  def class_list(self) -> tuple[str, ...]:
    return tuple(n.strip() for n in self.classes.split(",")) if self.classes else ()

  def _splits(self, layout: _Layout) -> dict[str, tuple[str, list[str]]]:
    """{split: (what names its ids, ids)}, every id checked to have an annotation and an image."""
    annotations = layout.ids("Annotations", ".xml")
    images = layout.ids("JPEGImages", ".jpg")
    lists = sorted(layout.ids("ImageSets/Main", ".txt"))
    lists = [s for s in lists if "_" not in s]
    if not lists:
      if not annotations:
        raise DatasetError(f"{layout.where(layout.prefix + 'Annotations/')}: empty; {_LAYOUT}")
      for i in sorted(annotations - images):
        raise DatasetError(
          f"{layout.where(f'{layout.prefix}Annotations/{i}.xml')}: no image "
          f"{layout.where(f'{layout.prefix}JPEGImages/{i}.jpg')} for it"
        )
      ids = sorted(annotations)
      n_test = round(len(ids) * self.test_fraction)
      if not 0 < n_test < len(ids):
        raise DatasetError(
          f"{layout.where(layout.prefix + 'Annotations/')}: test_fraction {self.test_fraction} "
          f"of {len(ids)} images leaves a split empty (and there is no ImageSets/Main/<split>.txt)"
        )
      perm = np.random.default_rng(self.seed).permutation(len(ids))
      where = f"{layout.where(layout.prefix + 'Annotations/')} (seed {self.seed})"
      return {
        "train": (where, [ids[i] for i in sorted(perm[:-n_test])]),
        "test": (where, [ids[i] for i in sorted(perm[-n_test:])]),
      }
    order = sorted(lists, key=lambda s: (_SPLIT_ORDER.index(s) if s in _SPLIT_ORDER else 99, s))
    members = [f"{layout.prefix}ImageSets/Main/{s}.txt" for s in order]
    splits = {}
    for split, (member, data) in zip(order, read_files(layout.container, members)):
      where = layout.where(member)
      ids = [
        line.split()[0] for line in data.decode("utf-8", "replace").splitlines() if line.strip()
      ]
      if not ids:
        raise DatasetError(f"{where}: lists no images; expected one image id a line")
      for i in ids:
        for folder, have, ext in (
          ("Annotations", annotations, ".xml"),
          ("JPEGImages", images, ".jpg"),
        ):
          if i not in have:
            raise DatasetError(
              f"{where}: lists {i!r}, but there is no "
              f"{layout.where(f'{layout.prefix}{folder}/{i}{ext}')}; expected an annotation and a "
              "JPEG image for every id listed"
            )
      splits[split] = (where, ids)
    return splits

  def _annotations(self, layout: _Layout, ids: list[str]) -> Iterator[tuple[str, Annotation]]:
    members = [f"{layout.prefix}Annotations/{i}.xml" for i in ids]
    for member, data in read_files(layout.container, members):
      where = layout.where(member)
      yield where, parse_annotation(data, where)

  def spec(self, root: str) -> DatasetSpec:
    layout = _layout(root)
    splits = self._splits(layout)
    names = self.class_list()
    if not names:
      ids = sorted({i for _, split_ids in splits.values() for i in split_ids})
      found = {n for _, a in self._annotations(layout, ids) for n in a.names}
      names = VOC_CLASSES if found <= set(VOC_CLASSES) else tuple(sorted(found))
    return DatasetSpec(
      image_shape=(self.image_size, self.image_size, 3),
      class_names=names,
      splits=tuple(splits),
      task="detection",
      box_features=("difficult",),
    )

  def examples(self, root: str, split: str) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    layout = _layout(root)
    _, ids = self._splits(layout)[split]
    classes = self.class_list() or self.spec(root).class_names
    labels = {n: i for i, n in enumerate(classes)}
    annotations = {}
    for i, (where, annotation) in zip(ids, self._annotations(layout, ids)):
      for name in annotation.names:
        if name not in labels:
          raise DatasetError(
            f"{where}: object of class {name!r}, not one of the classes "
            f"{', '.join(classes)} (format option classes)"
          )
      annotations[i] = (where, annotation)
    members = [f"{layout.prefix}JPEGImages/{i}.jpg" for i in ids]
    for i, (member, data) in zip(ids, read_files(layout.container, members)):
      where, a = annotations[i]
      image = decode_image(data, layout.where(member), "RGB")
      if image.shape[:2] != (a.height, a.width):
        raise DatasetError(
          f"{layout.where(member)}: {image.shape[1]}x{image.shape[0]} pixels, but its "
          f"annotation {where} says {a.width}x{a.height}"
        )
      boxes = check_boxes(a.boxes, a.width, a.height, where)
      pixels, boxes = resize_with_boxes(Image.fromarray(image), boxes, self.image_size, self.resize)
      yield (
        i,
        {
          "image": pixels,
          "boxes": boxes,
          "labels": np.asarray([labels[n] for n in a.names], np.int32),
          "difficult": a.difficult,
          "_source": where,
        },
      )
