"""Turns a sweep's runs into a markdown table and plots (written by `python -m scripts.sweep`).

    python -m scripts.report runs/sweeps/lenet5_mnist/optimizers [--metric test/error] [--out DIR]
        [--image-prefix PREFIX] [--ylim LOW,HIGH]

Writes into the sweep directory (or --out): report.md, a table with one row per point (its
overrides, the final eval metrics, steps, the seconds spent in training steps and the process's
whole wall time with start-up, compilation and evaluation, from the point's result.json; a
resumed point's times are those of its last process), and
curves.png (train loss and the metric against the step, the points overlaid) and
final_<metric>.png (a bar per point), and the plots the experiment's config asks for this sweep
in `get_sweep_plots()` (e.g. the ResNet paper's Figure 6 for resnet_cifar10's `degradation`:
training and test error against the iteration, plain and residual networks side by side; see
vision_jax/sweeps.py). The images are linked relative to report.md, so that the report reads
as it is where it lies (`--out docs/ablations/<sweep>` for a write-up); --image-prefix prepends
a path to every link, for markdown pasted elsewhere.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any, Sequence

from vision_jax import plotting, sweeps
from vision_jax.errors import ConfigError, PathError
from vision_jax.sweeps import override_text
from vision_jax.train.metric_writers import read_metrics
from vision_jax.train.workdir import writable_directory

TRAIN_LOSS = "train/loss"


def show(metric: str, value: Any) -> str:
  if not isinstance(value, (int, float)):
    return "—"
  return f"{100 * value:.2f}" if plotting.is_fraction(metric) else f"{value:.4g}"


def header(metric: str) -> str:
  return f"{metric} (%)" if plotting.is_fraction(metric) else metric


def load_sweep(sweep_dir: str) -> tuple[dict, list[dict]]:
  """sweep.json, and per point: {name, overrides, status, result (or None), records}."""
  path = os.path.join(sweep_dir, "sweep.json")
  if not os.path.exists(path):
    raise FileNotFoundError(
      f"{path} not found: give the directory of a sweep run by scripts.sweep "
      "(<workdir>/<experiment>/<sweep>)"
    )
  with open(path) as f:
    sweep = json.load(f)
  points = []
  for entry in sweep["points"]:
    point_dir = os.path.join(sweep_dir, entry["workdir"])
    result_path = os.path.join(point_dir, "result.json")
    result = None
    if os.path.exists(result_path):
      with open(result_path) as f:
        result = json.load(f)
    points.append(
      {
        "name": entry["name"],
        "overrides": entry["overrides"],
        "result": result,
        "status": "finished" if result else entry.get("status", "not run"),
        "records": read_metrics(point_dir),
      }
    )
  return sweep, points


def short_labels(points: Sequence[dict]) -> list[str]:
  """Plot labels: each override as "<last part of its key>=<value>" ("learning_rate=0.1")."""
  labels = []
  for p in points:
    parts = [f"{key.rsplit('.', 1)[-1]}={override_text(v)}" for key, v in p["overrides"].items()]
    labels.append(", ".join(parts) or p["name"])
  return labels if len(set(labels)) == len(labels) else [p["name"] for p in points]


def config_plots(
  sweep: dict,
  points: Sequence[dict],
  labels: Sequence[str],
  out: str,
  ylim: Sequence[float] | None = None,
) -> list[tuple[str, str]]:
  """Draws the plots `configs/<experiment>.py` asks for this sweep (`get_sweep_plots()`) from its
  finished points; returns (alt text, path) per plot drawn. A plot none of whose panels has a
  finished point, or whose points logged none of its metrics, is left out. `ylim` replaces the
  plots' own y range (a paper's axis, such as Figure 6's 0-20%, hides a short run's curves)."""
  try:
    specs = sweeps.get_sweep_plots(sweep["experiment"]).get(sweep["sweep"], [])
  except ModuleNotFoundError:  # a sweep of a config this checkout does not have
    return []
  images = []
  for spec in specs:
    panels = {}
    for panel, match in spec.get("panels", {"": {}}).items():
      runs = {}
      for label, p in zip(labels, points):
        if p["result"] and sweeps.in_panel(p["overrides"], match):
          key = spec.get("label_key")
          runs[override_text(p["overrides"][key]) if key in p["overrides"] else label] = p[
            "records"
          ]
      if runs:
        panels[panel] = runs
    if not panels:
      continue
    try:
      path = plotting.plot_panels(
        panels,
        spec["curves"],
        os.path.join(out, spec["file"]),
        title=spec.get("title", ""),
        xlabel=spec.get("xlabel", "step"),
        ylabel=spec.get("ylabel", ""),
        scale=spec.get("scale", 1.0),
        ylim=ylim or spec.get("ylim"),
      )
    except ValueError:  # the finished points logged none of the plot's metrics
      continue
    images.append((spec.get("title") or spec["file"], path))
  return images


def write_report(
  sweep_dir: str,
  metric: str = "test/error",
  out: str | None = None,
  image_prefix: str = "",
  ylim: Sequence[float] | None = None,
) -> str:
  """Writes report.md and its plots into `out` (default: the sweep directory); returns report.md's path."""
  out = out or sweep_dir
  sweep, points = load_sweep(sweep_dir)
  finished = [p for p in points if p["result"]]
  eval_keys = sorted({k for p in finished for k in p["result"].get("eval", {})})
  if finished and metric not in eval_keys:
    raise KeyError(
      f"metric {metric!r} is not in the points' results; they have: {', '.join(eval_keys)}"
    )
  metrics = [metric] + [k for k in eval_keys if k != metric]
  keys = list(dict.fromkeys(k for p in points for k in p["overrides"]))
  labels = short_labels(points)
  title = f"{sweep['experiment']} / {sweep['sweep']}"

  images = []
  if finished:
    runs = {label: p["records"] for label, p in zip(labels, points) if p["result"]}
    scales = {metric: 100.0} if plotting.is_fraction(metric) else {}
    images.append(
      (
        "curves",
        plotting.plot_runs(
          runs, [TRAIN_LOSS, metric], os.path.join(out, "curves.png"), title=title, scales=scales
        ),
      )
    )
    bar_labels = [label for label, p in zip(labels, points) if p["result"]]
    values = [
      p["result"]["eval"][metric] * (100 if plotting.is_fraction(metric) else 1) for p in finished
    ]
    bar_name = "final_" + re.sub(r"[^A-Za-z0-9]+", "_", metric) + ".png"
    images.append(
      (
        f"final {metric}",
        plotting.bar_chart(
          bar_labels, values, os.path.join(out, bar_name), ylabel=header(metric), title=title
        ),
      )
    )

    images.extend(config_plots(sweep, points, labels, out, ylim))

  hardware = sorted({p["result"].get("hardware", "?") for p in finished})
  total_wall = sum(p["result"].get("wall_s", 0.0) for p in finished)
  common = " ".join(f"--config.{o}" for o in sweep.get("common_overrides", []))
  lines = [
    f"### Sweep `{sweep['sweep']}` of `{sweep['experiment']}`",
    "",
    f"`{sweep['command']}`" if sweep.get("command") else "",
    "",
    f"{len(finished)} of {len(points)} points finished"
    + (f" on {', '.join(hardware)}, {total_wall / 60:.1f} min of runs in all" if finished else "")
    + (f"; variant `{sweep['variant']}`" if sweep.get("variant") else "")
    + (f"; every point with `{common}`" if common else "")
    + ".",
    "",
    "| point | "
    + " | ".join(keys)
    + " | "
    + " | ".join(header(m) for m in metrics)
    + f" | final {TRAIN_LOSS} | steps | train (s) | wall (s) |",
    "|" + "---|" * (1 + len(keys)) + "---:|" * (len(metrics) + 4),
  ]
  for p in points:
    r = p["result"]
    cells = [f"`{p['name']}`"] + [
      override_text(p["overrides"][k]) if k in p["overrides"] else "" for k in keys
    ]
    if r:
      losses = [rec[TRAIN_LOSS] for rec in p["records"] if TRAIN_LOSS in rec]
      cells += [show(m, r.get("eval", {}).get(m)) for m in metrics]
      train_s = r.get("train_wall_s")
      steps = str(r.get("steps", "—"))
      if r.get("best_step") is not None and r["best_step"] != r.get(
        "steps"
      ):  # early stopping's evaluation
        steps += f" (best: {r['best_step']})"
      cells += [
        show(TRAIN_LOSS, losses[-1] if losses else None),
        steps,
        f"{train_s:.0f}" if isinstance(train_s, (int, float)) else "—",
        f"{r.get('wall_s', 0):.0f}",
      ]
    else:
      cells += [p["status"]] + ["—"] * (len(metrics) + 3)
    lines.append("| " + " | ".join(cells) + " |")
  lines.append("")
  for alt, path in images:
    lines.append(f"![{alt}]({image_prefix}{os.path.relpath(path, out)})")
  os.makedirs(out, exist_ok=True)
  report_path = os.path.join(out, "report.md")
  with open(report_path, "w") as f:
    f.write("\n".join(lines).replace("\n\n\n", "\n\n") + "\n")
  return report_path


def _ylim(text: str) -> tuple[float, float]:
  try:
    low, high = (float(v) for v in text.split(","))
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected LOW,HIGH (two numbers), got {text!r}") from None
  if not low < high:
    raise argparse.ArgumentTypeError(f"LOW must be below HIGH, got {text!r}")
  return low, high


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
    description="Write report.md and plots for a sweep run by scripts.sweep."
  )
  parser.add_argument("sweep_dir", help="<workdir>/<experiment>/<sweep>, holding sweep.json")
  parser.add_argument(
    "--metric", default="test/error", help="the eval metric to compare (default: test/error)"
  )
  parser.add_argument(
    "--out", default=None, help="where report.md and the PNGs go (default: the sweep directory)"
  )
  parser.add_argument(
    "--image-prefix",
    default="",
    help="prepended to the image links, for a report pasted elsewhere than --out",
  )
  parser.add_argument(
    "--ylim",
    default=None,
    metavar="LOW,HIGH",
    type=_ylim,
    help="the y range of the config's plots (get_sweep_plots()), instead of their own",
  )
  args = parser.parse_args(argv)
  try:
    if os.path.exists(os.path.join(args.sweep_dir, "sweep.json")):  # else write_report says so
      writable_directory(
        args.out or args.sweep_dir,
        "--out" if args.out else "the sweep directory (--out DIR writes elsewhere)",
      )
    path = write_report(args.sweep_dir, args.metric, args.out, args.image_prefix, args.ylim)
  except (FileNotFoundError, KeyError, ConfigError, PathError) as e:
    print(f"error: {e.args[0] if e.args else e}", file=sys.stderr)
    return 2
  print(open(path).read())
  print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
