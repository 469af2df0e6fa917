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
from typing import Any, Iterable

import ml_collections

from vision_jax.errors import RunError


class ConfigError(RunError, ValueError):
  """A config, variant or override that cannot be applied."""


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


def apply_overrides(config: ml_collections.ConfigDict, overrides: Iterable[str]) -> ml_collections.ConfigDict:
  """Applies "a.b=value" overrides in place, then `check_config`; an unknown key raises
  ConfigError listing valid keys."""
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
  return check_config(config)


def _is(low=None, high=None, *, low_open=False, high_open=False, integer=False):
  """A rule: (test, what it expects in words) for a number in [low, high], ends open or closed."""
  def test(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
      return False
    return ((low is None or (v > low if low_open else v >= low)) and
            (high is None or (v < high if high_open else v <= high)))
  kind = "an integer" if integer else "a number"
  if low is not None and high is not None:
    words = f"{kind} in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
  else:
    words = f"{kind} {'>' if low_open else '>='} {low}"
  return test, words


def _one_of(*choices):
  return (lambda v: v in choices), "one of " + ", ".join(map(repr, choices))


def _each(rule, *, empty_means=None):
  """A rule for a tuple: each value meeting `rule`; at least one, unless `empty_means` says what
  none does."""
  test, words = rule
  least = 0 if empty_means else 1
  words = f"values, each {words}" + (f" (none: {empty_means})" if empty_means else "")
  return (lambda v: isinstance(v, (tuple, list)) and len(v) >= least and all(map(test, v))), words


# The bounds of the settings every config has (configs/common.py), then of some experiments' own.
# A config without a key skips its rule; choices that name a component (optimizer, loss, model)
# are checked where they are looked up.
RULES = {
    "train.steps": _is(0, integer=True),
    "train.batch_size": _is(1, integer=True),
    "train.eval_batch_size": _is(1, integer=True),
    "train.log_every": _is(0, integer=True),
    "train.eval_every": _is(0, integer=True),
    "train.checkpoint_every": _is(0, integer=True),
    "train.keep_checkpoints": _is(1, integer=True),
    "train.visuals_every": _is(0, integer=True),
    "train.best_mode": _one_of("min", "max"),
    "train.early_stopping.mode": _one_of("min", "max"),
    "train.early_stopping.patience": _is(0, integer=True),
    "train.early_stopping.min_delta": _is(0),
    "data.validation_size": _is(0, integer=True),
    "data.train_size": _is(0, integer=True),
    "data.pad_to": _is(0, integer=True),
    "data.on_device": _one_of("auto", "yes", "no"),
    "data.std": ((lambda v: len(v) > 0 and all(isinstance(s, (int, float)) and s > 0 for s in v)),
                 "one positive number per channel (or one for all)"),
    "data.augment.crop_padding": _is(0, integer=True),
    "data.augment.noise_std": _is(0),
    "data.augment.brightness": _is(0, 1),
    "loss.label_smoothing": _is(0, 1, high_open=True),
    "loss.focal_gamma": _is(0),
    "loss.aux_weight": _is(0),
    # Keys of some experiments' configs; those naming a component are checked where they are used.
    "model.dropout": _is(0, 1, high_open=True),
    "model.aux_dropout": _is(0, 1, high_open=True),
    "loss.contrastive_margin": _is(0),
    "loss.triplet_margin": _is(0),
    "loss.arcface_margin": _is(0),
    "loss.arcface_scale": _is(0, low_open=True),
    "gan.latent_dim": _is(1, integer=True),
    "gan.classifier.steps": _is(1, integer=True),
    "evaluation.iw_samples": _is(1, integer=True),
    "evaluation.test_size": _is(0, integer=True),
    "evaluation.batch_size": _is(1, integer=True),
    "evaluation.chunk": _is(1, integer=True),
    "face.far": _is(0, 1),
    "face.eigenfaces_components": _is(1, integer=True),
    "eigenfaces.repeats": _is(1, integer=True),
    "eigenfaces.components": _each(_is(1, integer=True)),
    "gmm.pca_dims": _is(1, integer=True),
    "gmm.components": _each(_is(1, integer=True)),
    "gmm.reg": _is(0),
    "gmm.max_iter": _is(1, integer=True),
    "gmm.tol": _is(0),
    "gmm.num_samples": _is(0, integer=True),
    "stability.images_per_update": _is(1, integer=True),
    "compare.probe_train_size": _is(1, integer=True),
    "mlp_hidden": _each(_is(1, integer=True)),
    "shift": _is(1, integer=True),
    "model.hidden": _each(_is(1, integer=True), empty_means="no hidden layer"),
    "model.generator.hidden": _each(_is(1, integer=True), empty_means="no hidden layer"),
    "model.critic.hidden": _each(_is(1, integer=True), empty_means="no hidden layer"),
    "model.generator.width": _is(1, integer=True),
    "model.critic.width": _is(1, integer=True),
    "model.embedding_dim": _is(1, integer=True),
    "model.widths": _each(_is(1, integer=True)),
    "model.input_pool": _is(1, integer=True),
    "eigenfaces.show": _is(1, integer=True),
    "eigenfaces.reconstruct_faces": _is(1, integer=True),
    "eigenfaces.reconstruct_components": _each(_is(1, integer=True)),
    "finetune_backbone_lr_scale": _is(0),
    "seeds": _is(1, integer=True),
    "pretrain.steps": _is(1, integer=True),
    "pretrain.batch_size": _is(1, integer=True),
    "pretrain.validation_size": _is(0, integer=True),
}

# The bounds of an optimizer's settings (vision_jax/train/optimizers.py), for `optim` or, in a
# config of several players (a GAN's `optim.generator` and `optim.critic`), for each of them.
OPTIM_RULES = {
    "learning_rate": _is(0),  # 0 trains nothing, but is a run (the untrained model's evaluations)
    "momentum": _is(0, 1, high_open=True),
    "b1": _is(0, 1, high_open=True),
    "b2": _is(0, 1, high_open=True),
    "decay": _is(0, 1, high_open=True),
    "rmsprop_momentum": _is(0, 1, high_open=True),
    "eps": ((lambda v: v is None or _is(0, low_open=True)[0](v)), "None (the optimizer's default) or a number > 0"),
    "decay_factor": _is(0, low_open=True),
    "warmup_steps": _is(0, integer=True),
    "warmup_factor": _is(0, 1),
    "weight_decay": _is(0),
    "grad_clip_norm": _is(0),
    "backbone_lr_scale": _is(0),
}

# Numeric settings without a rule above, each checked with its neighbours where it is used (one
# error for a combination a single bound cannot judge), or any value being possible. A new numeric
# key needs a rule or a line here: tests/test_config.py holds every config to that.
CHECKED_WHERE_USED = {
    "train.seed": "any integer",
    "evaluation.seed": "any integer",
    "data.mean": "any number per channel; counted against data.std in check_config",
    "data.format_options.image_size": "the data format (vision_jax/data/formats)",
    "data.protocol.fold": "vision_jax/data/face_protocols.py, against the number of images",
    "data.protocol.num_unseen": "vision_jax/data/face_protocols.py, against the number of people",
    "data.protocol.seed": "any integer",
    "data.protocol.seen_test_per_person": "vision_jax/data/face_protocols.py, against the images per person",
    "data.protocol.test_per_person": "vision_jax/data/face_protocols.py, against the images per person",
    "optim.boundaries": "the schedule (vision_jax/train/optimizers.py), against train.steps",
    "model.depth": "the CIFAR ResNets (vision_jax/models/resnet.py): 6n + 2",
    "model.latent_dim": "the autoencoders (vision_jax/models/autoencoders.py)",
    "eigenfaces.num_components": "experiments/eigenfaces_orl.py, against eigenfaces.components",
    "gan.n_critic": "vision_jax/tasks/adversarial.py, against train.batch_size",
    "gan.clip": "vision_jax/tasks/adversarial.py, against gan.gradient_penalty",
    "gan.gradient_penalty": "vision_jax/tasks/adversarial.py, against gan.clip and the critic's norm",
    "autoencoder.eval_seed": "any integer",
    **{f"autoencoder.{k}": "vision_jax/tasks/autoencoding.py, against autoencoder.corruption and the model"
       for k in ("decoder_std", "eval_noise_std", "iw_chunk", "iw_samples", "kl_weight", "noise_level",
                 "sparsity_target", "sparsity_weight")},
    **{f"compare.{k}": "vision_jax/tasks/autoencoding.py, as the autoencoder.* of its arm"
       for k in ("dae_noise_level", "sae_sparsity_target", "sae_sparsity_weight")},
}

_MISSING = object()


def _lookup(config: ml_collections.ConfigDict, key: str) -> Any:
  node = config
  for part in key.split("."):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      return _MISSING
    node = node[part]
  return node


def check_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Raises one ConfigError listing every common setting outside its bounds (`RULES`,
  `OPTIM_RULES`), each with what it expects; returns `config` when all are possible."""
  rules = dict(RULES)
  optim = config.get("optim")
  if isinstance(optim, ml_collections.ConfigDict):
    players = [""] if "name" in optim else [f"{k}." for k, v in optim.items() if isinstance(v, ml_collections.ConfigDict)]
    rules.update({f"optim.{p}{key}": rule for p in players for key, rule in OPTIM_RULES.items()})
  bad = []
  for key, (test, expected) in rules.items():
    value = _lookup(config, key)
    if value is not _MISSING and not test(value):
      bad.append(f"{key} must be {expected}, got {value!r}")
  mean, std = _lookup(config, "data.mean"), _lookup(config, "data.std")
  if mean is not _MISSING and std is not _MISSING and len(mean) != len(std):
    bad.append(f"data.mean and data.std must have one value each per channel, got {len(mean)} and {len(std)}")
  if bad:
    raise ConfigError("impossible setting" + ("s:\n  " if len(bad) > 1 else ": ") + "\n  ".join(bad))
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
    raise ConfigError(f"config key {key!r}: cannot read {text!r} as {type(default).__name__} "
                      f"(the type of its default {default!r})") from None
