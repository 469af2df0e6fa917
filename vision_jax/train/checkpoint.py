"""Orbax checkpoints: the run's periodic and best checkpoints, and standalone model variables.

A run's directory holds `checkpoints/<step>` (periodic, the last few kept) and
`checkpoints_best/<step>` (the best by the configured metric). Each step is an orbax composite of
`state` (the train state pytree) and `meta` (JSON: early-stopping state, best metric, ...).
Orbax writes each step into a temporary directory and renames it when complete, so a killed
save never looks finished; a latest step that fails to restore (truncated or corrupt files)
falls back to the previous one with a warning, and never silently to a fresh start.

Model variables alone (`{"params": ..., "batch_stats": ...}`), as written by
`scripts.import_torchvision` or exported from a run, are saved with `save_variables` and read
with `load_variables`; any experiment can start from them with `--config.init_from=PATH`.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


def save_variables(path: str, variables: Any) -> None:
  """Writes model variables (a pytree of arrays) as an orbax checkpoint at `path`."""
  path = os.path.abspath(path)
  if os.path.exists(path):
    raise FileExistsError(f"{path} exists; refusing to overwrite saved variables")
  ckptr = ocp.StandardCheckpointer()
  ckptr.save(path, jax.tree.map(np.asarray, variables))
  ckptr.wait_until_finished()


def load_variables(path: str) -> Any:
  """Reads variables written by `save_variables` as a pytree of numpy arrays."""
  path = os.path.abspath(path)
  if not os.path.isdir(path):
    raise FileNotFoundError(f"no saved variables at {path}: expected a directory written by "
                            "vision_jax.train.checkpoint.save_variables or scripts.import_torchvision")
  return jax.tree.map(np.asarray, ocp.StandardCheckpointer().restore(path))
