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

Segmentation (trimaps) and detection (head boxes) will read the same records: an option that
adds them is an extra field here, reading `annotations/trimaps/<name>.png` or
`annotations/xmls/<name>.xml` beside each image and mapping it with the same `fit_to_square`
(nearest-neighbour for a trimap).
"""

from __future__ import annotations

import dataclasses
import os
import tarfile
import zlib
from typing import Iterator

import numpy as np
from PIL import Image

from vision_jax.data.formats.base import DatasetSpec, LocalFormat, register_format
from vision_jax.data.formats.image_folder import decode_image, read_files
from vision_jax.errors import DatasetError

SPLITS = ("trainval", "test")
LABELS = ("breed", "species")
RESIZES = ("center_crop", "stretch")
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
  ("center_crop" or "stretch"), label ("breed" or "species")."""

  name = "oxford_pets"
  image_size: int = 64
  resize: str = "center_crop"
  label: str = "breed"

  def __post_init__(self):
    if not isinstance(self.image_size, int) or self.image_size < 1:
      raise DatasetError(f"oxford_pets: image_size must be a positive int, got {self.image_size!r}")
    if self.resize not in RESIZES:
      raise DatasetError(
        f"oxford_pets: resize must be one of {', '.join(RESIZES)}, got {self.resize!r}"
      )
    if self.label not in LABELS:
      raise DatasetError(
        f"oxford_pets: label must be one of {', '.join(LABELS)}, got {self.label!r}"
      )

  def spec(self, root: str) -> DatasetSpec:
    _container(root, "images")  # fails early, naming the archive, if it is missing
    names = (
      SPECIES
      if self.label == "species"
      else tuple(b for _, b in _breeds(_read_list(root, "list.txt")))
    )
    return DatasetSpec(
      image_shape=(self.image_size, self.image_size, 3), class_names=names, splits=SPLITS
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
    for member, data in read_files(images, sorted(members)):
      e, where = members[member], _where(images, member)
      picture = Image.fromarray(decode_image(data, where, "RGB"))
      pixels = np.asarray(fit_to_square(picture, self.image_size, self.resize))
      label = e.species - 1 if self.label == "species" else label_of_class[e.class_id]
      yield e.name, {"image": pixels, "label": label, "_source": where}


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
