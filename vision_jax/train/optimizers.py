"""Optax optimizers and learning-rate schedules by name, from `config.optim`.

    optim.name: sgd | momentum | nesterov | adam | adamw | adagrad | rmsprop
    optim.learning_rate, optim.momentum (momentum, nesterov, rmsprop), optim.b1, optim.b2, optim.eps
    optim.schedule: constant | step | cosine     optim.boundaries (steps), optim.decay_factor
    optim.warmup_steps: linear warm-up from 0 before the schedule
    optim.weight_decay: L2 added to the gradient (decoupled for adamw); optim.decay_kernels_only
    optim.grad_clip_norm: clip the global gradient norm (0 = off)
"""
from __future__ import annotations

import jax
import ml_collections
import optax

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "adagrad", "rmsprop")
SCHEDULES = ("constant", "step", "cosine")


def make_schedule(optim: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """The learning rate as a function of the step."""
  lr, name = optim.learning_rate, optim.get("schedule", "constant")
  warmup = optim.get("warmup_steps", 0)
  if name == "constant":
    schedule = optax.constant_schedule(lr)
  elif name == "step":
    boundaries = optim.get("boundaries", ())
    if list(boundaries) != sorted(boundaries) or any(b <= 0 for b in boundaries):
      raise ValueError(f"optim.boundaries must be increasing positive steps, got {boundaries}")
    schedule = optax.piecewise_constant_schedule(lr, {int(b) - warmup: optim.get("decay_factor", 0.1) for b in boundaries})
  elif name == "cosine":
    schedule = optax.cosine_decay_schedule(lr, max(1, total_steps - warmup))
  else:
    raise ValueError(f"unknown schedule {name!r}; valid: {', '.join(SCHEDULES)}")
  if warmup:
    schedule = optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), schedule], [warmup])
  return schedule


def make_optimizer(optim: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
  """The optimizer of `config.optim`, with clipping and weight decay chained in."""
  name = optim.name
  lr = make_schedule(optim, total_steps)
  momentum = optim.get("momentum", 0.9)
  eps = optim.get("eps", None)
  if name == "sgd":
    core = optax.sgd(lr)
  elif name == "momentum":
    core = optax.sgd(lr, momentum=momentum)
  elif name == "nesterov":
    core = optax.sgd(lr, momentum=momentum, nesterov=True)
  elif name == "adam":
    core = optax.adam(lr, b1=optim.get("b1", 0.9), b2=optim.get("b2", 0.999), eps=eps or 1e-8)
  elif name == "adamw":
    core = optax.adamw(lr, b1=optim.get("b1", 0.9), b2=optim.get("b2", 0.999), eps=eps or 1e-8,
                       weight_decay=optim.get("weight_decay", 0.0), mask=_decay_mask(optim))
  elif name == "adagrad":
    core = optax.adagrad(lr, eps=eps or 1e-7)
  elif name == "rmsprop":
    core = optax.rmsprop(lr, decay=optim.get("decay", 0.9), eps=eps or 1e-8,
                         momentum=optim.get("rmsprop_momentum", 0.0) or None)
  else:
    raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")
  chain = []
  if optim.get("grad_clip_norm", 0.0):
    chain.append(optax.clip_by_global_norm(optim.grad_clip_norm))
  if optim.get("weight_decay", 0.0) and name != "adamw":
    chain.append(optax.add_decayed_weights(optim.weight_decay, mask=_decay_mask(optim)))
  return optax.chain(*chain, core)


def _decay_mask(optim: ml_collections.ConfigDict):
  """Decay every parameter, or only kernels (ndim > 1) with `decay_kernels_only`."""
  if not optim.get("decay_kernels_only", False):
    return None
  return lambda params: jax.tree.map(lambda p: p.ndim > 1, params)
