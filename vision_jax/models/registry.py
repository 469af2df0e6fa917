"""Models are chosen by name: `get_model("lenet5", num_classes=10)`.

Every registered constructor returns a `flax.linen.Module` whose `__call__(x, *, train: bool)`
returns `(output, intermediates)`: the head's output and a dict of named feature maps (one per
stage, plus the pooled features under "pre_logits"), so that heads and evaluators can use them.
"""

from __future__ import annotations

import inspect
from typing import Callable

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from vision_jax.errors import ConfigError

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
  """Registers a module class or factory under `name`."""

  def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    if name in _MODELS:
      raise ValueError(f"model {name!r} is registered twice")
    _MODELS[name] = fn
    return fn

  return wrap


def get_model(name: str, **kwargs) -> nn.Module:
  """Builds the model registered as `name` with constructor arguments `kwargs`."""
  check_model(name, kwargs)
  return _MODELS[name](**kwargs)


DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def model_kwargs(model_config: ml_collections.ConfigDict) -> dict:
  """`model_config`'s keys but "name", as constructor arguments: dtype names to dtypes, lists to tuples."""
  kwargs = {k: v for k, v in model_config.items() if k != "name"}
  if "dtype" in kwargs:
    if kwargs["dtype"] not in DTYPES:
      raise ConfigError(f"model.dtype must be one of {', '.join(DTYPES)}, got {kwargs['dtype']!r}")
    kwargs["dtype"] = DTYPES[kwargs["dtype"]]
  for k, v in kwargs.items():
    if isinstance(v, list):
      kwargs[k] = tuple(v)
  return kwargs


def build_model(model_config: ml_collections.ConfigDict, **extra) -> nn.Module:
  """The registered model named `model_config.name`, with the other keys and `extra` (what the
  data decide, such as `num_classes` or a generator's `image_shape`) as its arguments."""
  return get_model(model_config.name, **model_kwargs(model_config), **extra)


def check_model(name: str, setting_names) -> None:
  """Raises ConfigError unless `name` is registered and takes every one of `setting_names`."""
  if name not in _MODELS:
    raise ConfigError(
      f"unknown model {name!r} (model.name); registered models: {', '.join(sorted(_MODELS))}"
    )
  accepted = settings(name)
  unknown = [] if accepted is None else sorted(set(setting_names) - set(accepted))
  if unknown:
    raise ConfigError(
      f"model {name!r} has no setting {', '.join(map(repr, unknown))} (model.* in the config); "
      f"it takes: {', '.join(accepted)}"
    )


def check_model_config(model_config: ml_collections.ConfigDict) -> None:
  """`check_model` for a model config (its name and other keys): before any data are read, not
  when it is built. A task calls it for each model it builds (`Task.check_settings`)."""
  check_model(model_config.name, [k for k in model_config if k != "name"])


def settings(name: str) -> list[str] | None:
  """The keyword arguments the model registered as `name` takes (sorted), or None when it takes any."""
  try:
    params = inspect.signature(_MODELS[name]).parameters.values()
  except (TypeError, ValueError):  # no signature to read: let the call decide
    return None
  if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
    return None
  keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
  return sorted(p.name for p in params if p.kind in keyword and p.name not in ("parent", "name"))


def model_label(model_config) -> str:
  """`model.name`, with the settings that change what its registration fixes: a config's
  `resnet20` at `model.depth=8` builds a ResNet-8 and reads "resnet20 (depth=8)"."""
  fixed = getattr(_MODELS.get(model_config.name), "keywords", {})
  changed = [
    f"{k}={model_config[k]}" for k in fixed if k in model_config and model_config[k] != fixed[k]
  ]
  return model_config.name + (f" ({', '.join(changed)})" if changed else "")


def list_models() -> list[str]:
  return sorted(_MODELS)
