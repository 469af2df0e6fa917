"""Experiment configs: `configs/<name>.py` defines `get_config(arg)`; the command line overrides.

    python -m experiments.lenet5_mnist --workdir DIR --variant smoke --config.train.steps=200

`--variant` is the `arg` of `get_config(arg)`: comma-separated flags and key=value pairs
(`"smoke"`, `"model=resnet56,smoke"`), parsed by `parse_arg`. Every `--config.<key>=<value>`
must name a key the config has; an unknown key is an error that lists the valid ones, and a
value is converted to the type of the default it replaces.
"""
from __future__ import annotations

import ast
import importlib
from typing import Any, Iterable

import ml_collections


class ConfigError(ValueError):
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
  """Applies "a.b=value" overrides in place; an unknown key raises ConfigError listing valid keys."""
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
