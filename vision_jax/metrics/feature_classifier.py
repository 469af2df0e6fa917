"""The classifier whose features and predictions measure sample quality (`sample_quality`).

A feature classifier is trained by one of the project's own classification configs through the
one training loop (`vision_jax.train.feature_classifier`), then saved as a directory:

    <directory>/variables        the model's variables (`save_variables`)
    <directory>/classifier.json  its model config, input size and normalisation, test error

    directory = ensure_feature_classifier("lenet5_mnist", steps=2000)   # trains once (train/)
    classifier = load_feature_classifier(directory)                     # here: load and apply
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
import json
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from vision_jax.models.registry import build_model
from vision_jax.train.checkpoint import load_variables


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
        raise ValueError(
          f"the feature classifier takes images with {len(self.mean)} channels (or 1), "
          f"got {images.shape}"
        )
      x = jax.image.resize(x, (b, self.image_size, self.image_size, x.shape[-1]), "bilinear")
    else:
      if c != len(self.mean) or h > self.image_size or w > self.image_size:
        raise ValueError(
          f"the feature classifier takes images of at most {self.image_size}x{self.image_size} "
          f"with {len(self.mean)} channels, got {images.shape}"
        )
      top, left = (self.image_size - h) // 2, (self.image_size - w) // 2
      # The classifier saw uint8 zeros as padding (pixel 0.0 before standardisation), as here.
      x = jnp.pad(
        x, ((0, 0), (top, self.image_size - h - top), (left, self.image_size - w - left), (0, 0))
      )
    x = (x - jnp.asarray(self.mean)) / jnp.asarray(self.std)
    logits, out = self.model.apply(self.variables, x, train=False)
    return jax.nn.softmax(logits.astype(jnp.float32)), out["pre_logits"].astype(jnp.float32)


def load_feature_classifier(directory: str) -> FeatureClassifier:
  """Reads a classifier saved by `vision_jax.train.feature_classifier.train_feature_classifier`."""
  path = os.path.join(directory, "classifier.json")
  if not os.path.exists(path):
    raise FileNotFoundError(
      f"no feature classifier in {directory}: expected classifier.json and variables/ "
      "written by vision_jax.train.feature_classifier.train_feature_classifier"
    )
  with open(path) as f:
    info = json.load(f)
  model = build_model(ml_collections.ConfigDict(info["model"]), num_classes=info["num_classes"])
  # Trained here: <directory>/variables; imported by scripts.import_torchvision: <directory> itself.
  variables_dir = os.path.join(directory, "variables")
  variables = jax.tree.map(
    jnp.asarray, load_variables(variables_dir if os.path.isdir(variables_dir) else directory)
  )
  return FeatureClassifier(
    model,
    variables,
    info["image_size"],
    tuple(info["mean"]),
    tuple(info["std"]),
    info,
    resize=bool(info.get("resize", False)),
  )
