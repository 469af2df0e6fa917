"""The train state: one pytree that the jitted step takes, donates and returns."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  """Everything a step changes.

  Attributes:
    step: the number of steps taken (int32 scalar). The step's rng and batch are functions of it.
    params: the trainable parameters; a two-player task keeps `{"gen": ..., "disc": ...}`.
    opt_state: the optimizer state, of the same structure as the optimizers.
    model_state: the model's other collections, e.g. {"batch_stats": ...}.
  """

  step: jax.Array
  params: Any
  opt_state: Any
  model_state: Any

  @classmethod
  def create(
    cls, params: Any, tx: optax.GradientTransformation, model_state: Any = None
  ) -> "TrainState":
    return cls(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=tx.init(params),
      model_state=model_state or {},
    )

  def apply_gradients(
    self, tx: optax.GradientTransformation, grads: Any, **changes
  ) -> "TrainState":
    """One optimizer update of `params` (the step counter is advanced by the loop)."""
    updates, opt_state = tx.update(grads, self.opt_state, self.params)
    return self.replace(
      params=optax.apply_updates(self.params, updates), opt_state=opt_state, **changes
    )
