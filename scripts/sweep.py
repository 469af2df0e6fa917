"""Runs one of a config's sweeps (`get_sweeps()` in configs/<experiment>.py), one run per point.

    python -m scripts.sweep lenet5_mnist --sweep optimizers [--workdir runs/sweeps] [--variant ARG]
        [--config.<key>=<value> ...] [--jobs N] [--dry-run] [--fresh]

Each point runs as its own process, `python -m experiments.<experiment> --workdir
<workdir>/<experiment>/<sweep>/<point> --config.<key>=<value> ...`, so that one point's crash does
not end the sweep and each point starts with free memory. Its output goes to <point>/log.txt.
--jobs N runs N points at once (by default one after another).
The points of one sweep share the W&B group "<experiment>/<sweep>" and are named by their point.

Running the same command again skips the finished points (result.json, with the same config)
and resumes the others from their last checkpoint. A point whose directory holds a run of a
different config (say, other --config.train.steps) stops the sweep before it runs anything, unless
--fresh, which deletes such runs.
The sweep's state goes to <workdir>/<experiment>/<sweep>/sweep.json; `python -m scripts.report`
turns it into a table and plots. The exit status is non-zero when a point failed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from typing import Any, Sequence

import ml_collections

from configs.common import base_config
from vision_jax import cli, sweeps
from vision_jax.errors import ConfigError, PathError
from vision_jax.train.workdir import writable_directory

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
  parser = argparse.ArgumentParser(
    description="Run a config's sweep, one process per point. Other --config.<key>=<value> flags apply to every point."
  )
  parser.add_argument(
    "experiment", help="the name of configs/<experiment>.py and experiments/<experiment>.py"
  )
  parser.add_argument("--sweep", required=True, help="a key of the config's get_sweeps()")
  parser.add_argument(
    "--workdir", default="runs/sweeps", help="points go to WORKDIR/<experiment>/<sweep>/<point>"
  )
  parser.add_argument("--variant", default=None, help="the config's get_config(arg), e.g. 'smoke'")
  parser.add_argument(
    "--dry-run", action="store_true", help="print each point's command and whether it would run"
  )
  parser.add_argument(
    "--jobs",
    type=int,
    default=1,
    help="points run at once (default 1); more only where the devices or cores have room for them",
  )
  parser.add_argument(
    "--fresh",
    action="store_true",
    help="delete a point's directory when it holds a run of a different config, and rerun it",
  )
  return cli.parse_config_overrides(parser, argv)


def _write_json(path: str, data: Any) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".tmp", "w") as f:
    json.dump(data, f, indent=2, default=str)
  os.replace(path + ".tmp", path)


def _log_tail(path: str, lines: int = 15) -> str:
  try:
    with open(path, errors="replace") as f:
      return "".join(f.readlines()[-lines:])
  except OSError:
    return ""


@dataclasses.dataclass
class Point:
  """One run of the sweep: its overrides, directory, config and command line."""

  name: str
  overrides: dict[str, Any]
  workdir: str
  config: ml_collections.ConfigDict
  flags: list[str]  # the experiment's flags after --workdir
  common: list[str] = dataclasses.field(
    default_factory=list
  )  # the sweep's and the command line's shared overrides

  def command(
    self, experiment: str, python: str = sys.executable, workdir: str | None = None
  ) -> list[str]:
    return [
      python,
      "-m",
      f"experiments.{experiment}",
      "--workdir",
      workdir or self.workdir,
      *self.flags,
    ]


def plan_sweep(
  experiment: str, sweep: str, workdir: str, variant: str | None, common: Sequence[str]
) -> list[Point]:
  """The sweep's points, each config checked (keys and values) before the first point runs."""
  available = sweeps.get_sweeps(experiment)
  if sweep not in available:
    listed = (
      ", ".join(sorted(available))
      if available
      else f"none (configs/{experiment}.py has no get_sweeps())"
    )
    raise ConfigError(f"unknown sweep {sweep!r} for {experiment}; its sweeps: {listed}")
  if not os.path.exists(os.path.join(REPO_ROOT, "experiments", f"{experiment}.py")):
    raise ConfigError(f"no experiment file experiments/{experiment}.py to run the points with")
  overrides = sweeps.expand_sweep(available[sweep])
  # The sweep's own common overrides first; the command line's may change them (fewer steps, say).
  common = [*sweeps.point_overrides(sweeps.sweep_common(available[sweep])), *common]
  swept = {key for point in overrides for key in point}
  for item in common:
    key = item.partition("=")[0]
    if key in swept or key in sweeps.SWEEP_KEYS:
      raise ConfigError(
        f"--config.{key} is set by the sweep {sweep!r} for each point; drop it from the command line"
      )
  sweep_dir = os.path.abspath(os.path.join(workdir, experiment, sweep))
  points = []
  for point in overrides:
    name = sweeps.point_name(point)
    extra = [
      *common,
      *sweeps.point_overrides(point),
      f"wandb.group={experiment}/{sweep}",
      f"wandb.name={name}",
    ]
    flags = [*(["--variant", variant] if variant else []), *(f"--config.{o}" for o in extra)]
    config = sweeps.point_config(experiment, variant, common, point)
    points.append(Point(name, point, os.path.join(sweep_dir, name), config, flags, list(common)))
  return points


def run_point(point: Point, experiment: str, label: str) -> dict[str, Any]:
  """Runs one point as its own process, its output appended to log.txt; returns its status."""
  log_path = os.path.join(point.workdir, "log.txt")
  command = point.command(experiment)
  print(f"{label}: running (log: {log_path})", flush=True)
  t0 = time.perf_counter()
  with open(log_path, "a") as log:
    log.write(f"$ {shlex.join(command)}\n")
    log.flush()
    returncode = subprocess.call(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
  wall_s = round(time.perf_counter() - t0, 1)
  result_path = os.path.join(point.workdir, "result.json")
  if returncode == 0 and os.path.exists(result_path):
    with open(result_path) as f:
      result = json.load(f)
    print(
      f"{label}: done in {wall_s:.0f}s: {result.get('metric', 'value')} = {result.get('value')}",
      flush=True,
    )
    return {"status": "done", "wall_s": wall_s}
  print(
    f"{label}: failed (exit status {returncode}) after {wall_s:.0f}s; the end of {log_path}:\n"
    + _log_tail(log_path),
    flush=True,
  )
  return {"status": "failed", "wall_s": wall_s, "returncode": returncode}


def main(argv: Sequence[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  args, common = parse_args(argv)
  try:
    if args.jobs < 1:
      raise ConfigError(f"--jobs must be at least 1, got {args.jobs}")
    points = plan_sweep(args.experiment, args.sweep, args.workdir, args.variant, common)
    sweep_dir = os.path.dirname(points[0].workdir)
    if not args.dry_run:  # before sweep.json or any point's directory is written
      writable_directory(sweep_dir, "--workdir")
  except (ConfigError, PathError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  record_path = os.path.join(sweep_dir, "sweep.json")
  print(f"sweep {args.experiment}/{args.sweep}: {len(points)} points in {sweep_dir}")
  entries = [
    {
      "name": p.name,
      "overrides": p.overrides,
      "workdir": p.name,
      "status": "pending",
      "command": shlex.join(
        p.command(
          args.experiment, "python", os.path.join(args.workdir, args.experiment, args.sweep, p.name)
        )
      ),
    }
    for p in points
  ]
  record = {
    "experiment": args.experiment,
    "sweep": args.sweep,
    "variant": args.variant,
    "common_overrides": points[0].common,
    "wandb_group": f"{args.experiment}/{args.sweep}",
    "command": "python -m scripts.sweep " + shlex.join(argv),
    "points": entries,
  }
  record_lock = threading.Lock()

  def update(entry: dict[str, Any], **values: Any) -> None:
    """Sets a point's entry and rewrites sweep.json; points running at once take turns."""
    with record_lock:
      entry.update(values)
      if not args.dry_run:
        _write_json(record_path, record)

  state = [sweeps.point_finished(point.workdir, point.config, base_config()) for point in points]
  conflicts = [(point, diffs) for point, (_, diffs) in zip(points, state) if diffs]
  if conflicts and not args.fresh:
    # Another configuration's runs are in the way: nothing runs, and their sweep.json stays as it is.
    for point, diffs in conflicts:
      print(
        f"{point.name}: failed: {point.workdir} holds a run of a different config ({'; '.join(diffs[:5])}"
        f"{' ...' if len(diffs) > 5 else ''})",
        flush=True,
      )
    print(
      f"sweep {args.experiment}/{args.sweep}: {len(conflicts)} failed, nothing run; rerun with --fresh to "
      "delete those runs, or use another --workdir"
    )
    return 1
  to_run = []
  for i, (point, entry, (finished, diffs)) in enumerate(zip(points, entries, state)):
    label = f"[{i + 1}/{len(points)}] {point.name}"
    if finished:
      entry["status"] = "skipped"
      print(
        f"{label}: skipped (finished: {os.path.join(point.workdir, 'result.json')})", flush=True
      )
    elif args.dry_run:
      print(
        f"{label}: would {'delete the other run and run' if diffs else 'run'}: {entry['command']}",
        flush=True,
      )
    else:
      if diffs:
        shutil.rmtree(point.workdir)
      to_run.append((point, entry, label))
  update(record)  # writes sweep.json with every point's status before the first one runs

  def start(point: Point, entry: dict, label: str) -> dict:
    sweeps.save_point(point.workdir, point.overrides, point.config)
    # A result.json left by an earlier run must not make a crash of this one look finished.
    if os.path.exists(os.path.join(point.workdir, "result.json")):
      os.remove(os.path.join(point.workdir, "result.json"))
    update(entry, status="running")
    update(entry, **run_point(point, args.experiment, label))
    return entry

  executor = concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs)
  try:
    for future in [executor.submit(start, *item) for item in to_run]:
      future.result()
  except KeyboardInterrupt:
    executor.shutdown(wait=False, cancel_futures=True)
    for entry in entries:
      if entry["status"] == "running":
        update(entry, status="interrupted")
    print("\ninterrupted; rerun the same command to resume", file=sys.stderr)
    return 130
  executor.shutdown()

  counts = {
    status: sum(e["status"] == status for e in entries) for status in ("done", "skipped", "failed")
  }
  if args.dry_run:
    print(f"dry run: {len(points)} points, {counts['skipped']} finished; nothing was run")
    return 0
  print(
    f"sweep {args.experiment}/{args.sweep}: "
    + ", ".join(f"{n} {k}" for k, n in counts.items())
    + f"; {record_path}\nreport: python -m scripts.report "
    + shlex.quote(os.path.join(args.workdir, args.experiment, args.sweep))
  )
  return 1 if counts["failed"] else 0


if __name__ == "__main__":
  sys.exit(main())
