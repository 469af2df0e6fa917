"""Orbax checkpoints: the run's periodic and best checkpoints, and standalone model variables.

A run's directory holds `checkpoints/<step>` (periodic, the last few kept) and
`checkpoints_best/<step>` (the best by the configured metric). Each step is an orbax composite of
`state` (the train state pytree) and `meta` (JSON: early-stopping state, best metric, ...).
Orbax writes each step into a temporary directory and renames it when complete, so a killed
save never looks finished; a latest step that fails to restore (truncated or corrupt files)
falls back to the previous one with a warning, and never silently to a fresh start.

Model variables alone (`{"params": ..., "batch_stats": ...}`), as written by
`scripts.import_torchvision` or exported from a run, are saved with `save_variables` and read
with `load_variables`, which also reads them out of a run's checkpoint; any experiment can start
from either with `--config.init_from=PATH`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp

from vision_jax.errors import CheckpointError


def save_variables(path: str, variables: Any) -> None:
  """Writes model variables (a pytree of arrays) as an orbax checkpoint at `path`."""
  path = os.path.abspath(path)
  if os.path.exists(path):
    raise FileExistsError(f"{path} exists; refusing to overwrite saved variables")
  ckptr = ocp.StandardCheckpointer()
  ckptr.save(path, jax.tree.map(np.asarray, variables))
  ckptr.wait_until_finished()


def load_variables(path: str) -> Any:
  """Model variables ({"params": ..., "batch_stats": ...}) as a pytree of numpy arrays, from

  - a directory written by `save_variables` (or `scripts.import_torchvision`);
  - a training run's workdir: the variables of its latest checkpoint, `checkpoints/<step>`;
  - one step of a run, `<workdir>/checkpoints/<step>` or `<workdir>/checkpoints_best/<step>`.
  """
  path = os.path.abspath(path)
  if not os.path.isdir(path):
    raise CheckpointError(
      f"no saved variables at {path}: expected a directory written by "
      "vision_jax.train.checkpoint.save_variables or scripts.import_torchvision, "
      "a training run's workdir, or one of its checkpoints/<step>"
    )
  step_dir = _run_step(path)

  def read():
    if step_dir is None:
      return jax.tree.map(np.asarray, ocp.StandardCheckpointer().restore(path))
    logging.info("reading the model variables of the run checkpoint %s", step_dir)
    state = read_state(os.path.join(step_dir, "state"))
    return {"params": state["params"], **state["model_state"]}

  variables, failure = _restore_quietly(
    read
  )  # orbax raises many types for damaged or foreign directories
  if failure:
    raise CheckpointError(
      f"{step_dir or path} does not read as saved variables ({failure}); expected a "
      "directory written by save_variables, scripts.import_torchvision or a training run"
    )
  return variables


def restore_variables(target: dict, loaded: dict, prefix: str = "", source: str = "") -> dict:
  """`target`, model variables {collection: tree} ("params", "batch_stats", ...), with the values
  of the saved variables `loaded` placed under the module path `prefix`.

  prefix: "" for the whole model; "backbone" (or "a/b" deeper) puts a classifier's variables
  under a detector's backbone submodule, leaving the rest of the model (its head) as it is, as
  scenic's init_from_pretrain_state with a model prefix path. Every parameter and statistic
  under the prefix must match the saved ones by name and shape, except a classifier head's
  output dimension: saved variables for another number of classes leave the fresh head, with a
  warning saying so. Any other mismatch is one CheckpointError listing every path ("source" in
  it names the saved variables). Saved variables without a "params" collection are parameters.
  """
  if "params" not in loaded:
    loaded = {"params": loaded}
  keys = [k for k in prefix.split("/") if k]
  merged, reinit = dict(target), []
  mismatched = [f"{c}: in the checkpoint, not in the model" for c in loaded if c not in target]
  for collection, tree in target.items():
    inner = tree
    for key in keys:
      inner = inner.get(key) if isinstance(inner, dict) else None
    if inner is None:  # nothing of this collection under the prefix: nothing to load
      if collection in loaded:
        mismatched.append(f"{collection}/{prefix}: in the checkpoint, not in the model")
      continue
    path = "/".join([collection, *keys])
    if collection not in loaded:
      mismatched.append(f"{path}: missing in the checkpoint")
      continue
    value, m, r = _merge(inner, loaded[collection], path)
    mismatched, reinit = mismatched + m, reinit + r
    merged[collection] = _replace_at(tree, keys, value)
  if mismatched:
    raise CheckpointError(
      f"init_from {source}{f' (under {prefix!r})' if prefix else ''}: the checkpoint does not "
      "match the model:\n  " + "\n  ".join(mismatched)
    )
  if reinit:
    logging.warning(
      "init_from %s: re-initialising the head for a different number of classes: %s",
      source,
      "; ".join(reinit),
    )
  return merged


def _replace_at(tree: dict, keys: list[str], value: Any) -> Any:
  """A copy of the nested dict `tree` with its subtree at `keys` replaced by `value`."""
  if not keys:
    return value
  return {**tree, keys[0]: _replace_at(tree[keys[0]], keys[1:], value)}


def _merge(target, loaded, path=""):
  """Copies `loaded` into `target`'s structure. Returns (merged, mismatches, reinitialised head leaves).

  A head leaf ("head/..." at any depth) whose shape differs from the checkpoint's only in its last
  (class) dimension keeps `target`'s fresh value.
  """
  mismatched, reinit = [], []
  if isinstance(target, dict) or isinstance(loaded, dict):
    if not (isinstance(target, dict) and isinstance(loaded, dict)):
      return (
        target,
        [
          f"{path}: {'a module' if isinstance(target, dict) else 'an array'} in the model, "
          f"{'a module' if isinstance(loaded, dict) else 'an array'} in the checkpoint"
        ],
        [],
      )
    out = {}
    for k, v in target.items():
      if k not in loaded:
        mismatched.append(f"{path}/{k}: missing in the checkpoint")
        out[k] = v
        continue
      out[k], m, r = _merge(v, loaded[k], f"{path}/{k}")
      mismatched += m
      reinit += r
    mismatched += [
      f"{path}/{k}: in the checkpoint, not in the model" for k in loaded if k not in target
    ]
    return out, mismatched, reinit
  model_shape, saved_shape = tuple(np.shape(target)), tuple(np.shape(loaded))
  if model_shape == saved_shape:
    return np.asarray(loaded, target.dtype), [], []
  is_head = "/head/" in f"/{path}/"
  if is_head and len(model_shape) == len(saved_shape) and model_shape[:-1] == saved_shape[:-1]:
    return target, [], [f"{path} {saved_shape} -> {model_shape}"]
  return target, [f"{path}: checkpoint {saved_shape} vs model {model_shape}"], []


def _run_step(path: str) -> str | None:
  """The run checkpoint step directory that `path` names (itself, or a workdir's latest), or None."""
  if os.path.isdir(os.path.join(path, "state")):
    return path
  directory = os.path.join(path, "checkpoints")
  if not os.path.isdir(directory):
    return None
  steps = [
    int(s) for s in os.listdir(directory) if s.isdigit()
  ]  # finished steps only: orbax renames when done
  if not steps:
    raise CheckpointError(
      f"{path} is a run's workdir, but {directory} holds no finished checkpoint"
    )
  return os.path.join(directory, str(max(steps)))


class CheckpointStore:
  """A run's periodic checkpoints (the last `keep`) and its best one by a metric."""

  def __init__(self, workdir: str, keep: int = 3):
    self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    self.best_directory = os.path.join(os.path.abspath(workdir), "checkpoints_best")
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options)
    self._best = ocp.CheckpointManager(
      self.best_directory, options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True)
    )

  def save(self, step: int, state: Any, meta: dict, best: bool = False) -> None:
    """Saves `state` and the JSON-able `meta` at `step` (and as the best, if `best`)."""
    args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
    if step not in self._manager.all_steps():
      self._manager.save(step, args=args)
    if best:
      for old in self._best.all_steps():
        if old != step:
          self._best.delete(old)
      if step not in self._best.all_steps():
        self._best.save(
          step,
          args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
        )

  def wait(self) -> None:
    self._manager.wait_until_finished()
    self._best.wait_until_finished()

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def restore_latest(self, abstract_state: Any) -> tuple[Any, dict] | None:
    """The newest checkpoint that restores, as (state, meta); None if there is none.

    A step that fails to restore (truncated or corrupt files) is tried no further: the previous
    one is, with a warning, and once one restores the failed ones are moved aside to
    `checkpoints/corrupt-<step>`. If every checkpoint is unreadable this raises and moves nothing,
    so that running again raises again rather than start silently from scratch.
    """
    steps = sorted(self._manager.all_steps(), reverse=True)
    if not steps:
      return None
    errors, failed = [], []
    for step in steps:
      restored, failure = _restore_quietly(
        lambda step=step: self._manager.restore(
          step,
          args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
          ),
        )
      )
      if failure:  # orbax raises many types for damaged files
        errors.append(f"step {step}: {failure}")
        failed.append(step)
        logging.warning(
          "checkpoint at step %d in %s does not restore (%s); falling back to the previous one",
          step,
          self.directory,
          failure.partition(":")[0],
        )
        continue
      if failed:
        if jax.process_index() == 0:
          for bad in failed:
            os.replace(
              os.path.join(self.directory, str(bad)), os.path.join(self.directory, f"corrupt-{bad}")
            )
        logging.warning(
          "moved the checkpoints that do not restore aside: %s",
          ", ".join(f"corrupt-{bad}" for bad in failed),
        )
        self._manager.reload()
      return restored["state"], dict(restored["meta"])
    raise CheckpointError(
      f"no checkpoint in {self.directory} restores; refusing to start from scratch "
      "over them. Move the directory away to start afresh.\n  " + "\n  ".join(errors)
    )

  def restore_best(self, abstract_state: Any) -> tuple[Any, dict] | None:
    step = self._best.latest_step()
    if step is None:
      return None
    restored = self._best.restore(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
      ),
    )
    return restored["state"], dict(restored["meta"])

  def close(self) -> None:
    self._manager.close()
    self._best.close()


def _restore_quietly(restore: Callable[[], Any]) -> tuple[Any, str | None]:
  """(restore(), None), or (None, "<exception class>: <message>") when it raises.

  Orbax runs a restore's reads as asyncio tasks on an event loop of its own (`run_sync`), which it
  closes as soon as one read fails, with the others still waiting for tensorstore. Left there,
  each would report when it finally went: tensorstore's callback, on its thread when the read
  ended, an "Event loop is closed" error; the task's coroutine, at whichever garbage collection
  freed it (the task and the future it waits on hold each other), on any thread and at any later
  time, the exception it answers being closed with, or a "never awaited" warning. Dozens of
  tracebacks burying the one warning that says what happened, which no hook held for a while can
  be sure to catch: how late they come depends on the machine's load. So while the restore runs,
  an event loop closed with tasks pending runs them to their end first
  (`_loops_finish_their_tasks`): every read ends, with its error, on an open loop, and nothing is
  left to report. (With debug logging on, the failure's traceback is logged.)
  """
  with _loops_finish_their_tasks():
    try:
      return restore(), None
    except Exception as e:  # pylint: disable=broad-exception-caught
      logging.debug("restore failed", exc_info=True)
      return None, f"{e.__class__.__name__}: {str(e)[:300]}"


# How long a closing event loop waits for its pending tasks before it cancels them: the reads of a
# damaged checkpoint end within milliseconds, each with its error; only a hung file system waits.
FINISH_TASKS_TIMEOUT_S = 60.0


@contextlib.contextmanager
def _loops_finish_their_tasks():
  """While open, every new asyncio event loop finishes its pending tasks when it is closed.

  Through the event loop policy, which makes the loop of orbax's `run_sync` (`new_event_loop`):
  public up to Python 3.13, deprecated from 3.14 on."""
  base = asyncio.get_event_loop_policy()
  if isinstance(base, _LoopsFinishTheirTasks):
    yield
    return
  asyncio.set_event_loop_policy(_LoopsFinishTheirTasks(base))
  try:
    yield
  finally:
    asyncio.set_event_loop_policy(base)


class _LoopsFinishTheirTasks(asyncio.AbstractEventLoopPolicy):
  """The event loop policy in force (`base`), except that the loops it makes, when closed with
  tasks pending, run them to their end first (cancelling any left after FINISH_TASKS_TIMEOUT_S),
  as `asyncio.run` would cancel them, rather than leave them to be torn down by the garbage
  collector."""

  def __init__(self, base: asyncio.AbstractEventLoopPolicy):
    self._base = base

  def get_event_loop(self):
    return self._base.get_event_loop()

  def set_event_loop(self, loop):
    self._base.set_event_loop(loop)

  def get_child_watcher(self):  # Python < 3.14
    return self._base.get_child_watcher()

  def set_child_watcher(self, watcher):
    self._base.set_child_watcher(watcher)

  def new_event_loop(self):
    loop = self._base.new_event_loop()
    close = loop.close

    def finish_then_close():
      _finish_pending_tasks(loop)
      close()

    loop.close = finish_then_close
    return loop


def _finish_pending_tasks(loop: asyncio.AbstractEventLoop) -> None:
  """Runs `loop`'s pending tasks to their end (see `_LoopsFinishTheirTasks`)."""
  if loop.is_closed() or loop.is_running():
    return
  deadline = time.monotonic() + FINISH_TASKS_TIMEOUT_S
  while pending := asyncio.all_tasks(loop):
    remaining = deadline - time.monotonic()
    if remaining <= 0:
      logging.warning("cancelling %d reads of a failed restore that did not end", len(pending))
      for task in pending:
        task.cancel()
      _run_to_end(loop, pending, timeout=5.0)
      return
    _run_to_end(loop, pending, remaining)


def _run_to_end(loop: asyncio.AbstractEventLoop, tasks: set[asyncio.Task], timeout: float) -> None:
  done, _ = loop.run_until_complete(asyncio.wait(tasks, timeout=timeout))
  for task in done:  # errors like the first one's, which the restore reports: none is lost
    if not task.cancelled():
      task.exception()


def read_state(step_dir: str) -> Any:
  """A run's saved train state (`checkpoints/<step>/state`) as numpy arrays, on any topology.

  Orbax restores arrays onto the devices they were saved from; this reads them onto this
  process's first device instead, so a checkpoint of an 8-device or multi-process run can be
  inspected (or compared) from a 1-device process.
  """
  ckptr = ocp.StandardCheckpointer()
  metadata = ckptr.metadata(step_dir)
  metadata = getattr(metadata, "item_metadata", metadata)
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), metadata)
  return jax.tree.map(np.asarray, ckptr.restore(step_dir, target))
