"""An image-folder tree, as a folder or a tarball: `[top/]<split>/<class>/<image>`.

CIFAR-10 as JPEGs (`cifar10/{train,test}/<class>/<n>.jpg`) is one. A tree without split folders
(`<class>/<image>` directly) is a single "train" split. Images are decoded with Pillow; all images
of a dataset must share one size (the first image's), as greyscale or RGB. The classes are the
class folders (sorted by name): each must hold images in every split, and there must be two or
more. Files of other types (a README, Thumbs.db) are ignored, as torchvision's ImageFolder does.
"""

from __future__ import annotations

import functools
import io
import os
import tarfile
import zlib
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


def _list_tree(root: str) -> tuple[list[str], list[str]]:
  """(files, folders) under `root` (a folder or a tarball), as sorted relative paths."""
  if os.path.isdir(root):
    files, folders = [], []
    for d, ds, fs in os.walk(root):
      rel = os.path.relpath(d, root)
      prefix = "" if rel == "." else rel + "/"
      files.extend(prefix + f for f in fs)
      folders.extend(prefix + f for f in ds)
  elif tarfile.is_tarfile(root):
    try:
      with tarfile.open(root) as tar:
        members = tar.getmembers()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
      raise DatasetError(f"{root}: corrupt or truncated tarball ({e})") from None
    files = [m.name for m in members if m.isfile()]
    folders = [m.name.rstrip("/") for m in members if m.isdir() and m.name.strip("./")]
  elif os.path.exists(root):
    raise DatasetError(f"{root}: expected a folder or a tarball of <split>/<class>/<image> files")
  else:
    raise DatasetError(f"{root}: no such file or folder")
  return sorted(files), sorted(folders)


def _is_image(path: str) -> bool:
  return path.lower().endswith(IMAGE_EXTENSIONS) and not os.path.basename(path).startswith(".")


def _layout(files: list[str], folders: list[str], root: str) -> dict[str, dict[str, list[str]]]:
  """{split: {class: [image paths]}} from the common directory structure of the images.

  The classes are the class folders, those without images too: every class must have images in
  every split, and there must be two classes or more. Dropping an empty class folder would
  renumber the classes after it; one class would make a classifier that cannot be wrong.
  """
  paths = [p for p in files if _is_image(p)]
  if not paths:
    others = [p for p in files if not os.path.basename(p).startswith(".")]
    raise DatasetError(
      f"{root}: no image files ({', '.join(IMAGE_EXTENSIONS)}) found"
      + (f"; it holds {len(others)} other files, e.g. {others[0]}" if others else "")
    )
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
  top = None
  if depth >= 3 and len(tops) == 1 and next(iter(tops)) not in SPLIT_NAMES:
    top = tops.pop()
    parts = [p[1:] for p in parts]
    depth -= 1
  if depth not in (2, 3):
    raise DatasetError(
      f"{root}: expected [top/]<split>/<class>/<image> or <class>/<image>, got {paths[0]}"
    )

  def split_and_class(p: list[str]) -> tuple[str, str]:
    return (p[0], p[1]) if depth == 3 else ("train", p[0])

  layout: dict[str, dict[str, list[str]]] = {}
  for full, p in zip(paths, parts):
    split, cls = split_and_class(p)
    layout.setdefault(split, {}).setdefault(cls, []).append(full)
  # Class folders without images: empty, or holding other files only.
  others: dict[tuple[str, str], list[str]] = {}
  for path, is_folder in [(f, True) for f in folders] + [(f, False) for f in files]:
    p = path.split("/")
    if top is not None:
      if p[0] != top:
        continue
      p = p[1:]
    if len(p) != depth - is_folder or any(c.startswith((".", "__")) for c in p[: depth - 1]):
      continue
    split, cls = split_and_class(p)
    if split in layout and cls not in layout[split]:
      others.setdefault((split, cls), [])
      if not is_folder:
        others[(split, cls)].append(path)

  def folder(split: str, cls: str) -> str:
    rel = "/".join(([top] if top else []) + ([split] if depth == 3 else []) + [cls])
    return f"{root}:{rel}" if os.path.isfile(root) else os.path.join(root, rel)

  classes = sorted({c for by_class in layout.values() for c in by_class} | {c for _, c in others})
  for split in _split_order(layout):
    for cls in classes:
      if cls in layout[split]:
        continue
      if (split, cls) in others:
        files_there = others[(split, cls)]
        raise DatasetError(
          f"{folder(split, cls)}: a class folder with no images ({', '.join(IMAGE_EXTENSIONS)})"
          + (f", only {len(files_there)} other files, e.g. {files_there[0]}" if files_there else "")
          + "; every class needs images in every split: add them, or remove the folder"
          + (" from every split" if depth == 3 else "")
        )
      raise DatasetError(
        f"{folder(split, cls)}: missing; the other splits have class {cls!r}, and every class "
        "needs images in every split"
      )
  if len(classes) < 2:
    raise DatasetError(
      f"{folder(_split_order(layout)[0], classes[0])}: the only class folder; a classifier needs two "
      "classes or more, each a folder of images"
    )
  return layout


def _split_order(layout: dict) -> tuple[str, ...]:
  """The splits of `layout`: train, validation, val, test, then any others by name."""
  return tuple(
    [s for s in SPLIT_NAMES if s in layout] + sorted(s for s in layout if s not in SPLIT_NAMES)
  )


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
  except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
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
  layout = _layout(*_list_tree(root), root)
  classes = tuple(sorted(next(iter(layout.values()))))
  first_split = sorted(layout)[0]
  first = layout[first_split][classes[0]][0]
  name, data = next(read_files(root, [first]))
  shape = decode_image(data, f"{root}:{name}").shape
  return layout, DatasetSpec(image_shape=shape, class_names=classes, splits=_split_order(layout))


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
