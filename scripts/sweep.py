"""Runs one of a config's sweeps (`get_sweeps()` in configs/<experiment>.py), one run per point.

    python -m scripts.sweep lenet5_mnist --sweep optimizers [--workdir runs/sweeps] [--variant ARG]
        [--config.<key>=<value> ...] [--dry-run] [--fresh]

Each point runs as its own process, `python -m experiments.<experiment> --workdir
<workdir>/<experiment>/<sweep>/<point> --config.<key>=<value> ...`, so that one point's crash does
not end the sweep and each point starts with free memory. Its output goes to <point>/log.txt.
The points of one sweep share the W&B group "<experiment>/<sweep>" and are named by their point.

Running the same command again skips the finished points (result.json, with the same config)
and resumes the others from their last checkpoint. A point whose directory holds a run of a
different config (say, other --config.train.steps) is an error unless --fresh, which deletes it.
The sweep's state goes to <workdir>/<experiment>/<sweep>/sweep.json; `python -m scripts.report`
turns it into a table and plots. The exit status is non-zero when a point failed.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from typing import Any, Sequence

from vision_jax import sweeps
from vision_jax.config import ConfigError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
  parser = argparse.ArgumentParser(
      description="Run a config's sweep, one process per point. Other --config.<key>=<value> flags apply to every point.")
  parser.add_argument("experiment", help="the name of configs/<experiment>.py and experiments/<experiment>.py")
  parser.add_argument("--sweep", required=True, help="a key of the config's get_sweeps()")
  parser.add_argument("--workdir", default="runs/sweeps", help="points go to WORKDIR/<experiment>/<sweep>/<point>")
  parser.add_argument("--variant", default=None, help="the config's get_config(arg), e.g. 'smoke'")
  parser.add_argument("--dry-run", action="store_true", help="print each point's command and whether it would run")
  parser.add_argument("--fresh", action="store_true",
                      help="delete a point's directory when it holds a run of a different config, and rerun it")
  args, rest = parser.parse_known_args(argv)
  common = []
  for item in rest:
    if not item.startswith("--config."):
      parser.error(f"unrecognised argument {item!r}; config keys are set as --config.<key>=<value>")
    common.append(item[len("--config."):])
  return args, common


def _write_json(path: str, data: Any) -> None:
  with open(path + ".tmp", "w") as f:
    json.dump(data, f, indent=2, default=str)
  os.replace(path + ".tmp", path)


def _log_tail(path: str, lines: int = 15) -> str:
  try:
    with open(path, errors="replace") as f:
      return "".join(f.readlines()[-lines:])
  except OSError:
    return ""


def main(argv: Sequence[str] | None = None) -> int:
  args, common = parse_args(sys.argv[1:] if argv is None else argv)
  try:
    available = sweeps.get_sweeps(args.experiment)
    if args.sweep not in available:
      listed = ", ".join(sorted(available)) if available else "none (configs/{}.py has no get_sweeps())".format(args.experiment)
      raise ConfigError(f"unknown sweep {args.sweep!r} for {args.experiment}; its sweeps: {listed}")
    if not os.path.exists(os.path.join(REPO_ROOT, "experiments", f"{args.experiment}.py")):
      raise ConfigError(f"no experiment file experiments/{args.experiment}.py to run the points with")
    points = sweeps.expand_sweep(available[args.sweep])
    swept = {key for point in points for key in point}
    for item in common:
      key = item.partition("=")[0]
      if key in swept:
        raise ConfigError(f"--config.{key} is set by the sweep {args.sweep!r}; drop it from the command line")
      if key in sweeps.SWEEP_KEYS:
        raise ConfigError(f"--config.{key} is set by the sweep for each point; drop it from the command line")
    group = f"{args.experiment}/{args.sweep}"
    sweep_dir = os.path.abspath(os.path.join(args.workdir, args.experiment, args.sweep))
    plan = []
    for point in points:
      name = sweeps.point_name(point)
      extra = [*common, *sweeps.point_overrides(point), f"wandb.group={group}", f"wandb.name={name}"]
      # Validates every key and value before the first point starts.
      config = sweeps.point_config(args.experiment, args.variant, common, point)
      plan.append((name, point, extra, config))
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2

  print(f"sweep {group}: {len(plan)} points in {sweep_dir}")
  record = {"experiment": args.experiment, "sweep": args.sweep, "variant": args.variant,
            "common_overrides": common, "wandb_group": group,
            "command": "python -m scripts.sweep " + shlex.join(sys.argv[1:] if argv is None else argv), "points": []}
  if not args.dry_run:
    os.makedirs(sweep_dir, exist_ok=True)
  counts = {"done": 0, "skipped": 0, "failed": 0}
  for i, (name, point, extra, config) in enumerate(plan):
    point_dir = os.path.join(sweep_dir, name)
    flags = [*(["--variant", args.variant] if args.variant else []), *(f"--config.{o}" for o in extra)]
    command = [sys.executable, "-m", f"experiments.{args.experiment}", "--workdir", point_dir, *flags]
    shown = shlex.join(["python", "-m", f"experiments.{args.experiment}", "--workdir", os.path.relpath(point_dir), *flags])
    entry = {"name": name, "overrides": point, "workdir": name, "command": shown}
    record["points"].append(entry)
    finished, diffs = sweeps.point_finished(point_dir, config)
    label = f"[{i + 1}/{len(plan)}] {name}"
    if diffs and not args.fresh:
      entry["status"] = "failed"
      entry["error"] = "its directory holds a run of a different config: " + "; ".join(diffs)
      print(f"{label}: failed: {point_dir} holds a run of a different config ({'; '.join(diffs[:5])}"
            f"{' ...' if len(diffs) > 5 else ''}); rerun with --fresh to delete it, or use another --workdir", flush=True)
      counts["failed"] += 1
      continue
    if finished:
      entry["status"] = "skipped"
      print(f"{label}: skipped (finished: {os.path.join(point_dir, 'result.json')})", flush=True)
      counts["skipped"] += 1
      continue
    if args.dry_run:
      entry["status"] = "would rerun from scratch" if diffs else "would run"
      print(f"{label}: {entry['status']}: {shown}", flush=True)
      continue
    if diffs:
      shutil.rmtree(point_dir)
    sweeps.save_point(point_dir, point, config)
    # A result.json left by an earlier run must not make a crash of this one look finished.
    if os.path.exists(os.path.join(point_dir, "result.json")):
      os.remove(os.path.join(point_dir, "result.json"))
    log_path = os.path.join(point_dir, "log.txt")
    entry["status"] = "running"
    _write_json(os.path.join(sweep_dir, "sweep.json"), record)
    print(f"{label}: running (log: {log_path})", flush=True)
    t0 = time.perf_counter()
    try:
      with open(log_path, "a") as log:
        log.write(f"$ {shlex.join(command)}\n")
        log.flush()
        returncode = subprocess.call(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    except KeyboardInterrupt:
      entry["status"] = "interrupted"
      _write_json(os.path.join(sweep_dir, "sweep.json"), record)
      print(f"\n{label}: interrupted; rerun the same command to resume", file=sys.stderr)
      return 130
    entry["wall_s"] = round(time.perf_counter() - t0, 1)
    entry["returncode"] = returncode
    if returncode == 0 and os.path.exists(os.path.join(point_dir, "result.json")):
      entry["status"] = "done"
      with open(os.path.join(point_dir, "result.json")) as f:
        result = json.load(f)
      print(f"{label}: done in {entry['wall_s']:.0f}s: {result.get('metric', 'value')} = {result.get('value')}", flush=True)
      counts["done"] += 1
    else:
      entry["status"] = "failed"
      print(f"{label}: failed (exit status {returncode}) after {entry['wall_s']:.0f}s; the end of {log_path}:\n"
            + _log_tail(log_path), flush=True)
      counts["failed"] += 1
    _write_json(os.path.join(sweep_dir, "sweep.json"), record)

  summary = ", ".join(f"{n} {k}" for k, n in counts.items())
  if args.dry_run:
    print(f"dry run: {len(plan)} points ({counts['skipped']} finished); nothing was run")
    return 0
  _write_json(os.path.join(sweep_dir, "sweep.json"), record)
  print(f"sweep {group}: {summary}; {os.path.join(sweep_dir, 'sweep.json')}\n"
        f"report: python -m scripts.report {shlex.quote(os.path.relpath(sweep_dir))}")
  return 1 if counts["failed"] else 0


if __name__ == "__main__":
  sys.exit(main())
