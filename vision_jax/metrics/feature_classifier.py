"""The classifier whose features and predictions measure sample quality (`sample_quality`).

A feature classifier is trained by one of the project's own classification configs through the
one training loop, then saved as a directory:

    <directory>/variables        the model's variables (`save_variables`)
    <directory>/classifier.json  its model config, input size and normalisation, test error

    classifier = ensure_feature_classifier("lenet5_mnist", steps=2000)   # trains once, then loads
    probs, features = classifier(images)   # images in [-1, 1], as a generator makes them

The standard FID and Inception score need the FID Inception-v3 weights instead (pytorch-fid's
`pt_inception-2015-12-05-*.pth`, not available offline here). Imported with

    python -m scripts.import_torchvision inception_v3_fid pt_inception-2015-12-05-6726825d.pth DIR

DIR is a feature classifier too (its classifier.json says "resize": images are resized to 299x299
bilinearly, not zero-padded), and `--config.gan.classifier.directory=DIR` makes a GAN experiment
report the standard FID and Inception score.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from vision_jax.train.checkpoint import load_variables, save_variables


@dataclasses.dataclass(frozen=True, eq=False)
class FeatureClassifier:
  """A trained classifier applied to generated images.

  Attributes:
    model: the registered classification model.
    variables: its variables ({"params": ..., and e.g. "batch_stats"}).
    image_size: the height and width it was trained at; smaller images are zero-padded to it.
    mean, std: the per-channel standardisation of its training data (images in [0, 1]).
    info: what classifier.json records (config, steps, test error, ...).
    resize: resize images to image_size (bilinear, as FID's Inception does) instead of padding
      them; grey images are then repeated over the classifier's three channels.
  """
  model: nn.Module
  variables: Any
  image_size: int
  mean: tuple[float, ...]
  std: tuple[float, ...]
  info: dict
  resize: bool = False

  def __call__(self, images: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """images: [b, h, w, c] in [-1, 1]. Returns (class probabilities [b, K], features [b, F])."""
    b, h, w, c = images.shape
    x = (images.astype(jnp.float32) + 1.0) / 2.0
    if self.resize:
      if c == 1 and len(self.mean) == 3:
        x = jnp.repeat(x, 3, axis=-1)
      elif c != len(self.mean):
        raise ValueError(f"the feature classifier takes images with {len(self.mean)} channels (or 1), "
                         f"got {images.shape}")
      x = jax.image.resize(x, (b, self.image_size, self.image_size, x.shape[-1]), "bilinear")
    else:
      if c != len(self.mean) or h > self.image_size or w > self.image_size:
        raise ValueError(f"the feature classifier takes images of at most {self.image_size}x{self.image_size} "
                         f"with {len(self.mean)} channels, got {images.shape}")
      top, left = (self.image_size - h) // 2, (self.image_size - w) // 2
      # The classifier saw uint8 zeros as padding (pixel 0.0 before standardisation), as here.
      x = jnp.pad(x, ((0, 0), (top, self.image_size - h - top), (left, self.image_size - w - left), (0, 0)))
    x = (x - jnp.asarray(self.mean)) / jnp.asarray(self.std)
    logits, out = self.model.apply(self.variables, x, train=False)
    return jax.nn.softmax(logits.astype(jnp.float32)), out["pre_logits"].astype(jnp.float32)


def load_feature_classifier(directory: str) -> FeatureClassifier:
  """Reads a classifier saved by `train_feature_classifier`."""
  from vision_jax.tasks.classification import build_model  # pylint: disable=g-import-not-at-top
  path = os.path.join(directory, "classifier.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"no feature classifier in {directory}: expected classifier.json and variables/ "
                            "written by vision_jax.metrics.feature_classifier.train_feature_classifier")
  with open(path) as f:
    info = json.load(f)
  model = build_model(ml_collections.ConfigDict(info["model"]), info["num_classes"])
  # Trained here: <directory>/variables; imported by scripts.import_torchvision: <directory> itself.
  variables_dir = os.path.join(directory, "variables")
  variables = jax.tree.map(jnp.asarray, load_variables(variables_dir if os.path.isdir(variables_dir) else directory))
  return FeatureClassifier(model, variables, info["image_size"], tuple(info["mean"]), tuple(info["std"]), info,
                           resize=bool(info.get("resize", False)))


def default_directory(config_name: str, steps: int, overrides: Sequence[str] = ()) -> str:
  """$VISION_JAX_CACHE/feature_classifiers/<config>-<steps>steps[-<hash of overrides>]."""
  from vision_jax.data.sources import cache_dir  # pylint: disable=g-import-not-at-top
  name = f"{config_name}-{steps}steps"
  if overrides:
    name += "-" + hashlib.sha1("\n".join(overrides).encode()).hexdigest()[:8]
  return os.path.join(cache_dir(), "feature_classifiers", name)


def train_feature_classifier(config_name: str, directory: str, steps: int, overrides: Sequence[str] = ()) -> dict:
  """Trains `configs/<config_name>.py` (with `overrides`) for `steps` and saves it to `directory`.

  Returns the classifier.json record. The run itself (metrics, checkpoints) stays in
  `<directory>/run`, so a killed training resumes.
  """
  from vision_jax.config import apply_overrides, load_config  # pylint: disable=g-import-not-at-top
  from vision_jax.tasks import ClassificationTask  # pylint: disable=g-import-not-at-top
  from vision_jax.train.loop import train_and_evaluate  # pylint: disable=g-import-not-at-top
  config = apply_overrides(load_config(config_name), [*overrides, f"train.steps={steps}", "wandb.mode=disabled"])
  config.train.eval_every = steps
  config.train.checkpoint_every = steps
  config.train.visuals_every = 0
  summary = train_and_evaluate(config, os.path.join(directory, "run"), ClassificationTask)
  state = summary["state"]
  size = config.data.pad_to or summary["task"].spec.image_shape[0]
  error_key = f"{config.data.eval_splits[0]}/error"
  info = {"config": config_name, "overrides": list(overrides), "steps": steps, "model": config.model.to_dict(),
          "num_classes": summary["task"].spec.num_classes, "dataset": config.data.dataset, "image_size": int(size),
          "mean": list(config.data.mean), "std": list(config.data.std),
          "test_error": summary["eval"].get(error_key), "train_wall_s": round(summary["train_wall_s"], 1)}
  save_variables(os.path.join(directory, "variables"), {"params": state.params, **state.model_state})
  with open(os.path.join(directory, "classifier.json.tmp"), "w") as f:
    json.dump(info, f, indent=2)
  os.replace(os.path.join(directory, "classifier.json.tmp"), os.path.join(directory, "classifier.json"))
  return info


def ensure_feature_classifier(config_name: str, steps: int, overrides: Sequence[str] = (),
                              directory: str = "") -> str:
  """The directory of the feature classifier `config_name`/`steps`/`overrides`, trained if absent."""
  directory = directory or default_directory(config_name, steps, overrides)
  if not os.path.exists(os.path.join(directory, "classifier.json")):
    logging.info("training the feature classifier %s (%d steps) into %s", config_name, steps, directory)
    variables = os.path.join(directory, "variables")
    if os.path.exists(variables):  # a save that was killed before classifier.json was written
      import shutil  # pylint: disable=g-import-not-at-top
      shutil.rmtree(variables)
    info = train_feature_classifier(config_name, directory, steps, overrides)
    logging.info("feature classifier: test error %.4f", info["test_error"] or float("nan"))
  return directory
