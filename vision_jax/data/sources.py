"""Datasets by name: `tfds:<name>` for TFDS's catalogue, `<format>:<path or name>` for local files.

    source = get_source("idx:mnist")          # $VISION_JAX_DATASETS/mnist, IDX files
    source = get_source("image_folder:cifar10")
    source = get_source("sklearn:digits")
    source = get_source("tfds:cifar10")       # needs internet the first time (and tensorflow)
    source = get_source("tfds:voc/2007", image_size=448, resize="stretch")   # detection, resized
    source = get_source("oxford_pets:oxford_pets_3breeds", image_size=64)   # a format's options
    source = get_source("prepared:/elsewhere/oxford_pets_oxford_pets_3breeds/0fedc6294013/1.0.0", image_size=64)

Local files are prepared once into TFDS's ArrayRecord format under the cache directory
(`$VISION_JAX_CACHE`, default `~/.cache/vision_jax`), keyed by a fingerprint of the input files.
The dataset's spec (image shape, classes, splits) is saved beside it, so a prepared dataset opens
without reading its source again (listing CIFAR-10's tarball takes 6 s of CPU).
TFDS writes into a temporary `incomplete.*` directory and renames it when the preparation
finished, so a killed or failed preparation leaves no partial cache; it is started afresh next
time. Processes that need the same dataset at once (a sweep's parallel points, the processes of
a multi-process run) take turns on a file lock: one prepares, the others then read its result.
Every split then reads as a random-access data source (`len`, `[i]`, `__getitems__`).

A prepared dataset's folder (`<cache>/tfds/<builder>/<fingerprint>/<version>`) also opens on its
own, copied to a machine without the source files: `prepared:<folder>`. Preparation records the
source's name, format and options there (`vision_jax_source.json`); format options given with
`prepared:` must be the recorded ones, so a run cannot read, say, 32x32 pets while its config asks
for 64x64.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import json
import os
import queue
import re
import shutil
import socket
import threading
import time
import urllib.parse
import urllib.request
from typing import Any, Sequence

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from vision_jax.data.formats import LocalFormat, get_format
from vision_jax.data.formats.base import (
  BOX_FEATURES,
  DETECTION_RESIZES,
  DatasetSpec,
  resize_with_boxes,
)
from vision_jax.errors import DatasetError

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def datasets_dir() -> str:
  """Where local datasets live: $VISION_JAX_DATASETS, default ../shared/datasets beside the repo."""
  return os.environ.get("VISION_JAX_DATASETS") or os.path.join(
    os.path.dirname(_REPO_ROOT), "shared", "datasets"
  )


def cache_dir() -> str:
  """Where prepared datasets are cached: $VISION_JAX_CACHE, default ~/.cache/vision_jax."""
  return os.environ.get("VISION_JAX_CACHE") or os.path.join(
    os.path.expanduser("~"), ".cache", "vision_jax"
  )


TOO_MANY_BOXES = ("error", "keep_largest")  # data.too_many_boxes
PER_BOX = ("boxes", "labels", *BOX_FEATURES)  # a detection example's features with a row per box


def collate(
  examples: Sequence[dict], max_boxes: int = 0, too_many_boxes: str = "error"
) -> dict[str, np.ndarray]:
  """Examples as one batch of every feature they hold.

  Classification: {"image": uint8 [n, h, w, c], "label": int32 [n]}. Detection: the per-box
  features (boxes [n, max_boxes, 4] float32, labels [n, max_boxes] int32, and any of
  difficult/crowd/area) zero-padded to `max_boxes` rows (0: the most in these examples), with
  "box_mask" bool [n, max_boxes] marking the real boxes, padding after them. An example of more
  boxes is a DatasetError, or with `too_many_boxes="keep_largest"` keeps its `max_boxes` largest
  by area, in their order. (`get_splits` refuses a dataset holding such an image before training.)
  """
  first = examples[0]
  if "boxes" not in first:
    batch = {k: np.stack([e[k] for e in examples]) for k in first if k != "label"}
    return (
      {**batch, "label": np.asarray([e["label"] for e in examples], np.int32)}
      if ("label" in first)
      else batch
    )
  counts = [len(e["boxes"]) for e in examples]
  max_boxes = max_boxes or max(counts + [1])
  batch = {k: np.stack([e[k] for e in examples]) for k in first if k not in PER_BOX}
  mask = np.zeros((len(examples), max_boxes), bool)
  padded = {
    k: np.zeros((len(examples), max_boxes, *np.shape(first[k])[1:]), np.asarray(first[k]).dtype)
    for k in first
    if k in PER_BOX
  }
  for i, (e, n) in enumerate(zip(examples, counts)):
    keep = np.arange(n)
    if n > max_boxes:
      if too_many_boxes != "keep_largest":
        raise DatasetError(
          f"an image with {n} boxes, more than data.max_boxes {max_boxes}; raise "
          "data.max_boxes, or set data.too_many_boxes='keep_largest'"
        )
      b = np.asarray(e["boxes"])
      area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
      keep = np.sort(np.argsort(-area, kind="stable")[:max_boxes])
    for k in padded:
      padded[k][i, : len(keep)] = np.asarray(e[k])[keep]
    mask[i, : len(keep)] = True
  return {**batch, **padded, "box_mask": mask}


@dataclasses.dataclass
class Source:
  """A dataset whose splits are random-access data sources of examples of `spec.features()`."""

  name: str
  spec: DatasetSpec
  _splits: dict[str, Any]
  folder: str | None = (
    None  # a local dataset's prepared folder, which `prepared:<folder>` opens elsewhere
  )
  origin: str = (
    ""  # what it was prepared from: `name`, or for `prepared:<folder>` the name recorded there
  )

  # A detection dataset's most boxes in one image, per split: {split: [count, image key]}, from
  # its preparation (None: not recorded; `most_boxes` counts them).
  box_counts: dict | None = None

  def __post_init__(self):
    self.origin = self.origin or self.name

  def most_boxes(self, split: str) -> tuple[int, str]:
    """(the most boxes any image of `split` holds, that image's key); (0, "") if no boxes."""
    if self.spec.task != "detection":
      return 0, ""
    if self.box_counts is None or split not in self.box_counts:
      src = self.split(split)
      counts = (
        src.box_counts()
        if hasattr(src, "box_counts")
        else [len(src[i]["boxes"]) for i in range(len(src))]
      )
      i = int(np.argmax(counts)) if counts else 0
      self.box_counts = {**(self.box_counts or {}), split: [counts[i], f"example {i}"]}
    count, key = self.box_counts[split]
    return int(count), str(key)

  def split(self, name: str):
    if name not in self._splits:
      raise DatasetError(f"{self.name}: no split {name!r}; it has {', '.join(self._splits)}")
    return self._splits[name]

  def arrays(self, split: str, batch: int = 4096) -> dict[str, np.ndarray]:
    """Reads a whole split into memory, every feature (`collate`): classification {"image":
    uint8 [n, h, w, c], "label": int32 [n]}; detection padded to the split's most boxes."""
    src = self.split(split)
    max_boxes = self.most_boxes(split)[0]
    parts = [
      collate(src.__getitems__(list(range(start, min(start + batch, len(src))))), max_boxes)
      for start in range(0, len(src), batch)
    ]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _local_builder(
  fmt: LocalFormat,
  root: str,
  fingerprint: str,
  spec: DatasetSpec,
  data_dir: str,
  box_counts: dict | None = None,
):
  """A TFDS builder that prepares `root` (in format `fmt`, files `fingerprint`) into ArrayRecord
  files. A detection dataset's most boxes per split are recorded in `box_counts` as it is."""

  class Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version(fmt.version)
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=fingerprint)]

    def _info(self):
      return tfds.core.DatasetInfo(
        builder=self,
        description=f"{fmt.name} dataset from {root}",
        features=tfds.features.FeaturesDict(
          {
            name: (
              tfds.features.ClassLabel(names=list(spec.class_names))
              if name == "label"
              else tfds.features.Tensor(shape=shape, dtype=dtype)
            )
            for name, (shape, dtype) in spec.features().items()
          }
        ),
        supervised_keys=("image", "label") if spec.task == "classification" else None,
      )

    def _split_generators(self, dl_manager):
      del dl_manager
      return {s: self._generate_examples(s) for s in spec.splits}

    def _generate_examples(self, split):
      most = [0, ""]
      for key, ex in fmt.examples(root, split):
        _check_example(ex, ex.pop("_source", root), split, key, spec)
        if "boxes" in ex and len(ex["boxes"]) > most[0]:
          most = [len(ex["boxes"]), key]
        yield key, ex
      if box_counts is not None:
        box_counts[split] = most

  slug = (
    re.sub(r"[^a-z0-9]+", "_", os.path.basename(os.path.normpath(root)).lower()).strip("_")
    or "data"
  )
  Builder.name = f"{fmt.name}_{slug}"
  return Builder(data_dir=data_dir, file_format="array_record")


def _check_example(ex: dict, source: str, split: str, key: str, spec: DatasetSpec) -> None:
  """Refuses an example that contradicts the spec: every format's examples pass through here, so
  no format can prepare an image of another size or a label outside the classes."""
  image, label = ex.get("image"), ex.get("label")
  shape = tuple(spec.image_shape)
  if (
    not isinstance(image, np.ndarray)
    or image.dtype != np.uint8
    or image.ndim != len(shape)
    or any(want is not None and got != want for got, want in zip(image.shape, shape))
  ):
    got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
    raise DatasetError(
      f"{source}: example {key} of split {split!r} has an image of {got}, expected uint8 "
      f"{shape} like the rest of the dataset"
    )
  if spec.task == "detection":
    _check_detection(ex, source, split, key, spec)
    return
  if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
    raise DatasetError(
      f"{source}: example {key} of split {split!r} has label {label!r}, expected a class index"
    )
  if not 0 <= label < spec.num_classes:
    raise DatasetError(
      f"{source}: label {label} of example {key} (split {split!r}) is outside the class range "
      f"[0, {spec.num_classes})"
    )


def _check_detection(ex: dict, source: str, split: str, key: str, spec: DatasetSpec) -> None:
  """`_check_example` for a detection example: every feature of `spec.features()` and no other,
  one row per box in each, boxes with area inside the image, labels among the classes."""
  features = spec.features()
  if set(ex) != set(features):
    raise DatasetError(
      f"{source}: example {key} of split {split!r} has features {sorted(ex)}, expected "
      f"{sorted(features)}"
    )
  n = len(ex["boxes"]) if isinstance(ex["boxes"], np.ndarray) else -1
  for name, (shape, dtype) in features.items():
    if name == "image":
      continue
    value = ex[name]
    if not isinstance(value, np.ndarray) or value.dtype != dtype or value.shape != (n, *shape[1:]):
      got = f"{value.dtype} {value.shape}" if isinstance(value, np.ndarray) else repr(value)
      raise DatasetError(
        f"{source}: example {key} of split {split!r} has {name} {got}, expected {dtype} "
        f"[boxes{''.join(f', {d}' for d in shape[1:])}] with one row per box"
      )
  height, width = ex["image"].shape[:2]
  b = ex["boxes"]
  bad = ~(
    (b[:, 0] >= 0)
    & (b[:, 1] >= 0)
    & (b[:, 2] <= width)
    & (b[:, 3] <= height)
    & (b[:, 0] < b[:, 2])
    & (b[:, 1] < b[:, 3])
  )
  if bad.any():
    i = int(np.flatnonzero(bad)[0])
    raise DatasetError(
      f"{source}: box {i} of example {key} (split {split!r}) is {b[i].tolist()}, expected "
      f"x0 < x1 <= {width} and y0 < y1 <= {height} from 0 (pixels of the stored image)"
    )
  outside = np.flatnonzero((ex["labels"] < 0) | (ex["labels"] >= spec.num_classes))
  if outside.size:
    raise DatasetError(
      f"{source}: label {int(ex['labels'][outside[0]])} of example {key} (split {split!r}) is "
      f"outside the class range [0, {spec.num_classes})"
    )


def resolve_path(path: str) -> str:
  """A path as given if it exists, else relative to the datasets directory."""
  if os.path.isabs(path) or os.path.exists(path):
    return os.path.abspath(path)
  return os.path.join(datasets_dir(), path)


@functools.lru_cache(maxsize=None)
def get_source(name: str, **options) -> Source:
  """The dataset named `name` ("tfds:mnist", "idx:mnist", "image_folder:cifar10", ...).

  `options` are `config.data.format_options`: a local format's preparation options, or a TFDS
  detection dataset's `TfdsDetectionOptions` (its images' size).
  """
  kind, sep, rest = name.partition(":")
  if not sep or not rest:
    raise DatasetError(f"dataset {name!r}: expected '<format>:<path or name>' or 'tfds:<name>'")
  if kind == "tfds":
    return _tfds_source(rest, options)
  if kind == "prepared":
    return _prepared_source(name, rest, options)
  fmt = get_format(kind, **options)
  root = rest if kind == "sklearn" else resolve_path(rest)
  if kind != "sklearn" and not os.path.exists(root):
    raise DatasetError(
      f"{name}: {root} does not exist; set $VISION_JAX_DATASETS to the folder "
      f"holding it (now {datasets_dir()}) or name an existing path"
    )
  fingerprint = fmt.fingerprint(root)
  spec_path = os.path.join(cache_dir(), "tfds", "specs", f"{fmt.name}-{fingerprint}.json")
  spec = _load_spec(spec_path) or fmt.spec(root)
  # A detector may look for one kind of object (pedestrians) against the background.
  fewest = 1 if spec.task == "detection" else 2
  if spec.num_classes < fewest:
    raise DatasetError(
      f"{name}: {spec.num_classes} class ({', '.join(spec.class_names) or 'none'}); a dataset "
      + ("of labelled images needs two classes or more" if fewest == 2 else "needs a class")
    )
  data_dir = os.path.join(cache_dir(), "tfds")
  builder = _local_builder(fmt, root, fingerprint, spec, data_dir)
  record = os.path.join(builder.data_dir, SOURCE_RECORD)
  contents = {
    "name": name,
    "root": root,
    "format": fmt.name,
    "options": fmt.options(),
    "spec": dataclasses.asdict(spec),
  }
  if not builder.is_prepared():
    with _preparation_lock(builder.data_dir):
      # Another process may have prepared it while this one waited for the lock.
      box_counts: dict = {}
      builder = _local_builder(fmt, root, fingerprint, spec, data_dir, box_counts)
      if not builder.is_prepared():
        _clear_incomplete(builder.data_dir)
        builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(
            download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
          )
        )
        # Written under the lock, so a process that waited for it finds the box counts.
        _write_json(record, {**contents, **({"box_counts": box_counts} if box_counts else {})})
  if not os.path.exists(spec_path):
    _save_spec(spec_path, spec)
  if not os.path.exists(record):
    _write_json(record, contents)
  splits = {s: builder.as_data_source(split=s) for s in spec.splits}
  return Source(
    name=name,
    spec=spec,
    _splits=splits,
    folder=builder.data_dir,
    box_counts=_read_box_counts(record),
  )


def _read_box_counts(record: str) -> dict | None:
  """The box counts a prepared dataset's record holds (None: none recorded, or unreadable)."""
  try:
    with open(record) as f:
      return json.load(f).get("box_counts")
  except (OSError, ValueError, AttributeError):
    return None


SOURCE_RECORD = (
  "vision_jax_source.json"  # in a prepared dataset's folder: what it was prepared from
)


def _prepared_source(name: str, folder: str, options: dict) -> Source:
  """A prepared dataset's folder, opened without its source files (see the module's docstring)."""
  folder = resolve_path(folder)
  record_path = os.path.join(folder, SOURCE_RECORD)
  if not os.path.isfile(os.path.join(folder, "dataset_info.json")) or not os.path.isfile(
    record_path
  ):
    raise DatasetError(
      f"{name}: expected a folder that vision_jax prepared, holding dataset_info.json and "
      f"{SOURCE_RECORD} (<cache>/tfds/<builder>/<fingerprint>/<version>); {folder} is not one"
    )
  try:
    with open(record_path) as f:
      record = json.load(f)
    origin, fmt_name, recorded = record["name"], record["format"], record["options"]
    spec = DatasetSpec.from_dict(record["spec"])
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise DatasetError(
      f"{name}: {record_path} is unreadable or incomplete ({e}); copy the prepared folder again"
    ) from e
  if options:
    asked = get_format(fmt_name, **options).options()
    differing = {k: (recorded.get(k), v) for k, v in asked.items() if recorded.get(k) != v}
    if differing:
      raise DatasetError(
        f"{name}: prepared from {origin} with "
        + ", ".join(f"{k}={was!r}" for k, (was, _) in differing.items())
        + ", but the config asks for "
        + ", ".join(f"{k}={now!r}" for k, (_, now) in differing.items())
        + "; prepare it with those options, or drop them"
      )
  builder = tfds.builder_from_directory(folder)
  return Source(
    name=name,
    spec=spec,
    _splits={s: builder.as_data_source(split=s) for s in spec.splits},
    folder=folder,
    origin=origin,
    box_counts=record.get("box_counts"),
  )


def _load_spec(path: str) -> DatasetSpec | None:
  """The spec saved when the dataset was prepared; None if there is none or it does not parse."""
  try:
    with open(path) as f:
      return DatasetSpec.from_dict(json.load(f))
  except (OSError, ValueError, KeyError, TypeError):
    return None


def _save_spec(path: str, spec: DatasetSpec) -> None:
  """Writes the spec of a prepared dataset."""
  _write_json(path, dataclasses.asdict(spec))


def _write_json(path: str, value: Any) -> None:
  """Writes `value` as JSON atomically (a temporary file renamed into place)."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(value, f)
  os.replace(tmp, path)


@contextlib.contextmanager
def _preparation_lock(data_dir: str):
  """Holds an exclusive lock on the preparation of `data_dir` (released when the process dies)."""
  parent = os.path.dirname(data_dir)
  os.makedirs(parent, exist_ok=True)
  with open(os.path.join(parent, ".prepare.lock"), "w") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def _clear_incomplete(data_dir: str) -> None:
  """Removes temporary directories that a killed preparation left beside `data_dir` (called
  under the preparation lock, so none of them belongs to a live preparation)."""
  parent = os.path.dirname(data_dir)
  if os.path.isdir(parent):
    for entry in os.listdir(parent):
      if entry.startswith("incomplete."):
        shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)


# How long the check that a TFDS download can reach its servers waits: without a network, TFDS
# itself retries each file 10 times with growing pauses (3.5 minutes for tfds:mnist) before failing.
PROBE_TIMEOUT_S = 2.0
_GCS = ("storage.googleapis.com", 443)  # TFDS's own host, probed when a dataset lists no URLs


def _tfds_source(name: str, options: dict) -> Source:
  """A TFDS catalogue dataset, prepared as ArrayRecord (downloads need internet).

  Before anything is downloaded: the name must be in TFDS's catalogue, its examples images of one
  size with class labels, or a detection dataset's images with `objects` (`_tfds_detection`) and
  `options` giving their size, and, if it is not prepared yet, its download servers must answer
  within PROBE_TIMEOUT_S. A failed preparation leaves nothing behind (`_remove_new_temporaries`).
  """
  data_dir = os.path.join(cache_dir(), "tfds")
  builder = _tfds_builder(name, data_dir)
  detection = _tfds_detection(name, builder, options)
  if detection is None:
    if options:
      raise DatasetError(
        f"tfds:{name}: format options {sorted(options)} apply to local formats and to TFDS "
        "detection datasets, not to a TFDS dataset of labelled images"
      )
    image_key, label_key, shape, _ = _tfds_features(name, builder.info)
  if not builder.is_prepared():
    unreachable = _unreachable(_download_hosts(builder))
    if unreachable:
      raise DatasetError(
        f"tfds:{name}: not prepared in {data_dir}, and its download server "
        f"({', '.join(f'{h}:{p}' for h, p in unreachable)}) cannot be reached (tried for up "
        f"to {PROBE_TIMEOUT_S:g} s): no network? Without internet, use a local format, e.g. "
        "idx:mnist or image_folder:cifar10, or copy a prepared TFDS folder into the cache"
      )
    with _preparation_lock(builder.data_dir):
      builder = _tfds_builder(name, data_dir)  # another process may have prepared it meanwhile
      if not builder.is_prepared():
        # TFDS downloads into downloads/<name>/, extracts into downloads/extracted/ (shared with
        # other datasets) and prepares beside builder.data_dir.
        downloads = os.path.join(data_dir, "downloads", builder.name)
        roots = [downloads, os.path.dirname(builder.data_dir)]
        extracted = os.path.join(data_dir, "downloads", "extracted")
        before = _entries([*roots, extracted])
        try:
          builder.download_and_prepare()
        except Exception as e:
          _remove_new_temporaries(roots, extracted, before)
          raise DatasetError(
            f"tfds:{name}: could not download and prepare it into {data_dir} ({e}); "
            "without internet, use a local format, e.g. idx:mnist or image_folder:cifar10"
          ) from e
  if detection is not None:
    return _tfds_detection_source(name, builder, *detection)
  splits = {
    s: _Renamed(builder.as_data_source(split=s), image_key, label_key) for s in builder.info.splits
  }
  names = tuple(builder.info.features[label_key].names)  # prepared: COCO-like names are known
  return Source(
    name=f"tfds:{name}", spec=DatasetSpec(shape, names, tuple(builder.info.splits)), _splits=splits
  )


@dataclasses.dataclass(frozen=True)
class TfdsDetectionOptions:
  """`data.format_options` of a `tfds:` detection dataset (voc, coco, ...).

  Its images vary in size, and batches need one: each is resized as it is read to `image_size` x
  `image_size` by `resize` ("letterbox": scaled by the longer side and padded with black;
  "stretch"), its boxes with it (`formats.base.resize_with_boxes`, as the local detection formats
  resize theirs when they prepare them).
  """

  image_size: int = 0
  resize: str = "letterbox"

  def __post_init__(self):
    if isinstance(self.image_size, bool) or not isinstance(self.image_size, int):
      raise DatasetError(f"image_size must be a positive int, got {self.image_size!r}")
    if self.image_size < 1:
      raise DatasetError(
        "its images vary in size, and batches need one: set data.format_options.image_size "
        f"(and resize: {' or '.join(DETECTION_RESIZES)})"
      )
    if self.resize not in DETECTION_RESIZES:
      raise DatasetError(
        f"resize must be one of {', '.join(DETECTION_RESIZES)}, got {self.resize!r}"
      )


# TFDS's per-object features that become box features (formats.base.BOX_FEATURES).
TFDS_BOX_FEATURES = {"is_difficult": "difficult", "is_crowd": "crowd", "area": "area"}
# Builders whose boxes' near edges count pixels from 1: TFDS divides VOC's XML corners (1-based
# pixels, both ends included) by the image size as they are, so x0 = xmin * width - 1, while the
# far edge x1 = xmax * width already is the last pixel's far edge. COCO's boxes are continuous.
TFDS_ONE_BASED_BOXES = ("voc",)
# A TFDS split of this name combines two of its splits (TFDS's split syntax): VOC's "trainval".
TFDS_COMBINED_SPLIT = "train+validation"


def _tfds_detection(name: str, builder, options: dict) -> tuple | None:
  """(options, {TFDS box feature: ours}) of a detection dataset: TFDS's `objects` sequence of
  `bbox` (BBoxFeature) and `label` (ClassLabel) beside an `image`; None for any other dataset."""
  features = builder.info.features
  objects = features["objects"] if "objects" in features.keys() else None
  if not isinstance(objects, tfds.features.Sequence) or "image" not in features.keys():
    return None
  per_object = objects.feature
  keys = per_object.keys() if isinstance(per_object, tfds.features.FeaturesDict) else ()
  if "bbox" not in keys or not isinstance(per_object["bbox"], tfds.features.BBoxFeature):
    return None
  if "label" not in keys or not isinstance(per_object["label"], tfds.features.ClassLabel):
    raise DatasetError(f"tfds:{name}: its objects have boxes but no class label (objects/label)")
  try:
    resize = TfdsDetectionOptions(**options)
  except TypeError:
    valid = [f.name for f in dataclasses.fields(TfdsDetectionOptions)]
    raise DatasetError(
      f"tfds:{name}: a TFDS detection dataset has no option "
      f"{', '.join(map(repr, sorted(set(options) - set(valid))))}; its options: {', '.join(valid)}"
    ) from None
  except DatasetError as e:
    raise DatasetError(f"tfds:{name}: {e}") from None
  return resize, {k: v for k, v in TFDS_BOX_FEATURES.items() if k in keys}


def _tfds_detection_source(
  name: str, builder, options: TfdsDetectionOptions, box_features: dict[str, str]
) -> Source:
  """The prepared TFDS detection dataset's splits as `_TfdsDetections` (and TFDS_COMBINED_SPLIT
  where it has both of its parts)."""
  splits = list(builder.info.splits)
  if all(part in splits for part in TFDS_COMBINED_SPLIT.split("+")):
    splits.append(TFDS_COMBINED_SPLIT)
  one_based = builder.name in TFDS_ONE_BASED_BOXES
  spec = DatasetSpec(
    image_shape=(options.image_size, options.image_size, 3),
    # Read after preparation: COCO's builder names its classes only as it prepares them.
    class_names=tuple(builder.info.features["objects"]["label"].names),
    splits=tuple(splits),
    task="detection",
    box_features=tuple(b for b in BOX_FEATURES if b in box_features.values()),
  )
  return Source(
    name=f"tfds:{name}",
    spec=spec,
    _splits={
      s: _TfdsDetections(builder.as_data_source(split=s), options, box_features, one_based)
      for s in splits
    },
  )


def _tfds_builder(name: str, data_dir: str):
  """TFDS's builder for `name`; a name it does not know is a DatasetError."""
  try:
    return tfds.builder(name, data_dir=data_dir, file_format="array_record")
  except Exception as e:  # DatasetNotFoundError, or a config or version it does not have
    if isinstance(e.__cause__ or e, ModuleNotFoundError):  # coco's builder imports tensorflow
      raise DatasetError(
        f"tfds:{name}: TFDS's builder for it needs a module that is not installed "
        f"({e.__cause__ or e}); install it (e.g. pip install tensorflow), or use a local format"
      ) from None
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    hint = [line for line in lines if line.startswith("Did you mean")]
    raise DatasetError(
      f"tfds:{name}: not in TFDS's catalogue ({'; '.join((lines or [type(e).__name__])[:1] + hint)})"
    ) from None


def _tfds_features(name: str, info) -> tuple[str, str, tuple, tuple]:
  """(image key, label key, image shape, class names), checked before anything is downloaded."""
  image_key, label_key = info.supervised_keys or ("image", "label")
  features = info.features
  if not isinstance(image_key, str) or not isinstance(label_key, str):
    raise DatasetError(f"tfds:{name}: its examples are not (image, label) pairs")
  image = features[image_key] if image_key in features.keys() else None
  label = features[label_key] if label_key in features.keys() else None
  if not isinstance(image, tfds.features.Image) or not isinstance(label, tfds.features.ClassLabel):
    raise DatasetError(
      f"tfds:{name}: expected examples of an image and a class label, got {image_key}: "
      f"{type(image).__name__}, {label_key}: {type(label).__name__}"
    )
  shape = tuple(image.shape)
  if any(d is None for d in shape):
    raise DatasetError(
      f"tfds:{name}: its images vary in size ({shape}), and batches need one size; use a "
      "local format that resizes them (e.g. oxford_pets:<folder> with format_options.image_size)"
    )
  return image_key, label_key, shape, tuple(label.names)


def _download_hosts(builder) -> list[tuple[str, int]]:
  """(host, port) of the servers the builder downloads from (or the proxy that reaches them)."""
  try:
    urls = sorted(builder.url_infos or ())
  except Exception:  # a dataset without registered checksums
    urls = []
  proxies = urllib.request.getproxies()
  hosts = []
  for url in urls:
    parsed = urllib.parse.urlparse(url)
    if not parsed.hostname:
      continue
    proxy = proxies.get(parsed.scheme)
    if proxy and not urllib.request.proxy_bypass(parsed.hostname):
      parsed = urllib.parse.urlparse(proxy if "//" in proxy else "//" + proxy)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    if parsed.hostname and (parsed.hostname, port) not in hosts:
      hosts.append((parsed.hostname, port))
  return hosts[:4] or [_GCS]


def _unreachable(hosts: list[tuple[str, int]], timeout: float = PROBE_TIMEOUT_S) -> list:
  """`hosts` if none of them accepts a TCP connection within `timeout` seconds in all, else [].

  Each is tried in a daemon thread: name resolution has no timeout of its own, and a thread
  still waiting on it when the time is up is left behind rather than waited for.
  """
  answers: queue.Queue = queue.Queue()

  def probe(host: str, port: int) -> None:
    try:
      socket.create_connection((host, port), timeout=timeout).close()
      answers.put(True)
    except OSError:
      answers.put(False)

  for host, port in hosts:
    threading.Thread(target=probe, args=(host, port), daemon=True).start()
  deadline = time.monotonic() + timeout
  for _ in hosts:
    try:
      if answers.get(timeout=max(0.0, deadline - time.monotonic())):
        return []
    except queue.Empty:
      break
  return hosts


def _entries(roots: list[str]) -> set[str]:
  """The existing paths among `roots` and up to two levels below them (downloads/<dataset>/<file>)."""
  found = set()
  for root in roots:
    if os.path.isdir(root):
      found.add(root)
      for entry in os.listdir(root):
        path = os.path.join(root, entry)
        found.add(path)
        if os.path.isdir(path):
          found.update(os.path.join(path, e) for e in os.listdir(path))
  return found


def _remove_new_temporaries(roots: list[str], extracted: str, before: set[str]) -> None:
  """Removes what a failed TFDS preparation left that was not there `before`: partial downloads
  (`*.tmp.*`) and `incomplete.*` folders under `roots` (the dataset's own folders, held under its
  preparation lock, so none of them belongs to a live preparation) and the folders made for them
  that are now empty; in the shared `extracted` folder, only the partial extractions of this
  dataset's downloads."""
  downloads = {os.path.basename(p) for p in _entries(roots[:1])}
  new = sorted(_entries([*roots, extracted]) - before, key=len, reverse=True)  # deepest first
  own = [p for p in new if any(p == r or p.startswith(r + os.sep) for r in roots)]
  for path in new:
    name = os.path.basename(path)
    if path in own:
      partial = ".tmp." in name or name.startswith("incomplete.")
    else:
      partial = (
        os.path.dirname(path) == extracted
        and name.startswith("incomplete.")
        and any(name.endswith(f".{d}") for d in downloads)
      )
    if partial and os.path.isdir(path):
      shutil.rmtree(path, ignore_errors=True)
    elif partial and os.path.exists(path):
      os.remove(path)
  for path in own:
    if os.path.isdir(path) and not os.listdir(path):
      os.rmdir(path)


class _Renamed:
  """A data source whose examples are renamed to {"image", "label"}."""

  def __init__(self, src, image_key: str, label_key: str):
    self._src, self._keys = src, (image_key, label_key)

  def __len__(self) -> int:
    return len(self._src)

  def _rename(self, ex):
    return {"image": ex[self._keys[0]], "label": ex[self._keys[1]]}

  def __getitem__(self, i):
    return self._rename(self._src[i])

  def __getitems__(self, indices: Sequence[int]):
    return [self._rename(e) for e in self._src.__getitems__(indices)]


class _TfdsDetections:
  """A TFDS detection split's examples as the project's (`DatasetSpec.features`), converted as
  they are read: the image resized to `options.image_size` (`TfdsDetectionOptions`), the boxes
  from TFDS's normalised [ymin, xmin, ymax, xmax] to pixels x0, y0, x1, y1 of the resized image
  (x1, y1 exclusive edges), labels int32 [n], and the box features TFDS has (VOC's is_difficult
  as "difficult", COCO's is_crowd as "crowd" and area as "area": COCO's own, in the original
  image's pixels, where its small/medium/large ranges are defined)."""

  def __init__(self, src, options: TfdsDetectionOptions, box_features: dict, one_based: bool):
    self._src, self._options, self._box_features = src, options, box_features
    self._near = np.asarray([1, 1, 0, 0], np.float32) if one_based else np.zeros(4, np.float32)

  def __len__(self) -> int:
    return len(self._src)

  def convert(self, ex: dict) -> dict[str, np.ndarray]:
    """One TFDS example ({"image": uint8 [h, w, 3], "objects": {"bbox": [n, 4], ...}}) as ours."""
    image = np.asarray(ex["image"])
    height, width = image.shape[:2]
    objects = ex["objects"]
    size = np.asarray([width, height, width, height], np.float32)
    normalised = np.asarray(objects["bbox"], np.float32).reshape(-1, 4)
    boxes = np.clip(normalised[:, [1, 0, 3, 2]] * size - self._near, 0, size)
    pixels, boxes = resize_with_boxes(
      Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image),
      boxes,
      self._options.image_size,
      self._options.resize,
    )
    out = {
      "image": pixels,
      "boxes": boxes,
      "labels": np.asarray(objects["label"], np.int32).reshape(-1),
    }
    for key, name in self._box_features.items():
      out[name] = np.asarray(objects[key]).astype(BOX_FEATURES[name]).reshape(-1)
    return out

  def __getitem__(self, i):
    return self.convert(self._src[i])

  def __getitems__(self, indices: Sequence[int]):
    return [self.convert(e) for e in self._src.__getitems__(indices)]

  def box_counts(self) -> list[int]:
    """Each example's number of boxes, without resizing its image."""
    return [len(self._src[i]["objects"]["label"]) for i in range(len(self._src))]
