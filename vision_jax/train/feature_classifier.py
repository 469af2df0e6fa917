"""Training the classifier whose features measure sample quality (`metrics.feature_classifier`).

A metric should not train a model, so training lives here, on the training side: one of the
project's classification configs is trained through the one loop and saved as a directory that
`vision_jax.metrics.feature_classifier.load_feature_classifier` reads.

    directory = ensure_feature_classifier("lenet5_mnist", steps=2000)   # trains once, then reuses
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from typing import Sequence

from vision_jax.config import apply_overrides, load_config
from vision_jax.data.sources import cache_dir
from vision_jax.tasks.classification import ClassificationTask
from vision_jax.train.checkpoint import save_variables
from vision_jax.train.loop import train_and_evaluate


def default_directory(config_name: str, steps: int, overrides: Sequence[str] = ()) -> str:
  """$VISION_JAX_CACHE/feature_classifiers/<config>-<steps>steps[-<hash of overrides>]."""
  name = f"{config_name}-{steps}steps"
  if overrides:
    name += "-" + hashlib.sha1("\n".join(overrides).encode()).hexdigest()[:8]
  return os.path.join(cache_dir(), "feature_classifiers", name)


def train_feature_classifier(
  config_name: str, directory: str, steps: int, overrides: Sequence[str] = ()
) -> dict:
  """Trains `configs/<config_name>.py` (with `overrides`) for `steps` and saves it to `directory`.

  Returns the classifier.json record. The run itself (metrics, checkpoints) stays in
  `<directory>/run`, so a killed training resumes.
  """
  config = apply_overrides(
    load_config(config_name), [*overrides, f"train.steps={steps}", "wandb.mode=disabled"]
  )
  config.train.eval_every = steps
  config.train.checkpoint_every = steps
  config.train.visuals_every = 0
  summary = train_and_evaluate(config, os.path.join(directory, "run"), ClassificationTask)
  state = summary["state"]
  size = config.data.pad_to or summary["task"].spec.image_shape[0]
  error_key = f"{config.data.eval_splits[0]}/error"
  info = {
    "config": config_name,
    "overrides": list(overrides),
    "steps": steps,
    "model": config.model.to_dict(),
    "num_classes": summary["task"].spec.num_classes,
    "dataset": config.data.dataset,
    "image_size": int(size),
    "mean": list(config.data.mean),
    "std": list(config.data.std),
    "test_error": summary["eval"].get(error_key),
    "train_wall_s": round(summary["train_wall_s"], 1),
  }
  save_variables(
    os.path.join(directory, "variables"), {"params": state.params, **state.model_state}
  )
  with open(os.path.join(directory, "classifier.json.tmp"), "w") as f:
    json.dump(info, f, indent=2)
  os.replace(
    os.path.join(directory, "classifier.json.tmp"), os.path.join(directory, "classifier.json")
  )
  return info


def ensure_feature_classifier(
  config_name: str, steps: int, overrides: Sequence[str] = (), directory: str = ""
) -> str:
  """The directory of the feature classifier `config_name`/`steps`/`overrides`, trained if absent."""
  directory = directory or default_directory(config_name, steps, overrides)
  if not os.path.exists(os.path.join(directory, "classifier.json")):
    logging.info(
      "training the feature classifier %s (%d steps) into %s", config_name, steps, directory
    )
    variables = os.path.join(directory, "variables")
    if os.path.exists(variables):  # a save that was killed before classifier.json was written
      shutil.rmtree(variables)
    info = train_feature_classifier(config_name, directory, steps, overrides)
    logging.info("feature classifier: test error %.4f", info["test_error"] or float("nan"))
  return directory
