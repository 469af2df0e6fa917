"""The interface between a task and the one training loop."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vision_jax import config as config_lib
from vision_jax.data.formats.base import DatasetSpec
from vision_jax.models.registry import check_model_config
from vision_jax.train.optimizers import check_schedules
from vision_jax.train.state import TrainState

Batch = dict[str, jnp.ndarray]
Metrics = dict[str, jnp.ndarray]


class Task:
  """What the loop needs from a model family.

  `train_step` is traced once inside the loop's jitted, scanned step. A task may update several
  parameter groups in one step (a GAN's n critic updates and one generator update), and may
  return several named losses (a detector); the loop never looks inside.

  `eval_step` returns (sum, count) pairs per metric so that they average correctly across
  batches, padding and devices; `batch["mask"]` marks the real examples.

  A metric of the whole split that is neither a mean nor a sum (average precision, a median)
  comes from `eval_outputs`: per-example arrays of each eval batch, gathered on the host over
  the split in order, the padding rows dropped, and scored once by `evaluate_outputs`. Its
  metrics join `eval_metrics`' under the same `<split>/<metric>` names.
  """

  # The bounds of the task's own settings (`config.bound`, `one_of`, `each`, `checked_where_used`),
  # checked with the common ones by `check_settings`.
  RULES: dict[str, config_lib.Rule] = {}

  def __init__(self, config: ml_collections.ConfigDict, spec: DatasetSpec):
    self.config, self.spec = config, spec

  @classmethod
  def check_settings(cls, config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError for an impossible setting or a model that cannot be built, before any
    data are read: the common bounds and the task's `RULES`, each optimizer's schedule against
    the run's length (`optimizer_updates`), then `check_models`."""
    config_lib.check_config(config, cls.RULES)
    check_schedules(config, cls.optimizer_updates(config))
    cls.check_models(config)

  @classmethod
  def optimizer_updates(cls, config: ml_collections.ConfigDict) -> dict[str, tuple[int, str]]:
    """The updates in a run of an optimizer that does not update once a step, which its schedule
    counts: its config key -> (how many, that number in the config's words). Every optimizer
    updates once a step (train.steps in a run) by default."""
    return {}

  @classmethod
  def check_models(cls, config: ml_collections.ConfigDict) -> None:
    """The models the task builds are registered and take their settings; one `config.model` by
    default."""
    check_model_config(config.model)

  def init_state(self, rng: jax.Array, batch: Batch, total_steps: int) -> TrainState:
    raise NotImplementedError

  def train_step(
    self, state: TrainState, batch: Batch, rng: jax.Array
  ) -> tuple[TrainState, Metrics]:
    raise NotImplementedError

  def eval_step(
    self, state: TrainState, batch: Batch
  ) -> dict[str, tuple[jnp.ndarray, jnp.ndarray]]:
    raise NotImplementedError

  def eval_metrics(self, sums: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """A split's metrics from its summed (sum, count) pairs, on the host.

    Each metric is its sum over its count by default. A metric that is not a mean overrides
    this: a Fréchet distance sums feature vectors and outer products (arrays) in `eval_step`
    and computes the distance from them here.
    """
    return {k: float(total) / max(float(count), 1.0) for k, (total, count) in sums.items()}

  def eval_outputs(self, state: TrainState, batch: Batch) -> dict[str, jnp.ndarray]:
    """Per-example outputs of one eval batch for `evaluate_outputs`: name -> [batch, ...]; none
    by default.

    Traced in the same jitted call as `eval_step`, so a model applied in both runs once (XLA
    merges the identical computations). Rows where `batch["mask"]` is False are padding (copies
    of the split's first example) and never reach `evaluate_outputs`. The name "mask" is the
    loop's.
    """
    return {}

  def evaluate_outputs(self, outputs: dict[str, np.ndarray], split: str) -> dict[str, float]:
    """A split's metrics from its `eval_outputs`, on the host: name -> [num_examples, ...] numpy,
    every real example once, in the split's order (`split` is its name). None by default."""
    return {}

  def eval_metric_names(self, state: TrainState, batch: Batch) -> list[str]:
    """The names `eval_metrics` and `evaluate_outputs` report, found without evaluating:
    `eval_step` is only traced (`jax.eval_shape`). A task whose `eval_metrics` derives other
    names, or that has `eval_outputs`, overrides this."""
    return sorted(jax.eval_shape(self.eval_step, state, batch))

  def visuals(self, state: TrainState, batch: Batch, directory: str, prefix: str) -> dict[str, str]:
    """Writes pictures for one eval batch as PNG files under `directory`; returns name -> path."""
    return {}

  @property
  def primary_metric(self) -> str:
    """The eval metric that the result reports (e.g. "error")."""
    raise NotImplementedError


def masked_mean(values: jnp.ndarray, mask: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
  """(sum over real examples, their count): one eval metric's contribution from a batch."""
  mask = mask.astype(jnp.float32)
  return jnp.sum(values.astype(jnp.float32) * mask), jnp.sum(mask)


def to_host_images(images: Any) -> np.ndarray:
  return np.asarray(jax.device_get(images))
