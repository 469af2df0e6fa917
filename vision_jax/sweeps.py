"""Sweeps are code next to the config: `configs/<name>.py` may define `get_sweeps()`.

    def get_sweeps():
      return {
          "optimizers": [{"optim.name": "sgd", "optim.learning_rate": 0.1},
                         {"optim.name": "adam", "optim.learning_rate": 2e-3}],
          "lr_grid": {"grid": {"optim.name": ["adam", "sgd"], "optim.learning_rate": [1e-3, 1e-2]}},
      }

A sweep is a list of points (each a dict of config overrides, `{}` being the config as it is) or a
grid, whose points are the product of its value lists (the first key varies slowest). Each point
runs as its own run (`python -m scripts.sweep`) in a directory named by `point_name`. Overrides
that every point of a sweep shares (a smaller training set for a regularisation study, say) go in
"common": `{"common": {"data.train_size": 1000}, "points": [...]}` (or with "grid"); they apply
before the command line's --config flags and the point's own, and stay out of the points' names.

A config may also say how a sweep is to be drawn, beyond the report's default curves, with
`get_sweep_plots()`: {sweep: [plot, ...]}, each plot a dict

    {"file": "figure6.png",                      # written beside report.md
     "title": "...",
     "panels": {"plain": {"model.name": ["plain20", "plain56"]}, ...},   # default: one, every point
     "curves": [{"key": "train/accuracy", "complement": True, "style": "dashed", "label": "train"},
                {"key": "test/error", "style": "bold", "label": "test"}],
     "label_key": "model.name",                  # a run's legend label: this override's value
     "scale": 100.0, "ylabel": "error (%)", "xlabel": "iterations", "ylim": (0, 20)}

A panel holds the points whose overrides take one of the listed values for every listed key;
`complement` plots 1 - value (an error from an accuracy); `style` is solid, dashed, dotted or bold.
"""

from __future__ import annotations

import hashlib
import importlib
import itertools
import json
import os
import re
from typing import Any, Mapping, Sequence

import ml_collections

from vision_jax.config import apply_overrides, experiment_rules, load_config
from vision_jax.errors import ConfigError

# Characters a point's directory name keeps; "," and "=" separate the overrides in it.
_UNSAFE = re.compile(r"[^A-Za-z0-9._+\-]+")
_MAX_NAME = 150  # well under the 255-byte file name limit, and still readable
# Keys the sweep sets for every point: the W&B group and run name.
SWEEP_KEYS = ("wandb.group", "wandb.name")


def get_sweeps(experiment: str) -> dict[str, Any]:
  """The sweeps `configs/<experiment>.py` defines with `get_sweeps()` ({} when it defines none)."""
  load_config(experiment, None)  # the same clear error as a run when there is no config file
  module = importlib.import_module(f"configs.{experiment}")
  return dict(module.get_sweeps()) if hasattr(module, "get_sweeps") else {}


PLOT_KEYS = {"file", "title", "panels", "curves", "label_key", "scale", "ylabel", "xlabel", "ylim"}
CURVE_KEYS = {"key", "complement", "style", "label"}
CURVE_STYLES = ("solid", "dashed", "dotted", "bold")


def get_sweep_plots(experiment: str) -> dict[str, list[dict[str, Any]]]:
  """The plots `configs/<experiment>.py` asks for with `get_sweep_plots()`, checked ({} if none)."""
  module = importlib.import_module(f"configs.{experiment}")
  plots = dict(module.get_sweep_plots()) if hasattr(module, "get_sweep_plots") else {}
  for sweep, specs in plots.items():
    for spec in specs:
      check_plot(spec, f"configs/{experiment}.py get_sweep_plots()[{sweep!r}]")
  return plots


def check_plot(spec: Mapping[str, Any], where: str) -> None:
  """Raises ConfigError naming what is wrong with one plot spec (see the module's docstring)."""
  unknown = set(spec) - PLOT_KEYS
  if unknown:
    raise ConfigError(
      f"{where}: unknown plot keys {sorted(unknown)}; valid: {', '.join(sorted(PLOT_KEYS))}"
    )
  if (
    not isinstance(spec.get("file"), str)
    or not spec["file"].endswith(".png")
    or "/" in spec["file"]
  ):
    raise ConfigError(f"{where}: 'file' must be a .png file name, got {spec.get('file')!r}")
  if not spec.get("curves"):
    raise ConfigError(f"{where}: 'curves' must list at least one curve")
  for curve in spec["curves"]:
    if set(curve) - CURVE_KEYS or "key" not in curve:
      raise ConfigError(
        f"{where}: a curve is {{'key': ..., and optionally {sorted(CURVE_KEYS - {'key'})}}}, "
        f"got {curve!r}"
      )
    if curve.get("style", "solid") not in CURVE_STYLES:
      raise ConfigError(
        f"{where}: curve style must be one of {', '.join(CURVE_STYLES)}, got {curve['style']!r}"
      )
  for title, match in spec.get("panels", {}).items():
    if not isinstance(match, Mapping) or any(
      isinstance(v, (str, bytes)) or not isinstance(v, Sequence) for v in match.values()
    ):
      raise ConfigError(
        f"{where}: panel {title!r} must map override keys to lists of values, got {match!r}"
      )


def in_panel(overrides: Mapping[str, Any], match: Mapping[str, Sequence[Any]]) -> bool:
  """Whether a point with `overrides` belongs to a panel that lists `match` ({key: [values]})."""
  return all(key in overrides and overrides[key] in values for key, values in match.items())


def override_text(value: Any) -> str:
  """A value as written on the command line (`--config.key=TEXT`), which `apply_overrides` reads back."""
  return value if isinstance(value, str) else repr(value)


def sweep_common(spec: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> dict[str, Any]:
  """The overrides every point of the sweep shares (its "common" dict; {} when it has none)."""
  if isinstance(spec, Mapping) and "common" in spec:
    common = spec["common"]
    if not isinstance(common, Mapping) or not all(isinstance(k, str) for k in common):
      raise ConfigError(f"a sweep's 'common' must be a dict of config overrides, got {common!r}")
    for key in common:
      if key in SWEEP_KEYS:
        raise ConfigError(
          f"sweep 'common': {key!r} cannot be set ({', '.join(SWEEP_KEYS)} name the sweep's runs)"
        )
    return dict(common)
  return {}


def expand_sweep(spec: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> list[dict[str, Any]]:
  """The points of a sweep: a list of override dicts, {"grid": {key: [values, ...]}}, or either
  of those as {"points": [...]} or {"grid": ...} beside a "common" dict (`sweep_common`).

  Returns a list of override dicts ({config key: value}), in order, without the common ones.
  Raises ConfigError for a malformed spec and for two points that would be the same run (the
  same command line).
  """
  if isinstance(spec, Mapping) and set(spec) - {"common"} == {"points"}:
    spec = spec["points"]
  elif isinstance(spec, Mapping) and "common" in spec:
    spec = {k: v for k, v in spec.items() if k != "common"}
  if isinstance(spec, Mapping):
    if set(spec) != {"grid"} or not isinstance(spec["grid"], Mapping) or not spec["grid"]:
      raise ConfigError(
        "a sweep is a list of override dicts, {'grid': {key: [values]}} or {'points': [...]}, "
        f"optionally with 'common': {{key: value}}; got {spec!r}"
      )
    grid = spec["grid"]
    for key, values in grid.items():
      if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise ConfigError(f"grid key {key!r} needs a non-empty list of values, got {values!r}")
    points = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]
  elif isinstance(spec, Sequence) and not isinstance(spec, (str, bytes)):
    points = []
    for i, point in enumerate(spec):
      if not isinstance(point, Mapping):
        raise ConfigError(f"sweep point {i} must be a dict of config overrides, got {point!r}")
      points.append(dict(point))
  else:
    raise ConfigError(
      f"a sweep is a list of override dicts or {{'grid': {{key: [values]}}}}, got {spec!r}"
    )
  if not points:
    raise ConfigError("the sweep has no points")
  seen: dict[str, int] = {}
  for i, point in enumerate(points):
    for key in point:
      if not isinstance(key, str) or key in SWEEP_KEYS:
        raise ConfigError(
          f"sweep point {i}: {key!r} cannot be swept ({', '.join(SWEEP_KEYS)} name the sweep's runs)"
        )
    name = point_name(point)
    if name in seen:
      raise ConfigError(f"sweep points {seen[name]} and {i} are the same run: {point!r}")
    seen[name] = i
  return points


def point_name(overrides: Mapping[str, Any]) -> str:
  """A readable, filesystem-safe directory name for one point: "optim.name=sgd,optim.learning_rate=0.1".

  Runs of characters other than letters, digits and "._+-" in a value become one "_"; a name
  over 150 characters keeps only the last part of each key, and then is cut. Whenever the name
  is not the exact overrides, a hash of them is appended, so that different points keep
  different names. The empty point (the config as it is) is "base".
  """
  if not overrides:
    return "base"
  exact = ",".join(f"{key}={override_text(value)}" for key, value in overrides.items())
  safe = {
    _UNSAFE.sub("_", key): _UNSAFE.sub("_", override_text(value)).strip("_") or "_"
    for key, value in overrides.items()
  }
  name = ",".join(f"{key}={value}" for key, value in safe.items())
  if name == exact and len(name) <= _MAX_NAME:
    return name
  if len(name) > _MAX_NAME:
    name = ",".join(f"{key.rsplit('.', 1)[-1]}={value}" for key, value in safe.items())
  return f"{name[: _MAX_NAME - 9]}-{hashlib.sha1(exact.encode()).hexdigest()[:8]}"


def point_overrides(overrides: Mapping[str, Any]) -> list[str]:
  """A point's overrides as "key=text" items for `apply_overrides` and `--config.` flags."""
  return [f"{key}={override_text(value)}" for key, value in overrides.items()]


def point_config(
  experiment: str, variant: str | None, common: Sequence[str], overrides: Mapping[str, Any]
) -> ml_collections.ConfigDict:
  """The config one point runs with: the variant, then the common overrides, then the point's."""
  return apply_overrides(
    load_config(experiment, variant),
    [*common, *point_overrides(overrides)],
    experiment_rules(experiment),
  )


POINT_FILE = "sweep_point.json"  # in a point's directory: the overrides and config it runs with


def save_point(
  workdir: str, overrides: Mapping[str, Any], config: ml_collections.ConfigDict
) -> None:
  """Records in `workdir` which point and config its run is, before the run starts."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, POINT_FILE)
  with open(path + ".tmp", "w") as f:
    json.dump(
      {
        "overrides": dict(overrides),
        "config": json.loads(config.to_json_best_effort(sort_keys=True)),
      },
      f,
      indent=2,
      default=str,
    )
  os.replace(path + ".tmp", path)


def config_differences(
  saved: Mapping[str, Any],
  expected: ml_collections.ConfigDict,
  defaults: ml_collections.ConfigDict | None = None,
) -> list[str]:
  """The keys whose values differ between a saved config (as JSON) and `expected`, as "key: a -> b".

  W&B settings are left out: they change where a run is logged, not what it computes. With
  `defaults` (the base config every experiment starts from), a key the saved record lacks is no
  difference when `expected` holds its default: the record predates the key's joining the base
  config, whose default is the behaviour its absence had.
  """
  want = json.loads(expected.to_json_best_effort(sort_keys=True))
  base = json.loads(defaults.to_json_best_effort(sort_keys=True)) if defaults is not None else {}
  missing = "<missing>"
  diffs = []

  def walk(a: Any, b: Any, d: Any, path: str) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
      for k in sorted(set(a) | set(b)):
        if not path and k == "wandb":
          continue
        walk(
          a.get(k, missing),
          b.get(k, missing),
          d.get(k, missing) if isinstance(d, dict) else missing,
          f"{path}.{k}" if path else k,
        )
    elif a == missing and d != missing and b == d:
      return
    elif a != b:
      diffs.append(f"{path}: {a!r} -> {b!r}")

  walk(dict(saved), want, base, "")
  return diffs


def point_finished(
  workdir: str,
  expected: ml_collections.ConfigDict,
  defaults: ml_collections.ConfigDict | None = None,
) -> tuple[bool, list[str]]:
  """Whether `workdir` holds a finished run of `expected`: its result.json, and `save_point`'s record.

  Returns (finished, differences): the differences are non-empty when the workdir holds a run
  (finished or not) of another config, which must not be resumed as this point. The sweep's own
  record is compared rather than the loop's config.json, which an experiment may have completed.
  `defaults`: see `config_differences`.
  """
  path = os.path.join(workdir, POINT_FILE)
  if not os.path.exists(path):
    return False, []
  with open(path) as f:
    diffs = config_differences(json.load(f)["config"], expected, defaults)
  return not diffs and os.path.exists(os.path.join(workdir, "result.json")), diffs
