"""Optax optimizers and learning-rate schedules by name, from `config.optim`.

    optim.name: sgd | momentum | nesterov | adam | adamw | adagrad | rmsprop
    optim.learning_rate, optim.momentum (momentum, nesterov, rmsprop), optim.b1, optim.b2, optim.eps
    optim.schedule: constant | step | cosine     optim.boundaries (steps), optim.decay_factor
    optim.warmup_steps: a warm-up of this many steps before the schedule, whose steps and
      boundaries still count from 0; optim.warmup_shape "linear" (from warmup_factor x the rate up
      to the rate; factor 0 by default) or "constant" (warmup_factor x the rate throughout: the
      ResNet paper's 0.01 before 0.1 for ResNet-110)
    Boundaries lie after the warm-up and before the run's end, and a warm-up is no longer than
      the run: `check_schedules` refuses any other before data are read.
    optim.weight_decay: L2 added to the gradient (decoupled for adamw); optim.decay_kernels_only
    optim.grad_clip_norm: clip the global gradient norm (0 = off)

Parameter groups, for transfer learning. A parameter is named by its path, "stage1_block1/conv1/kernel":
    optim.head: regex naming the head's parameters (default "head/", every registered classifier's
      last layer); every other parameter is the backbone
    optim.backbone_lr_scale: the backbone's learning rate relative to the head's (1 = one rate;
      0 freezes the backbone: a linear probe)
    optim.frozen: regexes of further parameters to freeze, e.g. ("conv_init", "stage1")
Each regex matches from the start of the path (`re.match`), so a module name is a prefix.
Frozen parameters get `optax.set_to_zero()` through `optax.partition`: they keep no optimizer
state, weight decay does not touch them, gradient clipping measures only the trained ones, and
they stay bit-identical. The parameters stay in the one train state; nothing is copied.
"""

from __future__ import annotations

import re

import jax
import ml_collections
import optax

from vision_jax.errors import ConfigError

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "adagrad", "rmsprop")
SCHEDULES = ("constant", "step", "cosine")


def optimizer_configs(config: ml_collections.ConfigDict) -> dict[str, ml_collections.ConfigDict]:
  """Each optimizer's config by its key: `optim`, or each player's (`optim.generator`, ...)."""
  optim = config.get("optim")
  if not isinstance(optim, ml_collections.ConfigDict):
    return {}
  if "name" in optim:
    return {"optim": optim}
  return {f"optim.{k}": v for k, v in optim.items() if isinstance(v, ml_collections.ConfigDict)}


def schedule_problems(
  optim: ml_collections.ConfigDict,
  total_steps: int,
  key: str = "optim",
  total_name: str = "train.steps",
) -> list[str]:
  """What in `optim`'s schedule contradicts a run of `total_steps` updates (`total_name` in the
  config), one line each naming the setting and what it expects; [] when nothing does.

  A step schedule's boundaries must be increasing integer steps inside the run, after any warm-up
  (a boundary inside the warm-up would decay only when it ends; one at or past the end, never);
  a warm-up must not outlast the run: one cut short is a longer run's schedule, shortened
  without saying how (a run that is all warm-up says so, with warmup_steps = its steps). A run
  of no steps (evaluation only) has nothing to contradict.
  """
  problems = []
  name = optim.get("schedule", "constant")
  if name not in SCHEDULES:
    problems.append(f"{key}.schedule must be one of {', '.join(SCHEDULES)}, got {name!r}")
  warmup = optim.get("warmup_steps", 0)
  shape, factor = optim.get("warmup_shape", "linear"), optim.get("warmup_factor", 0.0)
  if warmup and not (shape == "linear" or (shape == "constant" and factor > 0)):
    problems.append(
      f"{key}.warmup_shape must be 'linear' or 'constant' (with {key}.warmup_factor > 0), "
      f"got {shape!r} with factor {factor}"
    )
  if not total_steps:
    return problems
  if warmup > total_steps:
    problems.append(
      f"{key}.warmup_steps must be at most {total_name} ({total_steps}), got {warmup}: the run "
      f"would end inside its warm-up (equal, for a run that is all warm-up)"
    )
  if name == "step":
    boundaries = optim.get("boundaries", ())
    low = max(warmup, 1)
    inside = lambda b: isinstance(b, int) and not isinstance(b, bool) and low <= b < total_steps
    if not (
      isinstance(boundaries, (tuple, list))
      and all(map(inside, boundaries))
      and all(a < b for a, b in zip(boundaries, boundaries[1:]))
    ):
      where = (
        f"[{key}.warmup_steps, {total_name}) = [{warmup}, {total_steps})"
        if warmup
        else f"(0, {total_name}) = (0, {total_steps})"
      )
      problems.append(
        f"{key}.boundaries must be increasing integer steps, each in {where}, got {boundaries!r}"
      )
  return problems


def check_schedules(
  config: ml_collections.ConfigDict, updates: dict[str, tuple[int, str]] | None = None
) -> None:
  """Refuses, before any data are read, a schedule that contradicts the run's length: each
  optimizer of `config` against train.steps, or against `updates[key]`, (its number of updates,
  that number in the config's words), for one that does not update once a step (a GAN's critic).
  One ConfigError lists every problem (`schedule_problems`)."""
  steps = config.train.steps
  problems = []
  for key, optim in optimizer_configs(config).items():
    total, total_name = (updates or {}).get(key, (steps, "train.steps"))
    problems += schedule_problems(optim, total, key, total_name)
  _raise(problems)


def _raise(problems: list[str]) -> None:
  if problems:
    raise ConfigError(
      "impossible setting" + ("s:\n  " if len(problems) > 1 else ": ") + "\n  ".join(problems)
    )


def make_schedule(
  optim: ml_collections.ConfigDict, total_steps: int, key: str = "optim"
) -> optax.Schedule:
  """The learning rate as a function of the step, for a run of `total_steps` updates; refuses a
  schedule that contradicts it (`schedule_problems`, with `key` naming `optim` in the config)."""
  _raise(schedule_problems(optim, total_steps, key, "the run's updates"))
  lr, name = optim.learning_rate, optim.get("schedule", "constant")
  warmup = optim.get("warmup_steps", 0)
  if name == "constant":
    schedule = optax.constant_schedule(lr)
  elif name == "step":
    schedule = optax.piecewise_constant_schedule(
      lr, {int(b) - warmup: optim.get("decay_factor", 0.1) for b in optim.get("boundaries", ())}
    )
  else:
    schedule = optax.cosine_decay_schedule(lr, max(1, total_steps - warmup))
  if warmup:
    factor = optim.get("warmup_factor", 0.0)
    if optim.get("warmup_shape", "linear") == "linear":
      warm = optax.linear_schedule(factor * lr, lr, warmup)
    else:
      warm = optax.constant_schedule(factor * lr)
    schedule = optax.join_schedules([warm, schedule], [warmup])
  return schedule


def make_optimizer(
  optim: ml_collections.ConfigDict, total_steps: int, key: str = "optim"
) -> optax.GradientTransformation:
  """The optimizer of `config.optim` (`key` in the config) for a run of `total_steps` updates,
  with clipping, weight decay and parameter groups chained in."""
  schedule = make_schedule(optim, total_steps, key)
  clip = (
    [optax.clip_by_global_norm(optim.grad_clip_norm)] if optim.get("grad_clip_norm", 0.0) else []
  )
  if not _has_groups(optim):
    return optax.chain(*clip, *_update_rule(optim, schedule))
  scale = float(optim.get("backbone_lr_scale", 1.0))
  groups = {
    "head": optax.chain(*_update_rule(optim, schedule)),
    "backbone": optax.chain(*_update_rule(optim, lambda step: scale * schedule(step))),
    "frozen": optax.set_to_zero(),
  }
  labels = lambda params: parameter_groups(optim, params)
  if clip:  # the global norm of the trained parameters' gradients: zero the frozen ones first
    frozen = lambda params: jax.tree.map(lambda g: g == "frozen", labels(params))
    clip = [optax.masked(optax.set_to_zero(), frozen), *clip]
  return optax.chain(*clip, optax.partition(groups, labels))


def _update_rule(
  optim: ml_collections.ConfigDict, lr: optax.Schedule
) -> list[optax.GradientTransformation]:
  """The named optimizer at learning rate `lr`, after weight decay: the transformations to chain."""
  name = optim.name
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
    core = optax.adamw(
      lr,
      b1=optim.get("b1", 0.9),
      b2=optim.get("b2", 0.999),
      eps=eps or 1e-8,
      weight_decay=optim.get("weight_decay", 0.0),
      mask=_decay_mask(optim),
    )
  elif name == "adagrad":
    core = optax.adagrad(lr, eps=eps or 1e-7)
  elif name == "rmsprop":
    core = optax.rmsprop(
      lr,
      decay=optim.get("decay", 0.9),
      eps=eps or 1e-8,
      momentum=optim.get("rmsprop_momentum", 0.0) or None,
    )
  else:
    raise ConfigError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")
  if optim.get("weight_decay", 0.0) and name != "adamw":
    return [optax.add_decayed_weights(optim.weight_decay, mask=_decay_mask(optim)), core]
  return [core]


def _has_groups(optim: ml_collections.ConfigDict) -> bool:
  return bool(optim.get("frozen", ())) or float(optim.get("backbone_lr_scale", 1.0)) != 1.0


def parameter_path(path) -> str:
  """A parameter's key path as "module/.../name"."""
  return jax.tree_util.keystr(path, simple=True, separator="/")


def parameter_groups(optim: ml_collections.ConfigDict, params) -> object:
  """The tree of `params` labelled "head", "backbone" or "frozen" (see the module docstring).

  A regex of `optim.frozen` that matches no parameter, or an `optim.head` that matches none
  when the backbone has its own rate, is an error listing the model's modules.
  """
  head = optim.get("head", "head/")
  frozen = tuple(optim.get("frozen", ()))
  if isinstance(frozen, str):
    frozen = (frozen,)
  backbone_frozen = float(optim.get("backbone_lr_scale", 1.0)) == 0.0
  paths = [parameter_path(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]
  modules = sorted({p.split("/")[0] for p in paths})
  for pattern in frozen:
    if not any(re.match(pattern, p) for p in paths):
      raise ConfigError(
        f"optim.frozen: {pattern!r} matches no parameter; the model's modules: {', '.join(modules)}"
      )
  if _has_groups(optim) and not any(re.match(head, p) for p in paths):
    raise ConfigError(
      f"optim.head: {head!r} matches no parameter; the model's modules: {', '.join(modules)}"
    )

  def label(path, _):
    name = parameter_path(path)
    if any(re.match(pattern, name) for pattern in frozen):
      return "frozen"
    if re.match(head, name):
      return "head"
    return "frozen" if backbone_frozen else "backbone"

  return jax.tree_util.tree_map_with_path(label, params)


def _decay_mask(optim: ml_collections.ConfigDict):
  """Decay every parameter, or only kernels (ndim > 1) with `decay_kernels_only`."""
  if not optim.get("decay_kernels_only", False):
    return None
  return lambda params: jax.tree.map(lambda p: p.ndim > 1, params)
