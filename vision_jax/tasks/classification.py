"""Image classification: a registered model, a classification loss, accuracy and error."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from vision_jax import losses, plotting
from vision_jax.models.registry import build_model
from vision_jax.tasks.base import Batch, Task, masked_mean
from vision_jax.train.optimizers import make_optimizer
from vision_jax.train.state import TrainState


class ClassificationTask(Task):
  """Trains `config.model` with `config.loss` ("cross_entropy", "mse" or "focal").

  Auxiliary outputs (intermediates named "aux*", e.g. GoogLeNet's two auxiliary classifiers in
  training) add `config.loss.aux_weight` times their own loss, each as a named loss.
  """

  def __init__(self, config, spec):
    super().__init__(config, spec)
    self.model = build_model(config.model, num_classes=spec.num_classes)
    self.loss_config = config.loss

  def init_state(self, rng, batch, total_steps):
    self.tx = make_optimizer(self.config.optim, total_steps)
    variables = self.model.init({"params": rng, "dropout": rng}, batch["image"], train=False)
    params = variables.pop("params")
    return TrainState.create(params, self.tx, dict(variables))

  def _loss(self, logits, labels):
    lc = self.loss_config
    return losses.classification_loss(
      lc.name,
      logits,
      labels,
      label_smoothing=lc.get("label_smoothing", 0.0),
      focal_gamma=lc.get("focal_gamma", 2.0),
    )

  def losses(
    self, params, state: TrainState, batch: Batch, rng
  ) -> tuple[dict[str, jnp.ndarray], tuple]:
    """Named mean losses of one training batch, and (logits, new model state).

    With `config.train.frozen_batch_stats` the model runs as at inference (train=False):
    BatchNorm normalises with its running statistics and leaves them as they are, and dropout
    is off. A linear probe wants this: its frozen backbone then computes in training exactly the
    features it computes at test time, and the statistics it was pretrained with do not drift.
    """
    if self.config.train.get("frozen_batch_stats", False):
      logits, out = self.model.apply(
        {"params": params, **state.model_state}, batch["image"], train=False
      )
      new_model_state = state.model_state
    else:
      (logits, out), new_model_state = self.model.apply(
        {"params": params, **state.model_state},
        batch["image"],
        train=True,
        rngs={"dropout": rng},
        mutable=list(state.model_state),
      )
    named = {"classification": self._loss(logits, batch["label"]).mean()}
    for name, aux in out.items():
      if name.startswith("aux"):
        named[name] = (
          self.loss_config.get("aux_weight", 0.3) * self._loss(aux, batch["label"]).mean()
        )
    return named, (logits, new_model_state)

  def train_step(self, state, batch, rng):
    def total_loss(params):
      named, aux = self.losses(params, state, batch, rng)
      return sum(named.values()), (named, aux)

    (loss, (named, (logits, model_state))), grads = jax.value_and_grad(total_loss, has_aux=True)(
      state.params
    )
    state = state.apply_gradients(self.tx, grads, model_state=dict(model_state))
    metrics = {"loss": loss, "accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"])}
    if len(named) > 1:
      metrics.update({f"loss_{k}": v for k, v in named.items()})
    return state, metrics

  def predict(self, state: TrainState, images: jnp.ndarray) -> jnp.ndarray:
    logits, _ = self.model.apply({"params": state.params, **state.model_state}, images, train=False)
    return logits

  def eval_step(self, state, batch):
    logits = self.predict(state, batch["image"])
    correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
    return {
      "loss": masked_mean(self._loss(logits, batch["label"]), batch["mask"]),
      "accuracy": masked_mean(correct, batch["mask"]),
      "error": masked_mean(1.0 - correct, batch["mask"]),
    }

  @property
  def primary_metric(self) -> str:
    return "error"

  def visuals(self, state, batch, directory, prefix):
    n = min(64, batch["image"].shape[0])
    preds = np.asarray(jax.device_get(jnp.argmax(self.predict(state, batch["image"]), -1)))[:n]
    images = np.asarray(jax.device_get(batch["raw_image"]))[:n]
    labels = np.asarray(jax.device_get(batch["label"]))[:n]
    path = os.path.join(directory, f"{prefix}predictions.png")
    plotting.prediction_grid(images, labels, preds, self.spec.class_names, path)
    return {f"{prefix}predictions": path}
