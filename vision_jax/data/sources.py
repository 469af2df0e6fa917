"""Datasets by name: `tfds:<name>` for TFDS's catalogue, `<format>:<path or name>` for local files.

    source = get_source("idx:mnist")          # $VISION_JAX_DATASETS/mnist, IDX files
    source = get_source("image_folder:cifar10")
    source = get_source("sklearn:digits")
    source = get_source("tfds:cifar10")       # needs internet the first time (and tensorflow)
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

from vision_jax.data.formats import LocalFormat, get_format
from vision_jax.data.formats.base import DatasetSpec
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


@dataclasses.dataclass
class Source:
  """A dataset whose splits are random-access data sources of {"image", "label"} examples."""

  name: str
  spec: DatasetSpec
  _splits: dict[str, Any]
  folder: str | None = (
    None  # a local dataset's prepared folder, which `prepared:<folder>` opens elsewhere
  )
  origin: str = (
    ""  # what it was prepared from: `name`, or for `prepared:<folder>` the name recorded there
  )

  def __post_init__(self):
    self.origin = self.origin or self.name

  def split(self, name: str):
    if name not in self._splits:
      raise DatasetError(f"{self.name}: no split {name!r}; it has {', '.join(self._splits)}")
    return self._splits[name]

  def arrays(self, split: str, batch: int = 4096) -> dict[str, np.ndarray]:
    """Reads a whole split into memory: {"image": uint8 [n, h, w, c], "label": int32 [n]}."""
    src = self.split(split)
    images, labels = [], []
    for start in range(0, len(src), batch):
      examples = src.__getitems__(list(range(start, min(start + batch, len(src)))))
      images.extend(e["image"] for e in examples)
      labels.extend(e["label"] for e in examples)
    return {"image": np.stack(images), "label": np.asarray(labels, np.int32)}


def _local_builder(fmt: LocalFormat, root: str, fingerprint: str, spec: DatasetSpec, data_dir: str):
  """A TFDS builder that prepares `root` (in format `fmt`, files `fingerprint`) into ArrayRecord files."""

  class Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version(fmt.version)
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=fingerprint)]

    def _info(self):
      return tfds.core.DatasetInfo(
        builder=self,
        description=f"{fmt.name} dataset from {root}",
        features=tfds.features.FeaturesDict(
          {
            "image": tfds.features.Tensor(shape=tuple(spec.image_shape), dtype=np.uint8),
            "label": tfds.features.ClassLabel(names=list(spec.class_names)),
          }
        ),
        supervised_keys=("image", "label"),
      )

    def _split_generators(self, dl_manager):
      del dl_manager
      return {s: self._generate_examples(s) for s in spec.splits}

    def _generate_examples(self, split):
      for key, ex in fmt.examples(root, split):
        _check_example(ex, ex.pop("_source", root), split, key, spec)
        yield key, ex

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
  if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
    raise DatasetError(
      f"{source}: example {key} of split {split!r} has label {label!r}, expected a class index"
    )
  if not 0 <= label < spec.num_classes:
    raise DatasetError(
      f"{source}: label {label} of example {key} (split {split!r}) is outside the class range "
      f"[0, {spec.num_classes})"
    )


def resolve_path(path: str) -> str:
  """A path as given if it exists, else relative to the datasets directory."""
  if os.path.isabs(path) or os.path.exists(path):
    return os.path.abspath(path)
  return os.path.join(datasets_dir(), path)


@functools.lru_cache(maxsize=None)
def get_source(name: str, **options) -> Source:
  """The dataset named `name` ("tfds:mnist", "idx:mnist", "image_folder:cifar10", ...).

  `options` are the local format's preparation options (`config.data.format_options`).
  """
  kind, sep, rest = name.partition(":")
  if not sep or not rest:
    raise DatasetError(f"dataset {name!r}: expected '<format>:<path or name>' or 'tfds:<name>'")
  if kind == "tfds":
    if options:
      raise DatasetError(
        f"{name}: format options {sorted(options)} apply to local formats, not to TFDS datasets"
      )
    return _tfds_source(rest)
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
  if spec.num_classes < 2:
    raise DatasetError(
      f"{name}: {spec.num_classes} class ({', '.join(spec.class_names) or 'none'}); a dataset "
      "of labelled images needs two classes or more"
    )
  builder = _local_builder(fmt, root, fingerprint, spec, os.path.join(cache_dir(), "tfds"))
  if not builder.is_prepared():
    with _preparation_lock(builder.data_dir):
      # Another process may have prepared it while this one waited for the lock.
      builder = _local_builder(fmt, root, fingerprint, spec, os.path.join(cache_dir(), "tfds"))
      if not builder.is_prepared():
        _clear_incomplete(builder.data_dir)
        builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(
            download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
          )
        )
  if not os.path.exists(spec_path):
    _save_spec(spec_path, spec)
  record = os.path.join(builder.data_dir, SOURCE_RECORD)
  if not os.path.exists(record):
    _write_json(
      record,
      {
        "name": name,
        "root": root,
        "format": fmt.name,
        "options": fmt.options(),
        "spec": dataclasses.asdict(spec),
      },
    )
  splits = {s: builder.as_data_source(split=s) for s in spec.splits}
  return Source(name=name, spec=spec, _splits=splits, folder=builder.data_dir)


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
    spec = DatasetSpec(
      image_shape=tuple(record["spec"]["image_shape"]),
      class_names=tuple(record["spec"]["class_names"]),
      splits=tuple(record["spec"]["splits"]),
    )
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
  )


def _load_spec(path: str) -> DatasetSpec | None:
  """The spec saved when the dataset was prepared; None if there is none or it does not parse."""
  try:
    with open(path) as f:
      d = json.load(f)
    return DatasetSpec(
      image_shape=tuple(d["image_shape"]),
      class_names=tuple(d["class_names"]),
      splits=tuple(d["splits"]),
    )
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


def _tfds_source(name: str) -> Source:
  """A TFDS catalogue dataset, prepared as ArrayRecord (downloads need internet).

  Before anything is downloaded: the name must be in TFDS's catalogue, its examples images of one
  size with class labels, and, if it is not prepared yet, its download servers must answer within
  PROBE_TIMEOUT_S. A failed preparation leaves nothing behind (see `_remove_new_temporaries`).
  """
  data_dir = os.path.join(cache_dir(), "tfds")
  builder = _tfds_builder(name, data_dir)
  image_key, label_key, shape, names = _tfds_features(name, builder.info)
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
  splits = {
    s: _Renamed(builder.as_data_source(split=s), image_key, label_key) for s in builder.info.splits
  }
  return Source(
    name=f"tfds:{name}", spec=DatasetSpec(shape, names, tuple(builder.info.splits)), _splits=splits
  )


def _tfds_builder(name: str, data_dir: str):
  """TFDS's builder for `name`; a name it does not know is a DatasetError."""
  try:
    return tfds.builder(name, data_dir=data_dir, file_format="array_record")
  except Exception as e:  # DatasetNotFoundError, or a config or version it does not have
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
