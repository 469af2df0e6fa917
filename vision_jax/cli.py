"""The command line shared by every experiment: flags only; the work is the experiment's `run`.

    python -m experiments.<name> --workdir DIR [--variant ARG] [--config.<key>=<value> ...]
        [--allow_changed_config] [--coordinator_address HOST:PORT --num_processes N --process_id I]

Writes DIR/result.json: {experiment, paper, metric, paper_value, value, steps, wall_s,
hardware, command, segments}, and prints a one-line result. Bad input (an unknown or impossible
setting, `ConfigError`; a missing or corrupt dataset, `DatasetError`; unreadable saved variables or
checkpoints, `CheckpointError`; a directory it cannot write in, `PathError`; a workdir in use by
another run or holding a run of other settings, `WorkdirError`; a diverged run: every
`errors.RunError`) ends it with one line, "error: ...".

Before anything is computed, the flags and the directories it writes in (--workdir,
$VISION_JAX_CACHE) are checked, and the workdir is claimed (`train.workdir`): one run at a time,
and a run started again continues with the settings it was started with, unless
--allow_changed_config; every start is recorded in DIR/segments.jsonl and result.json's
"segments", each with its command, the step it started from and the settings it changed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import sys
import time
from typing import Any, Callable, Sequence

import ml_collections

from vision_jax.config import apply_overrides, experiment_rules, load_config
from vision_jax.errors import ConfigError, RunError
from vision_jax.train import workdir as workdir_lib


def hardware() -> str:
  """The devices this process computes on, in words: 'NVIDIA H200 x1', 'CPU (2 cores, AMD EPYC ...)'."""
  import jax  # pylint: disable=g-import-not-at-top

  devices = jax.devices()
  if devices[0].platform == "cpu":
    model = platform.processor() or ""
    try:
      with open("/proc/cpuinfo") as f:
        model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), model)
    except OSError:
      pass
    return f"CPU ({os.cpu_count()} cores{', ' + model if model else ''})"
  return f"{devices[0].device_kind} x{len(devices)}"


def enable_compilation_cache() -> None:
  """Keeps compiled XLA programs under $VISION_JAX_CACHE/xla, so that a resumed run, a sweep's
  next point or a rerun skips recompiling its steps. `JAX_COMPILATION_CACHE_DIR` overrides the
  place; setting it to an empty string turns the cache off."""
  import jax  # pylint: disable=g-import-not-at-top

  from vision_jax.data.sources import cache_dir  # pylint: disable=g-import-not-at-top

  if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    jax.config.update("jax_compilation_cache_dir", os.path.join(cache_dir(), "xla"))


def parse_config_overrides(parser: argparse.ArgumentParser, argv: Sequence[str] | None):
  """`parser.parse_known_args(argv)`, with the rest read as `--config.<key>=<value>` overrides:
  (args, ["<key>=<value>", ...]); any other unknown argument is the parser's usage error."""
  args, rest = parser.parse_known_args(argv)
  overrides = []
  for item in rest:
    if not item.startswith("--config."):
      parser.error(f"unrecognised argument {item!r}; config keys are set as --config.<key>=<value>")
    overrides.append(item[len("--config.") :])
  return args, overrides


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
  parser = argparse.ArgumentParser(
    description="Run one experiment. Override any config key with --config.<key>=<value>."
  )
  parser.add_argument("--workdir", required=True, help="where checkpoints, metrics and pictures go")
  parser.add_argument("--variant", default=None, help="the config's get_config(arg), e.g. 'smoke'")
  parser.add_argument(
    "--coordinator_address", default=None, help="host:port of process 0 (multi-process)"
  )
  parser.add_argument("--num_processes", type=int, default=None)
  parser.add_argument("--process_id", type=int, default=None)
  parser.add_argument(
    "--distributed", action="store_true", help="jax.distributed.initialize() with auto-detection"
  )
  parser.add_argument(
    workdir_lib.ALLOW_FLAG,
    action="store_true",
    help="continue the run in --workdir with settings other than those it was started with",
  )
  return parse_config_overrides(parser, argv)


class _StderrHandler(logging.StreamHandler):
  """A handler writing to whatever `sys.stderr` is when a record comes (as `logging.lastResort`
  does), so that a replaced stderr (a test's capture) is written to, not the one of the first run."""

  def __init__(self):
    logging.Handler.__init__(self)  # pylint: disable=non-parent-init-called

  @property
  def stream(self):
    return sys.stderr


def configure_logging() -> None:
  """Progress messages (INFO: "resumed from step N", ...) to stderr, the libraries' at WARNING.

  `logging.basicConfig` would do nothing here: importing orbax logs through absl, which calls
  `basicConfig()` itself when the root logger has no handler, so the root already has a plain
  stderr handler at WARNING by the time a command starts. That handler (and ours of an earlier
  call, in-process) is replaced; any other (a test's log capture) is kept.
  """
  root = logging.getLogger()
  for handler in list(root.handlers):
    if isinstance(handler, _StderrHandler) or (
      type(handler) is logging.StreamHandler and handler.stream in (sys.stderr, sys.__stderr__)
    ):
      root.removeHandler(handler)
  handler = _StderrHandler()
  handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
  root.addHandler(handler)
  root.setLevel(logging.INFO)
  for noisy in ("absl", "orbax", "jax._src.xla_bridge", "tensorflow_datasets"):
    logging.getLogger(noisy).setLevel(logging.WARNING)


def claim_workdir(
  args: argparse.Namespace, config: ml_collections.ConfigDict, command: str, multi: bool
) -> workdir_lib.Workdir | None:
  """Checks the directories the run writes in and claims its workdir (process 0), or ends the
  command with "error: ...". Returns the claimed workdir; None on the other processes.

  In a multi-process run every process checks its own cache and the (shared) workdir, process 0
  claims the workdir, and then they exchange whether they could: each stops when any could not,
  so that none waits for the others at the first step.
  """
  from configs.common import base_config  # pylint: disable=g-import-not-at-top
  from vision_jax.data.sources import cache_dir  # pylint: disable=g-import-not-at-top

  primary = True
  if multi:
    import jax  # pylint: disable=g-import-not-at-top

    primary = jax.process_index() == 0
  claimed, error = None, None
  cache_what = (
    "$VISION_JAX_CACHE"
    if os.environ.get("VISION_JAX_CACHE")
    else "the cache directory (default; set $VISION_JAX_CACHE for another)"
  )
  try:
    workdir_lib.writable_directory(cache_dir(), cache_what)
    if primary:
      claimed = workdir_lib.Workdir.claim(
        args.workdir,
        config,
        command,
        allow_changed=args.allow_changed_config,
        defaults=base_config(),
      )
    else:
      workdir_lib.writable_directory(args.workdir, "--workdir")
  except RunError as e:
    error = e
  if multi:
    import numpy as np  # pylint: disable=g-import-not-at-top
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

    failed = np.asarray(multihost_utils.process_allgather(np.asarray(error is not None)))
    if error is None and failed.any():
      if claimed is not None:
        claimed.close()
      which = ", ".join(str(i) for i in np.flatnonzero(failed))
      error = RunError(
        f"process {which} of this run could not start (its output says why); stopping with it"
      )
  if error is not None:
    sys.exit(f"error: {error}")
  return claimed


def loop_result(config: ml_collections.ConfigDict, summary: dict[str, Any]) -> dict[str, Any]:
  """What every experiment trained by the loop reports in result.json: "steps" trained,
  "train_wall_s" and the final "eval"; with early stopping also "best_step", the step whose
  parameters (and "eval") the run ended on, and "early_stopped"."""
  out = {
    "steps": summary["step"],
    "train_wall_s": round(summary["train_wall_s"], 1),
    "eval": summary["eval"],
  }
  if config.train.early_stopping.metric:
    out.update(best_step=summary["best_step"], early_stopped=summary["early_stopped"])
  return out


def main(
  name: str,
  run: Callable[[ml_collections.ConfigDict, str], dict[str, Any]],
  *,
  paper: str,
  metric: str,
  paper_value: float | None,
  argv: Sequence[str] | None = None,
) -> dict[str, Any]:
  """Parses flags, loads configs/<name>.py, runs `run(config, workdir)` and writes result.json.

  `run` returns at least {"value": ..., "steps": ...}; other keys are kept in result.json, and a
  "metric" it returns replaces `metric` (when a run measures something else than usual).
  """
  argv = sys.argv[1:] if argv is None else list(argv)
  args, overrides = parse_args(argv)
  configure_logging()
  command = "python -m experiments." + name + " " + shlex.join(argv)
  try:
    # The flags first: a multi-process run that cannot start must not reach jax.distributed.
    from vision_jax.train.mesh import check_distributed_flags  # pylint: disable=g-import-not-at-top

    multi = check_distributed_flags(
      args.coordinator_address, args.num_processes, args.process_id, args.distributed
    )
    config = apply_overrides(load_config(name, args.variant), overrides, experiment_rules(name))
    if multi:
      from vision_jax.train.mesh import initialize_distributed  # pylint: disable=g-import-not-at-top

      initialize_distributed(args.coordinator_address, args.num_processes, args.process_id)
  except ConfigError as e:
    sys.exit(f"error: {e}")
  workdir = claim_workdir(args, config, command, multi)
  try:
    enable_compilation_cache()
    t0 = time.perf_counter()
    try:
      out = run(config, args.workdir)
    except RunError as e:
      # Bad input (a setting, a dataset, a checkpoint) or a diverged run: one line that says what
      # was expected, not a traceback.
      sys.exit(f"error: {e}")
    result = {
      "experiment": name,
      "paper": paper,
      "metric": metric,
      "paper_value": paper_value,
      "value": out.pop("value"),
      "steps": out.pop("steps"),
      "wall_s": round(time.perf_counter() - t0, 1),
      "hardware": hardware(),
      # This start's command; "segments" has every start's, and what each changed.
      "command": command,
      **out,
    }
    if workdir is not None:  # process 0
      result["segments"] = workdir.segments()
      os.makedirs(args.workdir, exist_ok=True)
      path = os.path.join(args.workdir, "result.json")
      with open(path + ".tmp", "w") as f:
        json.dump(result, f, indent=2, default=float)
      os.replace(path + ".tmp", path)
      value = result["value"]
      shown = f"{value:.4g}" if isinstance(value, float) else value
      paper_part = f" (paper: {paper_value})" if paper_value is not None else ""
      print(
        f"{name}: {result['metric']} = {shown}{paper_part} after {result['steps']} steps in "
        f"{result['wall_s']:.0f}s on {result['hardware']}; {path}"
      )
    return result
  finally:
    if workdir is not None:
      workdir.close()
