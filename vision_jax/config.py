"""Experiment configs: `configs/<name>.py` defines `get_config(arg)`; the command line overrides.

    python -m experiments.lenet5_mnist --workdir DIR --variant smoke --config.train.steps=200

`--variant` is the `arg` of `get_config(arg)`: comma-separated flags and key=value pairs
(`"smoke"`, `"model=resnet56,smoke"`), parsed by `parse_arg`. Every `--config.<key>=<value>`
must name a key the config has; an unknown key is an error that lists the valid ones, and a
value is converted to the type of the default it replaces. The result is then checked against
the bounds of the common settings (`check_config`), so an impossible one (a batch of 0, a
negative learning rate) stops the run before it prepares data or writes anything.
"""

from __future__ import annotations

import ast
import importlib
from typing import Any, Callable, Iterable, Mapping

import ml_collections

from vision_jax.errors import ConfigError


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
  """Parses `get_config`'s `arg`: "smoke,model=resnet56" -> {smoke: True, model: "resnet56"}.

  Each key must be one of `defaults`; values take the default's type (a bare flag is True).
  """
  out = ml_collections.ConfigDict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, eq, value = item.partition("=")
    key = key.strip()
    if key not in defaults:
      raise ConfigError(f"unknown variant {key!r} in {arg!r}; valid: {', '.join(sorted(defaults))}")
    out[key] = _convert(value.strip(), defaults[key], key) if eq else True
  return out


def load_config(name: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """Imports `configs.<name>` and returns `get_config(arg)`."""
  try:
    module = importlib.import_module(f"configs.{name}")
  except ModuleNotFoundError as e:
    if e.name in (f"configs.{name}", "configs"):
      raise ConfigError(f"no config file configs/{name}.py") from None
    raise
  return module.get_config(arg)


def flat_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  """All leaf keys of `config` as dotted paths."""
  keys = []
  for k, v in config.items():
    if isinstance(v, ml_collections.ConfigDict):
      keys.extend(flat_keys(v, f"{prefix}{k}."))
    else:
      keys.append(f"{prefix}{k}")
  return keys


def apply_overrides(
  config: ml_collections.ConfigDict,
  overrides: Iterable[str],
  rules: Mapping[str, Rule] | None = None,
) -> ml_collections.ConfigDict:
  """Applies "a.b=value" overrides in place, then `check_config` with `rules` (an experiment's,
  `experiment_rules`); an unknown key raises ConfigError listing valid keys."""
  valid = flat_keys(config)
  for item in overrides:
    key, eq, value = item.partition("=")
    if not eq:
      raise ConfigError(f"override {item!r} must be KEY=VALUE")
    if key not in valid:
      raise ConfigError(f"unknown config key {key!r}; valid keys:\n  " + "\n  ".join(sorted(valid)))
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
      node = node[p]
    node[leaf] = _convert(value, node[leaf], key)
  return check_config(config, rules)


Rule = tuple[Callable[[Any], bool], str]  # (test, what it expects in words)


def bound(low=None, high=None, *, low_open=False, high_open=False, integer=False) -> Rule:
  """A rule for a number in [low, high], each end open or closed."""

  def test(v):
    if (
      isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int))
    ):
      return False
    return (low is None or (v > low if low_open else v >= low)) and (
      high is None or (v < high if high_open else v <= high)
    )

  kind = "an integer" if integer else "a number"
  if low is not None and high is not None:
    words = f"{kind} in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
  else:
    words = f"{kind} {'>' if low_open else '>='} {low}"
  return test, words


def one_of(*choices) -> Rule:
  return (lambda v: v in choices), "one of " + ", ".join(map(repr, choices))


def each(rule: Rule, *, empty_means: str | None = None) -> Rule:
  """A rule for a tuple: each value meeting `rule`; at least one, unless `empty_means` says what
  none does."""
  test, words = rule
  least = 0 if empty_means else 1
  words = f"values, each {words}" + (f" (none: {empty_means})" if empty_means else "")
  return (lambda v: isinstance(v, (tuple, list)) and len(v) >= least and all(map(test, v))), words


def checked_where_used(where: str) -> Rule:
  """A numeric setting that no bound alone can judge (it is checked with its neighbours where it
  is used, for one error naming the combination), or whose every value is possible: `where` says
  which. It passes here; it is listed so that every number in a config is accounted for."""
  return (lambda v: True), f"checked where used: {where}"


# The bounds of the settings every config has (configs/common.py) and of the model settings the
# registry's constructors share. A task declares its own settings' rules (`Task.RULES`), and an
# experiment its own (`RULES` in experiments/<name>.py, with its task's); `check_config` applies
# them together. A config without a key skips its rule; choices that name a component
# (optimizer, loss, model) are checked where they are looked up. Every number in a shipped
# config has a rule somewhere: tests/test_config.py holds every config to that.
RULES: dict[str, Rule] = {
  "train.steps": bound(0, integer=True),
  "train.batch_size": bound(1, integer=True),
  "train.eval_batch_size": bound(1, integer=True),
  "train.log_every": bound(0, integer=True),
  "train.eval_every": bound(0, integer=True),
  "train.checkpoint_every": bound(0, integer=True),
  "train.keep_checkpoints": bound(1, integer=True),
  "train.visuals_every": bound(0, integer=True),
  "train.best_mode": one_of("min", "max"),
  "train.early_stopping.mode": one_of("min", "max"),
  "train.early_stopping.patience": bound(0, integer=True),
  "train.early_stopping.min_delta": bound(0),
  "train.seed": checked_where_used("any integer"),
  "data.validation_size": bound(0, integer=True),
  "data.train_size": bound(0, integer=True),
  "data.pad_to": bound(0, integer=True),
  "data.on_device": one_of("auto", "yes", "no"),
  "data.std": (
    (lambda v: len(v) > 0 and all(isinstance(s, (int, float)) and s > 0 for s in v)),
    "one positive number per channel (or one for all)",
  ),
  "data.mean": checked_where_used(
    "any number per channel; counted against data.std in check_config"
  ),
  "data.augment.crop_padding": bound(0, integer=True),
  "data.augment.noise_std": bound(0),
  "data.augment.brightness": bound(0, 1),
  "data.augment.contrast": bound(0, 1),
  "data.augment.saturation": bound(0, 1),
  "data.augment.min_visible": bound(0, 1),
  "data.augment.scale_range": checked_where_used(
    "vision_jax/data/augment.py: (low, high) zoom factors, 0 < low <= high"
  ),
  "data.max_boxes": bound(0, integer=True),
  "data.too_many_boxes": one_of("error", "keep_largest"),
  "data.format_options.image_size": checked_where_used("the data format (vision_jax/data/formats)"),
  "data.protocol.fold": checked_where_used(
    "vision_jax/data/face_protocols.py, against the number of images"
  ),
  "data.protocol.num_unseen": checked_where_used(
    "vision_jax/data/face_protocols.py, against the number of people"
  ),
  "data.protocol.seed": checked_where_used("any integer"),
  "data.protocol.seen_test_per_person": checked_where_used(
    "vision_jax/data/face_protocols.py, against the images per person"
  ),
  "data.protocol.test_per_person": checked_where_used(
    "vision_jax/data/face_protocols.py, against the images per person"
  ),
  "loss.label_smoothing": bound(0, 1, high_open=True),
  "loss.focal_gamma": bound(0),
  "loss.aux_weight": bound(0),
  "optim.boundaries": checked_where_used(
    "the schedule (vision_jax/train/optimizers.py), against train.steps"
  ),
  # The registry's models share these constructor settings' meanings.
  "model.dropout": bound(0, 1, high_open=True),
  "model.aux_dropout": bound(0, 1, high_open=True),
  "model.hidden": each(bound(1, integer=True), empty_means="no hidden layer"),
  "model.embedding_dim": bound(1, integer=True),
  "model.widths": each(bound(1, integer=True)),
  "model.input_pool": bound(1, integer=True),
  "model.depth": checked_where_used("the CIFAR ResNets (vision_jax/models/resnet.py): 6n + 2"),
  "model.latent_dim": checked_where_used("the autoencoders (vision_jax/models/autoencoders.py)"),
}

# The bounds of an optimizer's settings (vision_jax/train/optimizers.py), for `optim` or, in a
# config of several players (a GAN's `optim.generator` and `optim.critic`), for each of them.
OPTIM_RULES: dict[str, Rule] = {
  "learning_rate": bound(0),  # 0 trains nothing, but is a run (the untrained model's evaluations)
  "momentum": bound(0, 1, high_open=True),
  "b1": bound(0, 1, high_open=True),
  "b2": bound(0, 1, high_open=True),
  "decay": bound(0, 1, high_open=True),
  "rmsprop_momentum": bound(0, 1, high_open=True),
  "eps": (
    (lambda v: v is None or bound(0, low_open=True)[0](v)),
    "None (the optimizer's default) or a number > 0",
  ),
  "decay_factor": bound(0, low_open=True),
  "warmup_steps": bound(0, integer=True),
  "warmup_factor": bound(0, 1),
  "weight_decay": bound(0),
  "grad_clip_norm": bound(0),
  "backbone_lr_scale": bound(0),
}


def experiment_rules(name: str) -> Mapping[str, Rule]:
  """The rules `experiments/<name>.py` declares (`RULES`: its task's and its own settings'), or
  none when it declares none."""
  try:
    module = importlib.import_module(f"experiments.{name}")
  except ModuleNotFoundError as e:
    if e.name in (f"experiments.{name}", "experiments"):
      return {}
    raise
  return getattr(module, "RULES", {})


def all_rules(
  config: ml_collections.ConfigDict, rules: Mapping[str, Rule] | None = None
) -> dict[str, Rule]:
  """The common `RULES`, `OPTIM_RULES` for each optimizer `config` has, and `rules`, by key."""
  merged = dict(RULES)
  optim = config.get("optim")
  if isinstance(optim, ml_collections.ConfigDict):
    players = (
      [""]
      if "name" in optim
      else [f"{k}." for k, v in optim.items() if isinstance(v, ml_collections.ConfigDict)]
    )
    merged.update({f"optim.{p}{key}": rule for p in players for key, rule in OPTIM_RULES.items()})
  merged.update(rules or {})
  return merged


_MISSING = object()


def _lookup(config: ml_collections.ConfigDict, key: str) -> Any:
  node = config
  for part in key.split("."):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      return _MISSING
    node = node[part]
  return node


def check_config(
  config: ml_collections.ConfigDict, rules: Mapping[str, Rule] | None = None
) -> ml_collections.ConfigDict:
  """Raises one ConfigError listing every setting outside its bounds (the common `RULES` and
  `OPTIM_RULES`, and `rules`: a task's or an experiment's own), each with what it expects;
  returns `config` when all are possible."""
  bad = []
  for key, (test, expected) in all_rules(config, rules).items():
    value = _lookup(config, key)
    if value is not _MISSING and not test(value):
      bad.append(f"{key} must be {expected}, got {value!r}")
  mean, std = _lookup(config, "data.mean"), _lookup(config, "data.std")
  if mean is not _MISSING and std is not _MISSING and len(mean) != len(std):
    bad.append(
      f"data.mean and data.std must have one value each per channel, got {len(mean)} and {len(std)}"
    )
  if bad:
    raise ConfigError(
      "impossible setting" + ("s:\n  " if len(bad) > 1 else ": ") + "\n  ".join(bad)
    )
  return config


def _convert(text: str, default: Any, key: str) -> Any:
  """Converts `text` to the type of `default`."""
  try:
    if isinstance(default, bool):
      if text.lower() in ("1", "true", "yes", "on", ""):
        return True
      if text.lower() in ("0", "false", "no", "off"):
        return False
      raise ValueError(text)
    if isinstance(default, int):
      return int(text)
    if isinstance(default, float):
      return float(text)
    if isinstance(default, str):
      return text
    if default is None:
      try:
        return ast.literal_eval(text)
      except (ValueError, SyntaxError):
        return text
    value = ast.literal_eval(text)
    if isinstance(default, (tuple, list)):
      value = type(default)(value if isinstance(value, (tuple, list)) else (value,))
    return value
  except (ValueError, SyntaxError):
    raise ConfigError(
      f"config key {key!r}: cannot read {text!r} as {type(default).__name__} "
      f"(the type of its default {default!r})"
    ) from None
