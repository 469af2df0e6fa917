"""Embedding learning: a registered model maps an image to an L2-normalised embedding, trained so
that one identity's images lie close together (faces: one person's).

`config.loss.name` picks the loss (`vision_jax.losses.metric_learning`):
- "cross_entropy": a linear classifier over the identities reads the unnormalised embedding
  (the model's "pre_logits"); after training, the normalised embedding (the penultimate
  layer's features) is what identification and verification use.
- "contrastive": every pair of the batch (`loss.contrastive_margin`).
- "triplet": batch-hard triplets (`loss.triplet_margin`).
- "arcface": the additive angular margin over learned class centres (`loss.arcface_scale`,
  `loss.arcface_margin`).
The classifier heads have one output per class of the dataset; a person held out of training
(open-set verification) simply never is a target.

Evaluation during training is per batch (the loop's (sum, count) contract): leave-one-out
nearest-neighbour accuracy within the batch, and the mean cosine of same and of different
pairs. With `train.eval_batch_size` at least the split's size (ORL), that is the whole split.
Gallery/query identification and pair verification over whole splits use `embed` and
`vision_jax.metrics` (see experiments/face_embedding_orl.py).
"""

from __future__ import annotations

import os
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vision_jax import losses, plotting
from vision_jax.config import bound
from vision_jax.data.pipeline import Split
from vision_jax.errors import ConfigError
from vision_jax.losses import metric_learning
from vision_jax.models.layers import l2_normalize
from vision_jax.models.registry import build_model
from vision_jax.tasks.base import Batch, Task, masked_mean
from vision_jax.train.optimizers import make_optimizer
from vision_jax.train.state import TrainState


class CosineClassifier(nn.Module):
  """Cosines between normalised inputs [b, d] and `num_classes` learned unit class centres: [b, classes]."""

  num_classes: int

  @nn.compact
  def __call__(self, embeddings: jnp.ndarray) -> jnp.ndarray:
    centres = self.param(
      "centres", nn.initializers.normal(0.01), (embeddings.shape[-1], self.num_classes)
    )
    return l2_normalize(embeddings) @ l2_normalize(centres, axis=0)


class EmbeddingTask(Task):
  """Trains `config.model` (a model whose output is an L2-normalised embedding) with `config.loss`.

  Params are {"embedder": the model's, "head": the classifier's} ("head" only for the
  cross_entropy and arcface losses).
  """

  RULES = {
    "loss.contrastive_margin": bound(0),
    "loss.triplet_margin": bound(0),
    "loss.arcface_margin": bound(0),
    "loss.arcface_scale": bound(0, low_open=True),
  }

  def __init__(self, config: ml_collections.ConfigDict, spec):
    super().__init__(config, spec)
    self.loss_config = lc = config.loss
    if lc.name not in metric_learning.EMBEDDING_LOSSES:
      raise ConfigError(
        f"unknown embedding loss {lc.name!r}; valid: {', '.join(metric_learning.EMBEDDING_LOSSES)}"
      )
    self.model = build_model(config.model, num_classes=spec.num_classes)
    self.head = {
      "cross_entropy": nn.Dense(spec.num_classes),
      "arcface": CosineClassifier(spec.num_classes),
    }.get(lc.name)

  def init_state(self, rng, batch, total_steps):
    self.tx = make_optimizer(self.config.optim, total_steps)
    model_rng, head_rng = jax.random.split(rng)
    variables = self.model.init(
      {"params": model_rng, "dropout": model_rng}, batch["image"], train=False
    )
    params = {"embedder": variables.pop("params")}
    embedding, out = self.model.apply(
      {"params": params["embedder"], **variables}, batch["image"], train=False
    )
    if embedding.ndim != 2:
      raise ConfigError(
        f"model {self.config.model.name!r} must output embeddings [batch, dim], got {embedding.shape}"
      )
    if self.head is not None:
      params["head"] = self.head.init(head_rng, self._head_input(embedding, out))["params"]
    return TrainState.create(params, self.tx, dict(variables))

  def _head_input(self, embedding: jnp.ndarray, out: dict) -> jnp.ndarray:
    # The softmax classifier reads the unnormalised features; ArcFace normalises them itself.
    return out["pre_logits"] if self.loss_config.name == "cross_entropy" else embedding

  def loss(
    self, params, embedding: jnp.ndarray, out: dict, labels: jnp.ndarray
  ) -> tuple[jnp.ndarray, jnp.ndarray | None]:
    """(mean loss, the classifier head's logits or None) of one batch's embeddings [b, d]."""
    lc = self.loss_config
    if lc.name == "contrastive":
      return metric_learning.contrastive_loss(embedding, labels, lc.contrastive_margin), None
    if lc.name == "triplet":
      return metric_learning.batch_hard_triplet_loss(embedding, labels, lc.triplet_margin), None
    head_out = self.head.apply({"params": params["head"]}, self._head_input(embedding, out))
    if lc.name == "arcface":
      return metric_learning.arcface_loss(
        head_out, labels, lc.arcface_scale, lc.arcface_margin
      ), head_out
    return jnp.mean(
      losses.softmax_cross_entropy(head_out, labels, lc.get("label_smoothing", 0.0))
    ), head_out

  def train_step(self, state, batch, rng):
    def total_loss(params):
      (embedding, out), model_state = self.model.apply(
        {"params": params["embedder"], **state.model_state},
        batch["image"],
        train=True,
        rngs={"dropout": rng},
        mutable=list(state.model_state),
      )
      loss, logits = self.loss(params, embedding, out, batch["label"])
      return loss, (logits, model_state)

    (loss, (logits, model_state)), grads = jax.value_and_grad(total_loss, has_aux=True)(
      state.params
    )
    state = state.apply_gradients(self.tx, grads, model_state=dict(model_state))
    metrics = {"loss": loss}
    if logits is not None:
      metrics["accuracy"] = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
    return state, metrics

  def embed(self, state: TrainState, images: jnp.ndarray) -> jnp.ndarray:
    """Normalised embeddings [b, d] of preprocessed images [b, h, w, c]."""
    embedding, _ = self.model.apply(
      {"params": state.params["embedder"], **state.model_state}, images, train=False
    )
    return embedding

  def embed_split(
    self,
    state: TrainState,
    split: Split,
    preprocess: Callable[[Batch], Batch],
    batch_size: int = 100,
  ) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings [n, d], labels [n]) of a whole split, on the host; `preprocess` is the eval one.

    Batches are padded to `batch_size`, so that one compilation serves every split.
    """
    if getattr(self, "_embed_jit", (None,))[0] is not preprocess:
      self._embed_jit = (
        preprocess,
        jax.jit(lambda state, images: self.embed(state, preprocess({"image": images})["image"])),
      )
    embed = self._embed_jit[1]
    arrays = split.arrays()
    embeddings = []
    for start in range(0, len(split), batch_size):
      images = arrays["image"][start : start + batch_size]
      padded = np.concatenate(
        [images, np.zeros((batch_size - len(images), *images.shape[1:]), images.dtype)]
      )
      embeddings.append(np.asarray(embed(state, padded))[: len(images)])
    return np.concatenate(embeddings), arrays["label"]

  def eval_step(self, state, batch):
    embedding = self.embed(state, batch["image"])
    labels, mask = batch["label"], batch["mask"].astype(bool)
    similarity = embedding @ embedding.T
    others = mask[:, None] & mask[None, :] & ~jnp.eye(labels.shape[0], dtype=bool)
    nearest = jnp.argmax(jnp.where(others, similarity, -jnp.inf), axis=1)
    correct = (labels[nearest] == labels).astype(jnp.float32)
    counted = mask & jnp.any(others, axis=1)
    same = others & (labels[:, None] == labels[None, :])
    different = others & (labels[:, None] != labels[None, :])
    pair_mean = lambda pairs: (
      jnp.sum(jnp.where(pairs, similarity, 0.0)),
      jnp.sum(pairs).astype(jnp.float32),
    )
    return {
      "nn_accuracy": masked_mean(correct, counted),
      "nn_error": masked_mean(1.0 - correct, counted),
      "same_cosine": pair_mean(same),
      "different_cosine": pair_mean(different),
    }

  @property
  def primary_metric(self) -> str:
    return "nn_error"

  def visuals(self, state, batch, directory, prefix):
    """The five nearest faces (within the batch) of each of the first eight: wrong people in brackets."""
    embedding = np.asarray(jax.device_get(self.embed(state, batch["image"])))
    mask = np.asarray(jax.device_get(batch["mask"])).astype(bool)
    images = np.asarray(jax.device_get(batch["raw_image"]))[mask]
    labels = np.asarray(jax.device_get(batch["label"]))[mask]
    embedding = embedding[mask]
    similarity = embedding @ embedding.T
    np.fill_diagonal(similarity, -np.inf)
    rows, neighbours, names = [], 5, self.spec.class_names
    titles = []
    for q in range(min(8, len(images))):
      nearest = np.argsort(-similarity[q])[:neighbours]
      rows.extend([images[q], *images[nearest]])
      titles.extend(
        [f"query {names[labels[q]]}"]
        + [names[labels[n]] if labels[n] == labels[q] else f"({names[labels[n]]})" for n in nearest]
      )
    path = os.path.join(directory, f"{prefix}nearest_faces.png")
    plotting.image_grid(np.stack(rows), path, cols=neighbours + 1, titles=titles)
    return {f"{prefix}nearest_faces": path}
