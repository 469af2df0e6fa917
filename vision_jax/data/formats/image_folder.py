"""An image-folder tree, as a folder or a tarball: `[top/]<split>/<class>/<image>`.

CIFAR-10 as JPEGs (`cifar10/{train,test}/<class>/<n>.jpg`) is one. A tree without split folders
(`<class>/<image>` directly) is a single "train" split. Images are decoded with Pillow; all images
of a dataset must share one size (the first image's), as greyscale or RGB.
"""

from __future__ import annotations

import functools
import io
import os
import tarfile
from typing import Iterator

import numpy as np
from PIL import Image

from vision_jax.data.formats.base import DatasetSpec, LocalFormat, register_format
from vision_jax.errors import DatasetError

IMAGE_EXTENSIONS = (
  ".jpg",
  ".jpeg",
  ".png",
  ".bmp",
  ".pgm",
  ".ppm",
  ".gif",
  ".tif",
  ".tiff",
  ".webp",
)
SPLIT_NAMES = ("train", "validation", "val", "test")


def _resolve(root: str) -> str:
  """A folder holding exactly one tarball (and nothing else to read) stands for that tarball."""
  if os.path.isdir(root):
    entries = [e for e in os.listdir(root) if not e.startswith(".") and e.lower() != "readme.md"]
    tars = [e for e in entries if e.endswith((".tar", ".tar.gz", ".tgz"))]
    if len(tars) == 1 and len(entries) == 1:
      return os.path.join(root, tars[0])
  return root


def _list_images(root: str) -> list[str]:
  """Relative paths of all images under `root` (a folder or a tarball), sorted."""
  if os.path.isdir(root):
    paths = [os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs]
  elif tarfile.is_tarfile(root):
    try:
      with tarfile.open(root) as tar:
        paths = [m.name for m in tar.getmembers() if m.isfile()]
    except (tarfile.TarError, OSError, EOFError) as e:
      raise DatasetError(f"{root}: corrupt or truncated tarball ({e})") from None
  elif os.path.exists(root):
    raise DatasetError(f"{root}: expected a folder or a tarball of <split>/<class>/<image> files")
  else:
    raise DatasetError(f"{root}: no such file or folder")
  images = sorted(
    p
    for p in paths
    if p.lower().endswith(IMAGE_EXTENSIONS) and not os.path.basename(p).startswith(".")
  )
  if not images:
    raise DatasetError(f"{root}: no image files ({', '.join(IMAGE_EXTENSIONS)}) found")
  return images


def _layout(paths: list[str], root: str) -> dict[str, dict[str, list[str]]]:
  """{split: {class: [paths]}} from the common directory structure of `paths`."""
  parts = [p.split("/") for p in paths]
  depth = {len(p) for p in parts}
  if len(depth) != 1:
    raise DatasetError(
      f"{root}: images lie at different depths; expected every image at "
      "[top/]<split>/<class>/<image> or [top/]<class>/<image>"
    )
  depth = depth.pop()
  # Strip a common top folder (the archive's name) if there is one above the split level.
  tops = {p[0] for p in parts}
  if depth >= 3 and len(tops) == 1 and tops.pop() not in SPLIT_NAMES:
    parts = [p[1:] for p in parts]
    depth -= 1
  layout: dict[str, dict[str, list[str]]] = {}
  for full, p in zip(paths, parts):
    if depth == 3:
      split, cls = p[0], p[1]
    elif depth == 2:
      split, cls = "train", p[0]
    else:
      raise DatasetError(
        f"{root}: expected [top/]<split>/<class>/<image> or <class>/<image>, got {full}"
      )
    layout.setdefault(split, {}).setdefault(cls, []).append(full)
  classes = sorted(next(iter(layout.values())))
  for split, by_class in layout.items():
    if sorted(by_class) != classes:
      raise DatasetError(
        f"{root}: split {split!r} has classes {sorted(by_class)}, expected {classes}"
      )
  return layout


def decode_image(data: bytes, name: str, mode: str | None = None) -> np.ndarray:
  """Decodes image bytes to uint8 [h, w, c]; a corrupt image raises DatasetError naming it."""
  try:
    with Image.open(io.BytesIO(data)) as img:
      img.load()
      if mode is None:
        mode = "L" if img.mode in ("L", "1", "I;16", "I", "P") and img.mode != "P" else "RGB"
      arr = np.asarray(img.convert(mode))
  except Exception as e:  # Pillow raises many types for bad files
    raise DatasetError(
      f"{name}: corrupt or unreadable image ({e.__class__.__name__}: {e})"
    ) from None
  return arr[..., None] if arr.ndim == 2 else arr


def read_files(root: str, names: list[str]) -> Iterator[tuple[str, bytes]]:
  """Yields (name, bytes) for `names` in order from a folder or a tarball (streamed sequentially).

  A name that is not there raises DatasetError naming it and `root`.
  """
  if os.path.isdir(root):
    for n in names:
      try:
        with open(os.path.join(root, n), "rb") as f:
          yield n, f.read()
      except FileNotFoundError:
        raise DatasetError(f"{os.path.join(root, n)}: no such file") from None
    return
  wanted = set(names)
  found: dict[str, bytes] = {}
  try:
    with tarfile.open(root) as tar:
      for m in tar:
        if m.name in wanted:
          found[m.name] = tar.extractfile(m).read()
          if len(found) == len(wanted):
            break  # a gzipped tarball is read sequentially: stop at the last wanted file
  except (tarfile.TarError, OSError, EOFError) as e:
    raise DatasetError(f"{root}: corrupt or truncated tarball ({e})") from None
  for n in names:
    if n not in found:
      raise DatasetError(f"{root}: the tarball has no {n}")
    yield n, found[n]


@functools.lru_cache(maxsize=8)
def _scan(root: str, fingerprint: str) -> tuple[dict[str, dict[str, list[str]]], DatasetSpec]:
  """(layout, spec) of `root`, listed once per version of its files (`fingerprint`): a gzipped
  tarball is read from its start for every listing, and preparing its splits needs it each time."""
  del fingerprint  # the cache key
  layout = _layout(_list_images(root), root)
  classes = tuple(sorted(next(iter(layout.values()))))
  first_split = sorted(layout)[0]
  first = layout[first_split][classes[0]][0]
  name, data = next(read_files(root, [first]))
  shape = decode_image(data, f"{root}:{name}").shape
  order = [s for s in SPLIT_NAMES if s in layout] + sorted(
    s for s in layout if s not in SPLIT_NAMES
  )
  return layout, DatasetSpec(image_shape=shape, class_names=classes, splits=tuple(order))


@register_format
class ImageFolderFormat(LocalFormat):
  name = "image_folder"

  def spec(self, root: str) -> DatasetSpec:
    root = _resolve(root)
    return _scan(root, self.fingerprint(root))[1]

  def examples(self, root: str, split: str) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    root = _resolve(root)
    layout, spec = _scan(root, self.fingerprint(root))
    label_of = {}
    for label, cls in enumerate(spec.class_names):
      for n in layout[split][cls]:
        label_of[n] = label
    mode = "L" if spec.image_shape[-1] == 1 else "RGB"
    for name, data in read_files(root, sorted(label_of)):
      where = f"{root}:{name}" if os.path.isfile(root) else os.path.join(root, name)
      image = decode_image(data, where, mode)
      if image.shape != tuple(spec.image_shape):
        raise DatasetError(
          f"{where}: image of shape {image.shape}, expected {tuple(spec.image_shape)} "
          "like the dataset's first image"
        )
      yield name, {"image": image, "label": label_of[name], "_source": where}
