"""Input pipelines behind one interface, feeding batches sharded over the mesh.

Both paths give the same batches for the same (seed, step): the examples of step `s` are
`permutation(fold_in(seed, epoch))[i * batch : (i + 1) * batch]` with `epoch, i = divmod(s,
steps_per_epoch)`, so a resumed run sees exactly the batches of an uninterrupted one.

- `DeviceData`: a split that fits in device memory is put on the devices once (replicated),
  and each step gathers its batch there, inside the jitted (scanned) step.
- `StreamData`: a larger split streams from its random-access source through a grain
  `MapDataset` indexed by step (read ahead by worker threads); each process reads only its share
  of the global batch and hands it over with `jax.make_array_from_process_local_data`.

The loop calls `xs(start, k)` for the scan inputs of steps [start, start + k) and, inside the
scan, `get(data, x)` for one step's batch: for `DeviceData` x is the step's example indices,
for `StreamData` the batch itself.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Iterator

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from vision_jax.data.face_protocols import apply_protocol
from vision_jax.data.formats.base import DatasetSpec
from vision_jax.data.sources import TOO_MANY_BOXES, collate, get_source
from vision_jax.errors import ConfigError, DatasetError

Batch = dict[str, Any]
# Splits up to this size (bytes) live on the devices when `data.on_device` is "auto".
ON_DEVICE_LIMIT = 4 << 30


@dataclasses.dataclass
class Split:
  """A random-access split, optionally restricted to a subset of its indices.

  A detection split pads every image's boxes to `max_boxes` (`sources.collate`), so that its
  batches have one shape whatever they hold.
  """

  source: Any
  indices: np.ndarray
  max_boxes: int = 0
  too_many_boxes: str = "error"

  def __len__(self) -> int:
    return len(self.indices)

  def read(self, positions: np.ndarray) -> dict[str, np.ndarray]:
    """Examples at `positions` (into this split), every feature: {"image": uint8 [n,h,w,c],
    "label": int32 [n]}, or a detection dataset's {"image", "boxes" [n, max_boxes, 4],
    "labels" [n, max_boxes], "box_mask" [n, max_boxes], ...} (`sources.collate`)."""
    examples = self.source.__getitems__([int(i) for i in self.indices[positions]])
    return collate(examples, self.max_boxes, self.too_many_boxes)

  def arrays(self, chunk: int = 8192) -> dict[str, np.ndarray]:
    parts = [self.read(np.arange(s, min(s + chunk, len(self)))) for s in range(0, len(self), chunk)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def get_splits(data: ml_collections.ConfigDict) -> tuple[DatasetSpec, dict[str, Split]]:
  """The dataset's splits, with `validation_size` train examples held out as "validation".

  With `data.protocol.name` set, the splits are the protocol's (`face_protocols.apply_protocol`),
  taken from the source's first split.
  """
  options = data.get("format_options")
  source = get_source(data.dataset, **(options.to_dict() if options else {}))
  splits = {
    name: Split(source.split(name), np.arange(len(source.split(name))))
    for name in source.spec.splits
  }
  if data.get("protocol") and data.protocol.get("name"):
    # A protocol (e.g. faces' closed-set identification) re-divides the source's train split.
    whole = splits[source.spec.splits[0]]
    positions = apply_protocol(data.protocol, whole.arrays()["label"])
    splits = {name: Split(whole.source, whole.indices[p]) for name, p in positions.items()}
  if data.train_split not in splits:
    raise DatasetError(
      f"{data.dataset}: no split {data.train_split!r} (data.train_split); it has {', '.join(splits)}"
    )
  if data.get("validation_size", 0):
    if "validation" in splits:
      raise DatasetError(
        f"{data.dataset}: data.validation_size holds out training examples as split "
        "'validation', but the dataset has a 'validation' split of its own; set "
        "data.validation_size=0 to use it"
      )
    train = splits[data.train_split]
    n = data.validation_size
    if not 0 < n < len(train):
      raise DatasetError(
        f"{data.dataset}: validation_size {n} must be between 0 and the "
        f"{len(train)} examples of split {data.train_split!r}"
      )
    # A fixed permutation (not the run's seed): every run holds out the same examples.
    perm = np.random.default_rng(0).permutation(len(train))
    splits["validation"] = Split(train.source, train.indices[np.sort(perm[-n:])])
    splits[data.train_split] = Split(train.source, train.indices[np.sort(perm[:-n])])
  if data.get("train_size", 0):
    train = splits[data.train_split]
    if data.train_size > len(train):
      raise DatasetError(
        f"{data.dataset}: data.train_size {data.train_size} is more than the {len(train)} "
        f"examples of split {data.train_split!r}"
        + (" left after data.validation_size" if data.get("validation_size", 0) else "")
        + " (0 = all of them)"
      )
    splits[data.train_split] = Split(train.source, train.indices[: data.train_size])
  for name in [data.train_split, *data.eval_splits]:
    if name not in splits:
      raise DatasetError(f"{data.dataset}: no split {name!r}; it has {', '.join(splits)}")
  if source.spec.task == "detection":
    splits = _pad_boxes(data, source, splits)
  return source.spec, splits


def _pad_boxes(data: ml_collections.ConfigDict, source, splits: dict[str, Split]) -> dict:
  """`splits` padding their boxes to `data.max_boxes` (0 or absent: the most in one image).

  An image of more boxes is refused here, before training, naming it and its count, unless
  `data.too_many_boxes` is "keep_largest" (its `max_boxes` largest boxes are kept).
  """
  too_many = data.get("too_many_boxes", "error")
  if too_many not in TOO_MANY_BOXES:
    raise ConfigError(
      f"data.too_many_boxes must be one of {', '.join(TOO_MANY_BOXES)}, got {too_many!r}"
    )
  most = {s: source.most_boxes(s) for s in source.spec.splits}
  max_boxes = data.get("max_boxes", 0) or max([count for count, _ in most.values()] + [1])
  for split, (count, key) in most.items():
    if count > max_boxes and too_many == "error":
      raise DatasetError(
        f"{data.dataset}: image {key} of split {split!r} has {count} boxes, more than "
        f"data.max_boxes {max_boxes}; raise data.max_boxes to {count}, or set "
        "data.too_many_boxes='keep_largest' to keep each image's largest boxes"
      )
  return {
    name: dataclasses.replace(s, max_boxes=max_boxes, too_many_boxes=too_many)
    for name, s in splits.items()
  }


def batch_indices(seed: int, step, num_examples: int, batch_size: int):
  """Indices of step `step`'s examples: a jax function of (seed, step), usable under jit."""
  steps_per_epoch = num_examples // batch_size
  epoch, i = jnp.divmod(step, steps_per_epoch)
  perm = jax.random.permutation(jax.random.fold_in(jax.random.key(seed), epoch), num_examples)
  return jax.lax.dynamic_slice(perm, (i * batch_size,), (batch_size,))


@functools.partial(
  jax.jit, static_argnames=("k", "num_epochs", "num_examples", "batch_size", "sharding")
)
def _steps_indices(
  seed,
  start,
  first_epoch,
  *,
  k: int,
  num_epochs: int,
  num_examples: int,
  batch_size: int,
  sharding: NamedSharding,
):
  steps_per_epoch = num_examples // batch_size
  perms = jax.vmap(
    lambda e: jax.random.permutation(jax.random.fold_in(jax.random.key(seed), e), num_examples)
  )(first_epoch + jnp.arange(num_epochs))
  epoch, i = jnp.divmod(start + jnp.arange(k), steps_per_epoch)
  positions = ((epoch - first_epoch) * num_examples + i * batch_size)[:, None] + jnp.arange(
    batch_size
  )
  return jax.lax.with_sharding_constraint(perms.reshape(-1)[positions], sharding)


def steps_indices(
  seed: int, start: int, k: int, num_examples: int, batch_size: int, sharding: NamedSharding
) -> jax.Array:
  """`batch_indices` of the steps [start, start + k) at once: int32 [k, batch_size].

  Each epoch's permutation is drawn once for the chunk instead of once per step (a permutation of
  60,000 examples in every step took most of the time of a small model's step on a CPU).
  """
  steps_per_epoch = num_examples // batch_size
  first, last = start // steps_per_epoch, (start + k - 1) // steps_per_epoch
  return _steps_indices(
    seed,
    start,
    first,
    k=k,
    num_epochs=last - first + 1,
    num_examples=num_examples,
    batch_size=batch_size,
    sharding=sharding,
  )


class DeviceData:
  """A split resident on the devices; batches are gathered inside the jitted step.

  The scan inputs `xs(start, k)` are the steps' example indices, [k, batch], computed on the
  devices; `get(data, x)` gathers one step's batch.
  """

  def __init__(self, split: Split, batch_size: int, mesh: Mesh, seed: int):
    check_batch(batch_size, len(split), mesh)
    self.batch_size, self.seed, self.num_examples = batch_size, seed, len(split)
    self.steps_per_epoch = len(split) // batch_size
    self._batch_sharding = NamedSharding(mesh, P("data"))
    replicated = NamedSharding(mesh, P())
    self._replicated = replicated
    arrays = split.arrays()
    self.data = {
      k: jax.make_array_from_callback(v.shape, replicated, lambda idx, v=v: v[idx])
      for k, v in arrays.items()
    }

  def xs(self, start: int, k: int) -> jax.Array:
    return steps_indices(self.seed, start, k, self.num_examples, self.batch_size, self._replicated)

  def get(self, data: Batch, indices: jax.Array) -> Batch:
    batch = {k: jnp.take(v, indices, axis=0) for k, v in data.items()}
    return jax.lax.with_sharding_constraint(batch, self._batch_sharding)


class StreamData:
  """A split streamed from its source, each process reading its share of every global batch."""

  def __init__(self, split: Split, batch_size: int, mesh: Mesh, seed: int, threads: int = 4):
    check_batch(batch_size, len(split), mesh)
    self.batch_size, self.seed, self.num_examples = batch_size, seed, len(split)
    self.steps_per_epoch = len(split) // batch_size
    self.data = None
    self._mesh, self._split, self._threads = mesh, split, threads
    self._perm_cache: dict[int, np.ndarray] = {}
    n_proc, pid = jax.process_count(), jax.process_index()
    self._local = slice(pid * batch_size // n_proc, (pid + 1) * batch_size // n_proc)
    self._iter: Iterator | None = None
    self._next_step = -1

  def _indices(self, step: int) -> np.ndarray:
    epoch, i = divmod(step, self.steps_per_epoch)
    if epoch not in self._perm_cache:
      self._perm_cache = {
        epoch: np.asarray(
          jax.device_get(
            jax.random.permutation(
              jax.random.fold_in(jax.random.key(self.seed), epoch), self.num_examples
            )
          )
        )
      }
    return self._perm_cache[epoch][i * self.batch_size : (i + 1) * self.batch_size]

  def _local_batch(self, step: int) -> dict[str, np.ndarray]:
    return self._split.read(self._indices(step)[self._local])

  def xs(self, start: int, k: int) -> Batch:
    if self._iter is None or start != self._next_step:
      steps = grain.MapDataset.range(start, 1 << 62).map(self._local_batch)
      self._iter = iter(
        steps.to_iter_dataset(
          grain.ReadOptions(num_threads=self._threads, prefetch_buffer_size=2 * self._threads)
        )
      )
    local = [next(self._iter) for _ in range(k)]
    self._next_step = start + k
    stacked = {key: np.stack([b[key] for b in local]) for key in local[0]}
    sharding = NamedSharding(self._mesh, P(None, "data"))
    return {
      key: jax.make_array_from_process_local_data(sharding, v, (k, self.batch_size) + v.shape[2:])
      for key, v in stacked.items()
    }

  def get(self, data: None, x: Batch) -> Batch:
    del data
    return x


def make_train_data(
  split: Split, data: ml_collections.ConfigDict, batch_size: int, mesh: Mesh, seed: int
):
  """DeviceData when the split fits (`data.on_device`: "auto", "yes" or "no"), else StreamData."""
  mode = data.get("on_device", "auto")  # "auto", "yes" or "no" (config.check_config)
  example = split.read(np.arange(1))
  nbytes = len(split) * sum(v[0].nbytes for v in example.values())
  if mode == "yes" or (mode == "auto" and nbytes <= ON_DEVICE_LIMIT):
    return DeviceData(split, batch_size, mesh, seed)
  return StreamData(split, batch_size, mesh, seed)


def eval_batches(split: Split, batch_size: int, mesh: Mesh) -> Iterator[Batch]:
  """The whole split in order, as global batches with a "mask" marking real (not padding) rows."""
  n_dev = mesh.devices.size
  batch_size = max(n_dev, batch_size // n_dev * n_dev)
  n_proc, pid = jax.process_count(), jax.process_index()
  local = slice(pid * batch_size // n_proc, (pid + 1) * batch_size // n_proc)
  sharding = NamedSharding(mesh, P("data"))
  for start in range(0, len(split), batch_size):
    positions = np.arange(start, start + batch_size)
    mask = positions < len(split)
    batch = split.read(np.where(mask, positions, 0)[local])
    batch["mask"] = mask[local]
    yield {
      k: jax.make_array_from_process_local_data(sharding, v, (batch_size,) + v.shape[1:])
      for k, v in batch.items()
    }


def check_batch(batch_size: int, num_examples: int, mesh: Mesh) -> None:
  """Refuses a training batch that the devices and processes cannot share or the split cannot fill."""
  n_dev = mesh.devices.size
  if batch_size % n_dev:
    raise ConfigError(f"train.batch_size {batch_size} must be a multiple of the {n_dev} devices")
  if batch_size % jax.process_count():
    raise ConfigError(
      f"train.batch_size {batch_size} must be a multiple of the {jax.process_count()} processes"
    )
  if batch_size > num_examples:
    raise ConfigError(
      f"train.batch_size {batch_size} is larger than the {num_examples} training examples "
      f"(data.train_size, data.validation_size)"
    )
