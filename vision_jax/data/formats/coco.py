"""COCO-style detection (Lin et al., ECCV 2014): one JSON of boxes per split, as COCO 2017 is laid
out:

    <root>/annotations/instances_<split>.json   {"images", "annotations", "categories"}
    <root>/<split>/<file_name>                  each image (option `images`: the folder, with
                                                "{split}" standing for the split's name)

The splits are the `instances_<split>.json` files, by name (COCO 2017: "train2017", "val2017").
An image is {"id", "file_name", "width", "height"}; an annotation {"image_id", "category_id",
"bbox": [x, y, w, h] in pixels from the image's top-left corner, "iscrowd" (default 0), "area"
(default w * h)}; a category {"id", "name"}. Images without annotations are negative examples;
an image's objects keep the JSON's order.

Labels: the categories sorted by id are labels 0..K-1 (COCO's 80 ids run 1 to 90 with gaps), so
`DatasetSpec.class_names` are their names and `DatasetSpec.class_ids` their ids, index = label:
`metrics.detection.coco_results(dets, image_ids, category_ids=source.spec.class_ids)` writes
results in COCO's ids. Every split must have the same categories.

Boxes become x0, y0, x1 = x + w, y1 = y + h (COCO's coordinates are already pixel edges from 0).
`iscrowd` is kept as the per-box feature "crowd", and "area" as the stored area (a segment's, by
which COCOeval calls an object small, medium or large) scaled by the resize, as the box is. A box
reaching outside its image is clipped with a warning; one without area is refused. Images are
resized at preparation to `image_size` x `image_size` by `resize` ("letterbox", default, or
"stretch"), their boxes with them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
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
  resized_extent,
)
from vision_jax.data.formats.image_folder import decode_image
from vision_jax.errors import DatasetError

_ANNOTATIONS = re.compile(r"^instances_(.+)\.json$")
_LAYOUT = (
  "expected the COCO layout: annotations/instances_<split>.json and the images in <split>/ "
  "(format option images)"
)


def _json_path(root: str, split: str) -> str:
  return os.path.join(root, "annotations", f"instances_{split}.json")


def _splits(root: str) -> tuple[str, ...]:
  folder = os.path.join(root, "annotations")
  names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
  splits = tuple(m.group(1) for m in map(_ANNOTATIONS.match, names) if m)
  if not splits:
    raise DatasetError(f"{folder}: no instances_<split>.json; {_LAYOUT}")
  return splits


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def load_annotations(path: str) -> tuple[dict, dict[int, list[dict]], dict[int, int]]:
  """A COCO instances JSON, checked: ({image id: image}, {image id: [annotations]}, {category id:
  label}), labels in order of id. Malformed JSON, a missing key, an image of non-positive size,
  an annotation of an unknown image or category: DatasetError naming `path`."""
  try:
    with open(path, "rb") as f:
      data = json.load(f)
  except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
    raise DatasetError(f"{path}: malformed JSON or unreadable ({e}); {_LAYOUT}") from None
  if not isinstance(data, dict) or not all(
    isinstance(data.get(k), list) for k in ("images", "annotations", "categories")
  ):
    raise DatasetError(
      f"{path}: expected a JSON object with lists 'images', 'annotations' and 'categories'"
    )
  categories = {}
  for c in data["categories"]:
    if not isinstance(c, dict) or not _is_int(c.get("id")) or not isinstance(c.get("name"), str):
      raise DatasetError(f"{path}: category {c!r}; expected {{'id': int, 'name': str}}")
    if c["id"] in categories:
      raise DatasetError(f"{path}: category id {c['id']} appears twice")
    categories[c["id"]] = c["name"]
  labels = {cid: label for label, cid in enumerate(sorted(categories))}
  images = {}
  for image in data["images"]:
    if (
      not isinstance(image, dict)
      or not _is_int(image.get("id"))
      or not isinstance(image.get("file_name"), str)
    ):
      raise DatasetError(f"{path}: image {image!r}; expected an int 'id' and a 'file_name'")
    width, height = image.get("width"), image.get("height")
    if not (_is_int(width) and _is_int(height) and width > 0 and height > 0):
      raise DatasetError(
        f"{path}: image {image['id']} ({image['file_name']}) has width {width!r} and height "
        f"{height!r}; expected positive ints"
      )
    if image["id"] in images:
      raise DatasetError(f"{path}: image id {image['id']} appears twice")
    images[image["id"]] = image
  objects: dict[int, list[dict]] = {i: [] for i in images}
  for a in data["annotations"]:
    bbox = a.get("bbox") if isinstance(a, dict) else None
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(map(_is_number, bbox)):
      raise DatasetError(f"{path}: annotation {a!r}; expected a 'bbox' of 4 numbers x, y, w, h")
    if a.get("image_id") not in images:
      raise DatasetError(
        f"{path}: annotation {a.get('id')} names image_id {a.get('image_id')!r}, which is not "
        "among its images"
      )
    if a.get("category_id") not in labels:
      raise DatasetError(
        f"{path}: annotation {a.get('id')} names category_id {a.get('category_id')!r}, which is "
        f"not among its categories ({', '.join(map(str, sorted(categories)))})"
      )
    if not _is_number(a.get("area", 0)) or a.get("iscrowd", 0) not in (0, 1):
      raise DatasetError(
        f"{path}: annotation {a.get('id')} has area {a.get('area')!r} and iscrowd "
        f"{a.get('iscrowd')!r}; expected a number and 0 or 1"
      )
    objects[a["image_id"]].append(a)
  return images, objects, {cid: categories[cid] for cid in labels}


@register_format
@dataclasses.dataclass(frozen=True)
class CocoFormat(LocalFormat):
  """Options (`config.data.format_options`): image_size, resize ("letterbox" or "stretch"),
  images (the images' folder under the root, "{split}" standing for the split's name)."""

  name = "coco"
  image_size: int = 256
  resize: str = "letterbox"
  images: str = "{split}"

  def __post_init__(self):
    check_image_options("coco", self.image_size, self.resize)

  def spec(self, root: str) -> DatasetSpec:
    splits = _splits(root)
    first = None
    for split in splits:
      path = _json_path(root, split)
      categories = load_annotations(path)[2]
      first = first or (path, categories)
      if categories != first[1]:
        raise DatasetError(
          f"{path}: its categories differ from those of {first[0]}; expected the same categories "
          "in every split"
        )
    return DatasetSpec(
      image_shape=(self.image_size, self.image_size, 3),
      class_names=tuple(first[1].values()),
      splits=splits,
      task="detection",
      box_features=("crowd", "area"),
      class_ids=tuple(first[1]),
    )

  def examples(self, root: str, split: str) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    path = _json_path(root, split)
    images, objects, categories = load_annotations(path)
    labels = {cid: label for label, cid in enumerate(categories)}
    folder = os.path.join(root, self.images.format(split=split))
    for image_id in sorted(images):
      image, anns = images[image_id], objects[image_id]
      file = os.path.join(folder, image["file_name"])
      where = f"{path} (image {image_id}, {image['file_name']})"
      try:
        with open(file, "rb") as f:
          data = f.read()
      except OSError as e:
        raise DatasetError(
          f"{file}: no such file or unreadable ({e.strerror}); {path} lists it as image "
          f"{image_id} (images are read from {folder}, format option images)"
        ) from None
      pixels = decode_image(data, file, "RGB")
      width, height = image["width"], image["height"]
      if pixels.shape[:2] != (height, width):
        raise DatasetError(
          f"{file}: {pixels.shape[1]}x{pixels.shape[0]} pixels, but {path} says {width}x{height}"
        )
      xywh = np.asarray([a["bbox"] for a in anns], np.float32).reshape(-1, 4)
      boxes = check_boxes(
        np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1), width, height, where
      )
      area = np.asarray([a.get("area", w * h) for a, (_, _, w, h) in zip(anns, xywh)], np.float32)
      new_w, new_h, _, _ = resized_extent(width, height, self.image_size, self.resize)
      pixels, boxes = resize_with_boxes(
        Image.fromarray(pixels), boxes, self.image_size, self.resize
      )
      yield (
        str(image_id),
        {
          "image": pixels,
          "boxes": boxes,
          "labels": np.asarray([labels[a["category_id"]] for a in anns], np.int32),
          "crowd": np.asarray([a.get("iscrowd", 0) == 1 for a in anns], bool),
          "area": (area * (new_w * new_h / (width * height))).astype(np.float32),
          "_source": where,
        },
      )
