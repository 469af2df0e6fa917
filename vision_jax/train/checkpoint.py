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

import gc
import inspect
import logging
import os
import sys
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

  The reads still pending when orbax gives up on a damaged checkpoint report as unraisable, each:
  tensorstore's callbacks an "Event loop is closed" RuntimeError, orbax's abandoned read coroutines
  the exception they answer being closed with (GeneratorExit) when they are collected. Dozens of
  tracebacks, at some later garbage collection, that would bury the one warning or error that says
  what happened. So the failure is kept as text, the exception and its coroutines are collected here,
  and their reports are dropped; any other unraisable exception goes to the hook that was there.
  (With debug logging on, the failure's traceback is logged.)
  """
  previous = sys.unraisablehook

  def hook(unraisable):
    exc = unraisable.exc_value
    closed_loop = isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed"
    cause = getattr(exc, "__cause__", None)
    abandoned_read = inspect.iscoroutine(unraisable.object) and isinstance(cause, GeneratorExit)
    if not (closed_loop or abandoned_read):
      previous(unraisable)

  sys.unraisablehook = hook
  try:
    try:
      return restore(), None
    except Exception as e:  # pylint: disable=broad-exception-caught
      failure = f"{e.__class__.__name__}: {str(e)[:300]}"
      logging.debug("restore failed", exc_info=True)
    time.sleep(
      0.05
    )  # the failed reads' callbacks run on tensorstore's threads, just after the error
    gc.collect()
    return None, failure
  finally:
    sys.unraisablehook = previous


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
