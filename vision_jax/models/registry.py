"""Models are chosen by name: `get_model("lenet5", num_classes=10)`.

Every registered constructor returns a `flax.linen.Module` whose `__call__(x, *, train: bool)`
returns `(output, intermediates)`: the head's output and a dict of named feature maps (one per
stage, plus the pooled features under "pre_logits"), so that heads and evaluators can use them.
"""
from __future__ import annotations

from typing import Callable

import flax.linen as nn

from vision_jax.config import ConfigError

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
  if name not in _MODELS:
    raise ConfigError(f"unknown model {name!r} (model.name); registered models: {', '.join(sorted(_MODELS))}")
  return _MODELS[name](**kwargs)


def list_models() -> list[str]:
  return sorted(_MODELS)
