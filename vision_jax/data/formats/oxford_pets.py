"""The Oxford-IIIT Pet dataset (Parkhi, Vedaldi, Zisserman & Jawahar, CVPR 2012) in its official
layout, or any subset of it kept in that layout (`oxford_pets_3breeds`):

    <root>/images.tar.gz        images/<Breed_name>_<n>.jpg, full size, of varying size
    <root>/annotations.tar.gz   annotations/list.txt, trainval.txt, test.txt,
                                trimaps/<name>.png, xmls/<name>.xml (head boxes)

(or the two archives extracted there, as `<root>/images/` and `<root>/annotations/`). The splits
are the paper's: "trainval" and "test", from trainval.txt and test.txt. Every list line is
`Image CLASS-ID SPECIES BREED-ID` (CLASS-ID 1-37 over all breeds, SPECIES 1 cat / 2 dog);
lines starting with '#' are comments. The label is, with option `label`:
- "breed" (default): the breed's rank among the CLASS-IDs that list.txt holds, so a subset's
  breeds are 0..k-1 in the official order (the 3-breed subset: Abyssinian, american_bulldog,
  Bengal, CLASS-IDs 1, 2 and 6); its name is the image name without the trailing `_<n>`.
- "species": 0 cat, 1 dog.

Images are resized once, at preparation, to `image_size` x `image_size` RGB (bilinear with
antialiasing, as torchvision's Resize). With `resize="center_crop"` (default) the central
square of the shorter side is taken, so breeds keep their proportions and a network pretrained
on centre-cropped ImageNet (or CIFAR's square pictures) sees the shapes it learnt; the pets are
mostly centred, and the strip cut from the longer side is background. `resize="stretch"` keeps
the whole picture at the cost of its aspect ratio (what a detector needs: nothing may be cut
from the head boxes).

`resize="letterbox"` keeps it all and its proportions, scaled by the longer side and padded
with black.

Detection, with option `boxes` (default "": classification): each example is an image with one
box (`DatasetSpec.features`), labelled as `label` says, in the image's pixels after the resize:
- "pet": the whole pet, the tight box of its trimap's pet and border pixels
  (`annotations/trimaps/<name>.png`: 1 pet, 2 background, 3 border), in both splits.
- "head": the head box of `annotations/xmls/<name>.xml` (VOC-style; xmin..xmax count pixels
  from 1, ends included, and become 0-based edges x0 = xmin - 1, x1 = xmax). The dataset has
  head boxes for trainval only, so the only split is "trainval" (hold out a validation split with
  `data.validation_size`); the few trainval images without an XML (4 of the 3-breed subset's 300)
  are left out, with a warning that counts them.
Boxes need the whole picture: with `boxes`, `resize` must be "stretch" or "letterbox".
Segmentation (trimaps as masks) will read the same records, mapped with nearest-neighbour.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tarfile
import xml.etree.ElementTree as ElementTree
import zlib
from typing import Iterator

import numpy as np
from PIL import Image

from vision_jax.data.formats.base import (
  DETECTION_RESIZES,
  DatasetSpec,
  LocalFormat,
  check_boxes,
  check_image_options,
  register_format,
  resize_with_boxes,
)
from vision_jax.data.formats.image_folder import decode_image, read_files
from vision_jax.errors import DatasetError

SPLITS = ("trainval", "test")
LABELS = ("breed", "species")
RESIZES = ("center_crop", "stretch", "letterbox")
BOXES = ("", "pet", "head")
SPECIES = ("cat", "dog")
_LAYOUT = (
  "expected the Oxford-IIIT Pet layout: images.tar.gz (images/<name>.jpg) and annotations.tar.gz "
  "(annotations/list.txt, trainval.txt, test.txt), or the two extracted as images/ and annotations/"
)


@dataclasses.dataclass(frozen=True)
class PetEntry:
  """One line of a list file: `Image CLASS-ID SPECIES BREED-ID`."""

  name: str
  class_id: int
  species: int
  breed_id: int
  where: str  # "<list file> line <n>", for errors

  @property
  def breed(self) -> str:
    return self.name.rsplit("_", 1)[0]


def fit_to_square(
  image: Image.Image, size: int, resize: str, resample: int = Image.BILINEAR
) -> Image.Image:
  """`image` as `size` x `size`: its central square (`center_crop`) or all of it (`stretch`)."""
  if resize == "center_crop":
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    # Crop first: resize(box=...) would filter in pixels from beyond the box at its edges.
    image = image.crop((left, top, left + side, top + side))
  return image.resize((size, size), resample)


def _container(root: str, part: str) -> str:
  """The tarball `<root>/<part>.tar.gz`, or `root` itself when `<root>/<part>/` is extracted."""
  if not os.path.isdir(root):
    raise DatasetError(f"{root}: not a folder; {_LAYOUT}")
  for name in (f"{part}.tar.gz", f"{part}.tgz", f"{part}.tar"):
    path = os.path.join(root, name)
    if os.path.exists(path):
      return path
  if os.path.isdir(os.path.join(root, part)):
    return root
  raise DatasetError(f"{os.path.join(root, part + '.tar.gz')}: missing; {_LAYOUT}")


def _where(container: str, name: str) -> str:
  return f"{container}:{name}" if os.path.isfile(container) else os.path.join(container, name)


def _read_list(root: str, list_name: str) -> list[PetEntry]:
  """The entries of annotations/<list_name>, checked line by line."""
  container = _container(root, "annotations")
  member = f"annotations/{list_name}"
  _, data = next(read_files(container, [member]))
  where = _where(container, member)
  entries = []
  for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
    line = line.strip()
    if not line or line.startswith("#"):
      continue
    parts = line.split()
    if len(parts) != 4 or not all(p.isdigit() for p in parts[1:]) or parts[2] not in ("1", "2"):
      raise DatasetError(
        f"{where} line {number}: expected 'Image CLASS-ID SPECIES BREED-ID' "
        f"(SPECIES 1 or 2), got {line!r}"
      )
    entries.append(
      PetEntry(parts[0], int(parts[1]), int(parts[2]), int(parts[3]), f"{where} line {number}")
    )
  if not entries:
    raise DatasetError(f"{where}: no entries; expected lines 'Image CLASS-ID SPECIES BREED-ID'")
  return entries


def _breeds(entries: list[PetEntry]) -> list[tuple[int, str]]:
  """(CLASS-ID, breed name) of every breed in list.txt, by CLASS-ID."""
  names: dict[int, PetEntry] = {}
  for e in entries:
    first = names.setdefault(e.class_id, e)
    if first.breed != e.breed:
      raise DatasetError(
        f"{e.where}: CLASS-ID {e.class_id} is {e.breed!r} here but {first.breed!r} at {first.where}"
      )
  return [(cid, names[cid].breed) for cid in sorted(names)]


@register_format
@dataclasses.dataclass(frozen=True)
class OxfordPetsFormat(LocalFormat):
  """Options (`config.data.format_options`): image_size (pixels of the square), resize
  ("center_crop", "stretch" or "letterbox"), label ("breed" or "species"), boxes ("", "pet"
  or "head": detection records, see the module's docstring)."""

  name = "oxford_pets"
  image_size: int = 64
  resize: str = "center_crop"
  label: str = "breed"
  boxes: str = ""

  def __post_init__(self):
    check_image_options("oxford_pets", self.image_size, self.resize, RESIZES)
    if self.label not in LABELS:
      raise DatasetError(
        f"oxford_pets: label must be one of {', '.join(LABELS)}, got {self.label!r}"
      )
    if self.boxes not in BOXES:
      raise DatasetError(
        f"oxford_pets: boxes must be one of 'pet', 'head' or '' (none), got {self.boxes!r}"
      )
    if self.boxes and self.resize not in DETECTION_RESIZES:
      raise DatasetError(
        f"oxford_pets: boxes={self.boxes!r} needs the whole picture: set resize to one of "
        f"{', '.join(DETECTION_RESIZES)} (not {self.resize!r}, which cuts the boxes)"
      )

  def options(self) -> dict:
    # Without boxes, the options (and so the cache key) that the format had before boxes.
    return {k: v for k, v in super().options().items() if k != "boxes" or v}

  def spec(self, root: str) -> DatasetSpec:
    _container(root, "images")  # fails early, naming the archive, if it is missing
    names = (
      SPECIES
      if self.label == "species"
      else tuple(b for _, b in _breeds(_read_list(root, "list.txt")))
    )
    return DatasetSpec(
      image_shape=(self.image_size, self.image_size, 3),
      class_names=names,
      splits=("trainval",) if self.boxes == "head" else SPLITS,
      task="detection" if self.boxes else "classification",
    )

  def examples(self, root: str, split: str) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    everything = _read_list(root, "list.txt")
    label_of_class = {cid: i for i, (cid, _) in enumerate(_breeds(everything))}
    listed = {e.name: e for e in everything}
    entries = _read_list(root, f"{split}.txt")
    for e in entries:
      if e.name not in listed or listed[e.name].class_id != e.class_id:
        known = listed.get(e.name)
        raise DatasetError(
          f"{e.where}: {e.name} (CLASS-ID {e.class_id}) "
          + (f"has CLASS-ID {known.class_id} at {known.where}" if known else "is not in list.txt")
        )
    images = _container(root, "images")
    members = {f"images/{e.name}.jpg": e for e in entries}
    available = _members(images, "images/")
    for member, e in members.items():
      if member not in available:
        raise DatasetError(f"{e.where} names {e.name}, but there is no {_where(images, member)}")
    boxes = self._boxes(root, [e.name for e in entries]) if self.boxes else {}
    if self.boxes:
      members = {m: e for m, e in members.items() if e.name in boxes}
    for member, data in read_files(images, sorted(members)):
      e, where = members[member], _where(images, member)
      picture = Image.fromarray(decode_image(data, where, "RGB"))
      label = e.species - 1 if self.label == "species" else label_of_class[e.class_id]
      if not self.boxes:
        if self.resize == "letterbox":
          pixels = resize_with_boxes(picture, np.zeros((0, 4)), self.image_size, self.resize)[0]
        else:
          pixels = np.asarray(fit_to_square(picture, self.image_size, self.resize))
        yield e.name, {"image": pixels, "label": label, "_source": where}
        continue
      box_where, size, box = boxes[e.name]
      if size != picture.size:
        raise DatasetError(
          f"{box_where}: for an image of {size[0]}x{size[1]}, but {where} is "
          f"{picture.size[0]}x{picture.size[1]}"
        )
      box = check_boxes(box, *size, box_where)
      pixels, box = resize_with_boxes(picture, box, self.image_size, self.resize)
      yield (
        e.name,
        {
          "image": pixels,
          "boxes": box,
          "labels": np.full(len(box), label, np.int32),
          "_source": where,
        },
      )

  def _boxes(
    self, root: str, names: list[str]
  ) -> dict[str, tuple[str, tuple[int, int], np.ndarray]]:
    """{name: (annotation file, its image's (width, height), box [1, 4] in its pixels)}, from the
    trimaps ("pet") or the head XMLs ("head"; images without one are left out, counted)."""
    container = _container(root, "annotations")
    kind = "trimaps" if self.boxes == "pet" else "xmls"
    suffix = ".png" if self.boxes == "pet" else ".xml"
    wanted = {f"annotations/{kind}/{n}{suffix}": n for n in names}
    available = _members(container, f"annotations/{kind}/")
    missing = [m for m in wanted if m not in available]
    if missing and self.boxes == "pet":
      raise DatasetError(f"{_where(container, missing[0])}: missing; every image has a trimap")
    if missing:
      logging.warning(
        "oxford_pets: %d of %d images have no head box (%s, ...); left out",
        len(missing),
        len(wanted),
        _where(container, missing[0]),
      )
    found = {}
    for member, data in read_files(container, sorted(m for m in wanted if m in available)):
      where = _where(container, member)
      if self.boxes == "pet":
        trimap = decode_image(data, where, "L")[..., 0]
        rows, cols = np.flatnonzero((trimap != 2).any(1)), np.flatnonzero((trimap != 2).any(0))
        if not rows.size:
          raise DatasetError(f"{where}: no pet pixels (1 or 3); expected a trimap of the pet")
        box = np.asarray([[cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]], np.float32)
        found[wanted[member]] = (where, (trimap.shape[1], trimap.shape[0]), box)
      else:
        found[wanted[member]] = (where, *_head_box(data, where))
    return found


def _head_box(data: bytes, where: str) -> tuple[tuple[int, int], np.ndarray]:
  """((width, height), box [1, 4] as 0-based x0, y0, x1, y1 edges) of a head box XML."""
  try:
    tree = ElementTree.fromstring(data)
    size = tree.find("size")
    width, height = int(size.findtext("width")), int(size.findtext("height"))
    b = tree.find("object/bndbox")
    box = [float(b.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]
  except (ElementTree.ParseError, AttributeError, TypeError, ValueError) as e:
    raise DatasetError(
      f"{where}: expected a VOC-style XML with size/width, size/height and "
      f"object/bndbox/xmin..ymax ({e.__class__.__name__}: {e})"
    ) from None
  # From 1, ends included -> 0-based edges.
  return (width, height), np.asarray([box], np.float32) - np.asarray([1, 1, 0, 0], np.float32)


def _members(container: str, prefix: str) -> set[str]:
  """The file names under `prefix` in a tarball or an extracted folder."""
  if os.path.isdir(container):
    folder = os.path.join(container, prefix)
    return {prefix + f for f in os.listdir(folder)} if os.path.isdir(folder) else set()
  try:
    with tarfile.open(container) as tar:
      return {m.name for m in tar if m.isfile() and m.name.startswith(prefix)}
  except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
    raise DatasetError(f"{container}: corrupt or truncated tarball ({e})") from None
