"""Pictures a person would rather look at than read: curves, image grids, bar charts (PNG)."""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.lines  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path: str) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path + ".tmp.png", dpi=110, bbox_inches="tight")
  plt.close(fig)
  os.replace(path + ".tmp.png", path)
  return path


def is_fraction(metric: str) -> bool:
  """Errors and accuracies are fractions in the metrics, and read best as percentages."""
  return metric.rsplit("/", 1)[-1].endswith(("error", "accuracy"))


# The training loop logs the final evaluation once more, at the last step, as final_<split>/<metric>.
_FINAL = "final_"


def plot_curves(records: Sequence[dict], path: str, title: str = "") -> str:
  """One panel per metric family (loss, accuracy/error, ...), train and eval splits overlaid.

  records: metrics.jsonl rows, {"step": int, "train/loss": float, "test/error": float, ...}.
  Errors and accuracies are drawn in percent. The final evaluation (final_<split>/<metric>) is no
  curve but one point, which would hide under the split's last point: it is a star in the split's
  colour, drawn on top, with its value written beside it. A split keeps its colour in every panel,
  and one legend under the panels names them all.
  """
  curves: dict[str, dict[str, tuple[list, list]]] = {}
  finals: dict[
    str, dict[str, tuple[int, float]]
  ] = {}  # metric -> split -> (step, value), the latest
  for r in records:
    for key, value in r.items():
      if key == "step" or "/" not in key or not isinstance(value, (int, float)):
        continue
      split, metric = key.split("/", 1)
      if metric in ("learning_rate", "images_per_s", "steps_per_s"):
        continue
      if split.startswith(_FINAL):
        if np.isfinite(value):
          finals.setdefault(metric, {})[split[len(_FINAL) :]] = (r["step"], value)
        continue
      xs, ys = curves.setdefault(metric, {}).setdefault(split, ([], []))
      xs.append(r["step"])
      ys.append(value)
  metrics = sorted(set(curves) | set(finals))
  if not metrics:
    raise ValueError("no metrics to plot")
  splits = sorted(
    {s for m in metrics for s in [*curves.get(m, {}), *finals.get(m, {})]},
    key=lambda s: (s != "train", s),
  )
  cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  colours = {s: cycle[i % len(cycle)] for i, s in enumerate(splits)}
  fig, axes = plt.subplots(
    1, len(metrics), figsize=(4.2 * len(metrics), 3.7), squeeze=False, layout="constrained"
  )
  for ax, metric in zip(axes[0], metrics):
    scale = 100.0 if is_fraction(metric) else 1.0
    values = []
    for split, (xs, ys) in sorted(
      curves.get(metric, {}).items(), key=lambda item: splits.index(item[0])
    ):
      ax.plot(
        xs,
        [scale * y for y in ys],
        label=split,
        color=colours[split],
        marker="o" if len(xs) < 30 else None,
        ms=3,
      )
      values.extend(ys)
    for split, (step, value) in finals.get(metric, {}).items():
      y = scale * value
      ax.plot(
        [step],
        [y],
        ls="none",
        marker="*",
        ms=13,
        color=colours[split],
        mec="black",
        mew=0.7,
        zorder=5,
        clip_on=False,
        label=f"final {split}",
      )
      # The value, left of the point (it is the last step), on the side away from the curve it ends.
      ends = curves.get(metric, {}).get(split, ([], []))[1][-2:]
      below = len(ends) == 2 and ends[0] > ends[1]
      ax.annotate(
        f"{y:.2f}%" if scale == 100 else f"{value:.4g}",
        (step, y),
        xytext=(-9, -9 if below else 9),
        textcoords="offset points",
        ha="right",
        va="top" if below else "bottom",
        fontsize=8,
        zorder=6,
        bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8},
      )
      values.append(value)
    ax.set_title(metric + (" (%)" if scale == 100 else ""))
    ax.set_xlabel("step")
    if metric.startswith("loss") and all(v > 0 for v in values):
      ax.set_yscale("log")
    ax.grid(alpha=0.3)
  handles = {}
  for ax in axes[0]:
    for line in ax.lines:
      handles.setdefault(line.get_label(), line)
  order = [*splits, *(f"final {s}" for s in splits)]
  labels = sorted(handles, key=order.index)
  fig.legend(
    [handles[label] for label in labels],
    labels,
    loc="outside lower center",
    ncol=len(labels),
    fontsize=9,
    frameon=False,
  )
  if title:
    fig.suptitle(title)
  return _save(fig, path)


def _log_minor_label(value: float, _) -> str:
  """Labels 2, 3 and 5 times a power of ten on a log axis: enough to read it, few enough not to overlap."""
  mantissa = round(value / 10 ** np.floor(np.log10(value)))
  return f"{value:g}" if mantissa in (2, 3, 5) else ""


def plot_runs(
  runs: Mapping[str, Sequence[dict]],
  keys: Sequence[str],
  path: str,
  title: str = "",
  scales: Mapping[str, float] | None = None,
) -> str:
  """Several runs overlaid: one panel per metric key, one line per run, against the step.

  runs: run label -> its metrics.jsonl rows ({"step": int, key: float, ...}); a run without a
  key is left out of that panel, and a key that no run logs over steps (a metric computed once,
  after training) gets no panel. scales: key -> factor for the plotted values (100 for percent).
  """
  scales = scales or {}
  logged = lambda key: any(
    isinstance(r.get(key), (int, float)) for records in runs.values() for r in records
  )
  keys = [key for key in keys if logged(key)] or list(keys[:1])
  fig, axes = plt.subplots(1, len(keys), figsize=(5.2 * len(keys), 3.8), squeeze=False)
  plotted = False
  for ax, key in zip(axes[0], keys):
    values = []
    for label, records in runs.items():
      points = [
        (r["step"], r[key] * scales.get(key, 1.0))
        for r in records
        if isinstance(r.get(key), (int, float)) and np.isfinite(r[key])
      ]
      if not points:
        continue
      xs, ys = zip(*points)
      values.extend(ys)
      ax.plot(xs, ys, label=label, marker="o" if len(xs) < 30 else None, ms=3)
      plotted = True
    ax.set_title(key + (" (%)" if scales.get(key) == 100 else ""))
    ax.set_xlabel("step")
    if values and min(values) > 0 and max(values) / min(values) > 10:
      # Curves spanning decades: the late differences between runs would be flat lines otherwise.
      ax.set_yscale("log")
      ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
      ax.yaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(_log_minor_label))
      ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.grid(alpha=0.3, which="both")
  if not plotted:
    plt.close(fig)
    raise ValueError(f"none of the runs has any of {list(keys)}")
  # One legend for every panel, below them: the runs are the same in each, and a legend inside
  # a panel hides the curves it names once there are more than a few.
  handles = {}
  for ax in axes[0]:
    for line in ax.lines:
      handles.setdefault(line.get_label(), line)
  fig.legend(
    list(handles.values()),
    list(handles),
    loc="upper center",
    bbox_to_anchor=(0.5, 0.0),
    ncol=min(3, len(handles)),
    fontsize=8,
    frameon=False,
  )
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  return _save(fig, path)


# Line styles of `plot_panels`' curves: (linestyle, linewidth).
_CURVE_STYLES = {
  "solid": ("-", 1.3),
  "dashed": ("--", 1.0),
  "dotted": (":", 1.2),
  "bold": ("-", 2.4),
}


def curve_points(
  records: Sequence[dict], key: str, complement: bool = False, scale: float = 1.0
) -> tuple[list[int], list[float]]:
  """The (steps, values) of `key` in a run's metrics.jsonl rows; values as scale * (1 - v) with
  `complement` (an error from an accuracy). Rows without a finite value of `key` are skipped."""
  xs, ys = [], []
  for r in records:
    v = r.get(key)
    if isinstance(v, (int, float)) and np.isfinite(v):
      xs.append(r["step"])
      ys.append(scale * (1.0 - v if complement else v))
  return xs, ys


def plot_panels(
  panels: Mapping[str, Mapping[str, Sequence[dict]]],
  curves: Sequence[Mapping],
  path: str,
  title: str = "",
  xlabel: str = "step",
  ylabel: str = "",
  scale: float = 1.0,
  ylim: Sequence[float] | None = None,
) -> str:
  """Runs side by side in panels, each run drawn as several curves in its own colour, the curves
  told apart by line style: the ResNet paper's Figure 6 (thin dashed training error, bold test
  error; plain networks left, residual ones right).

  panels: panel title -> run label -> the run's metrics.jsonl rows.
  curves: {"key": metric, "complement": plot 1 - value, "style": solid | dashed | dotted | bold,
    "label": the curve's name in the legend}.
  """
  if not panels:
    raise ValueError("no panels to plot")
  fig, axes = plt.subplots(
    1,
    len(panels),
    figsize=(5.2 * len(panels), 4.1),
    squeeze=False,
    sharey=True,
    layout="constrained",
  )
  colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  plotted = False
  for ax, (panel, runs) in zip(axes[0], panels.items()):
    for i, (label, records) in enumerate(runs.items()):
      for curve in curves:
        xs, ys = curve_points(records, curve["key"], curve.get("complement", False), scale)
        if not xs:
          continue
        ls, lw = _CURVE_STYLES[curve.get("style", "solid")]
        ax.plot(
          xs,
          ys,
          ls=ls,
          lw=lw,
          color=colours[i % len(colours)],
          label=label if not any(l.get_label() == label for l in ax.lines) else "_nolegend_",
        )
        plotted = True
    ax.set_title(panel)
    ax.set_xlabel(xlabel)
    if ylim is not None:
      ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    if ax.lines:
      ax.legend(fontsize=8, loc="upper right")
  if not plotted:
    plt.close(fig)
    raise ValueError(f"none of the runs has any of {[c['key'] for c in curves]}")
  axes[0][0].set_ylabel(ylabel)
  # Which line style is which curve, in grey, under the plot: the layout keeps it clear of the
  # panels' step labels and the figure's title clear of the panels' titles.
  styles = [
    matplotlib.lines.Line2D(
      [],
      [],
      color="grey",
      ls=_CURVE_STYLES[c.get("style", "solid")][0],
      lw=_CURVE_STYLES[c.get("style", "solid")][1],
      label=c.get("label", c["key"]),
    )
    for c in curves
  ]
  fig.legend(
    handles=styles, loc="outside lower center", ncol=len(styles), fontsize=8, frameon=False
  )
  if title:
    fig.suptitle(title)
  return _save(fig, path)


def _mosaic(
  images: np.ndarray,
  cols: int,
  titles: Sequence[str] | None = None,
  colors: Sequence[str] | None = None,
  row_names: Sequence[str] | None = None,
  cell_inches: float = 1.1,
):
  """A figure showing `images` [n, h, w, c] (uint8, or float in [0, 1]) as one tiled picture, with
  an optional title above each image and name left of each row. One imshow for the whole grid:
  a subplot per image makes a grid of 64 take seconds to draw."""
  images = np.asarray(images)
  unit = images.dtype == np.uint8
  images = np.clip(images, 0, 255 if unit else 1)
  n, h, w, c = images.shape
  cols = max(1, min(cols, n))
  rows = max(1, -(-n // cols))
  gap = max(1, round(0.08 * max(h, w)))
  title_h = round(0.35 * h) if titles is not None else 0
  cell_h = h + gap + title_h
  tiled = np.full((rows * cell_h, cols * (w + gap) - gap, c), 255 if unit else 1.0, images.dtype)
  for i, img in enumerate(images):
    r, k = divmod(i, cols)
    top = r * cell_h + title_h
    tiled[top : top + h, k * (w + gap) : k * (w + gap) + w] = img
  aspect = tiled.shape[0] / tiled.shape[1]
  fig = plt.figure(figsize=(cols * cell_inches, cols * cell_inches * aspect))
  ax = fig.add_axes([0.06 if row_names else 0.0, 0.0, 0.94 if row_names else 1.0, 1.0])
  ax.imshow(
    tiled[..., 0] if c == 1 else tiled,
    cmap="gray" if c == 1 else None,
    vmin=0,
    vmax=255 if unit else 1,
    interpolation="nearest",
  )
  ax.set_axis_off()
  for i in range(n if titles is not None else 0):
    r, k = divmod(i, cols)
    ax.text(
      k * (w + gap) + w / 2,
      r * cell_h + title_h - 1,
      titles[i],
      ha="center",
      va="bottom",
      fontsize=7,
      color=colors[i] if colors is not None else "black",
    )
  for r, name in enumerate(row_names or ()):
    ax.text(-gap, r * cell_h + title_h + h / 2, name, ha="right", va="center", fontsize=8)
  return fig


def prediction_grid(
  images: np.ndarray,
  labels: np.ndarray,
  preds: np.ndarray,
  class_names: Sequence[str],
  path: str,
  cols: int = 8,
) -> str:
  """A grid of images titled 'pred (true)', wrong predictions in red. images: uint8 [n, h, w, c]."""
  ok = [p == t for p, t in zip(preds, labels)]
  titles = [
    f"{class_names[p]}" + ("" if good else f" ({class_names[t]})")
    for p, t, good in zip(preds, labels, ok)
  ]
  return _save(
    _mosaic(images, cols, titles, ["black" if good else "red" for good in ok], cell_inches=1.2),
    path,
  )


def image_grid(
  images: np.ndarray, path: str, cols: int = 8, titles: Sequence[str] | None = None
) -> str:
  """A plain grid of images: uint8 or float in [0, 1], [n, h, w, c]."""
  return _save(_mosaic(images, cols, titles), path)


def bar_chart(
  names: Sequence[str],
  values: Sequence[float],
  path: str,
  ylabel: str,
  title: str = "",
  samples: Sequence[Sequence[float]] | None = None,
) -> str:
  """One bar per name. With `samples` (each bar's repeated measurements, e.g. seeds), the bar is
  their mean `values[i]`, with a +-1 standard deviation whisker and every sample drawn as a dot."""
  fig, ax = plt.subplots(figsize=(max(4, 0.9 * len(names)), 3.4))
  spread = [float(np.std(s, ddof=1)) if len(s) > 1 else 0.0 for s in samples] if samples else None
  ax.bar(
    range(len(names)),
    values,
    color="tab:blue",
    alpha=0.6 if samples else 1.0,
    yerr=spread,
    capsize=4 if samples else 0,
  )
  ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
  ax.set_ylabel(ylabel)
  for i, v in enumerate(values):
    label = f"{v:.3g}" + (f" ± {spread[i]:.2g}" if spread and len(samples[i]) > 1 else "")
    ax.text(i, v + (spread[i] if spread else 0), label, ha="center", va="bottom", fontsize=8)
  if samples:
    for i, s in enumerate(samples):
      offsets = np.linspace(-0.2, 0.2, len(s)) if len(s) > 1 else np.zeros(1)
      ax.plot(i + offsets, s, "o", color="black", ms=3, zorder=3)
  tops = [v + (spread[i] if spread else 0) for i, v in enumerate(values)]
  if samples:
    tops += [max(s) for s in samples]
  if max(tops, default=0) > 0:
    ax.set_ylim(top=1.1 * max(tops))  # room for the labels under the title
  if title:
    ax.set_title(title)
  ax.grid(axis="y", alpha=0.3)
  return _save(fig, path)


def line_plot(
  xs: Sequence[float],
  series: dict[str, Sequence[float]],
  path: str,
  xlabel: str,
  ylabel: str,
  title: str = "",
  xscale: str = "linear",
  errors: dict[str, Sequence[float]] | None = None,
) -> str:
  """Several named curves over the same x values, with optional +-error bands (`errors`)."""
  fig, ax = plt.subplots(figsize=(5.2, 3.6))
  for name, ys in series.items():
    x = list(xs)[: len(ys)]
    ax.plot(x, ys, marker="o" if len(ys) < 30 else None, ms=3, label=name)
    if errors and name in errors:
      ax.fill_between(
        x,
        np.asarray(ys) - np.asarray(errors[name]),
        np.asarray(ys) + np.asarray(errors[name]),
        alpha=0.2,
      )
  ax.set_xscale(xscale)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  if title:
    ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  return _save(fig, path)


def twin_axis_panels(
  curves: dict[str, tuple[Sequence[float], Sequence[float], Sequence[float]]],
  path: str,
  left_label: str,
  right_label: str,
  titles: dict[str, str] | None = None,
) -> str:
  """One panel per name: two curves over the same steps on their own y axes (a loss and a quality).

  curves: name -> (steps, left values, right values).
  """
  fig, axes = plt.subplots(1, len(curves), figsize=(4.6 * len(curves), 3.4), squeeze=False)
  for ax, (name, (steps, left, right)) in zip(axes[0], curves.items()):
    ax.plot(steps, left, color="tab:blue", marker="o", ms=3)
    ax.set_xlabel("step")
    ax.set_ylabel(left_label, color="tab:blue")
    other = ax.twinx()
    other.plot(steps, right, color="tab:red", marker="s", ms=3)
    other.set_ylabel(right_label, color="tab:red")
    ax.set_title((titles or {}).get(name, name), fontsize=9)
    ax.grid(alpha=0.3)
  fig.tight_layout()
  return _save(fig, path)


def image_rows(
  rows: Sequence[np.ndarray], row_names: Sequence[str], path: str, title: str = ""
) -> str:
  """Rows of images compared column by column (input / reconstruction; noisy / denoised / clean).

  rows: one array per row, uint8 or float in [0, 1], each [n, h, w, c] with the same n.
  """
  if len(rows) != len(row_names):
    raise ValueError(f"{len(rows)} rows but {len(row_names)} row names")
  n = len(rows[0])
  unit = all(np.asarray(r).dtype == np.uint8 for r in rows)
  images = np.concatenate(
    [
      np.asarray(r)
      if unit
      else np.asarray(r, np.float32) / (255.0 if np.asarray(r).dtype == np.uint8 else 1.0)
      for r in rows
    ]
  )
  fig = _mosaic(images, n, row_names=row_names, cell_inches=0.9)
  if title:
    fig.axes[0].set_title(title, fontsize=9)
  return _save(fig, path)


def latent_scatter(
  points: np.ndarray,
  labels: np.ndarray,
  class_names: Sequence[str],
  path: str,
  title: str = "",
  axis_names: tuple[str, str] = ("z1", "z2"),
) -> str:
  """A 2-D latent space, one colour per class. points: [n, 2]; labels: int [n]."""
  points = np.asarray(points)
  if points.ndim != 2 or points.shape[1] != 2:
    raise ValueError(f"latent_scatter needs [n, 2] points, got shape {points.shape}")
  fig, ax = plt.subplots(figsize=(5.2, 4.6))
  cmap = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
  for c, name in enumerate(class_names):
    sel = labels == c
    if np.any(sel):
      ax.scatter(points[sel, 0], points[sel, 1], s=3, alpha=0.6, color=cmap(c % cmap.N), label=name)
  ax.set_xlabel(axis_names[0])
  ax.set_ylabel(axis_names[1])
  ax.legend(markerscale=4, fontsize=7, loc="best", ncol=2)
  if title:
    ax.set_title(title, fontsize=9)
  return _save(fig, path)


def manifold_grid(images: np.ndarray, values: np.ndarray, path: str, title: str = "") -> str:
  """Decoded images of a 2-D latent grid (Kingma & Welling 2013, Fig. 4), tiled into one picture.

  images: [n, n, h, w, c] in [0, 1], images[i, j] decoded at z = (values[j], values[-1 - i]) so
  that z2 grows upwards; values: [n], the grid's coordinates.
  """
  n, m, h, w, c = images.shape
  tiled = images.transpose(0, 2, 1, 3, 4).reshape(n * h, m * w, c)
  fig, ax = plt.subplots(figsize=(6, 6))
  ax.imshow(np.clip(tiled[..., 0] if c == 1 else tiled, 0, 1), cmap="gray" if c == 1 else None)
  ax.set_xticks(np.arange(m) * w + w / 2, [f"{v:.2g}" for v in values], fontsize=6)
  ax.set_yticks(np.arange(n) * h + h / 2, [f"{v:.2g}" for v in values[::-1]], fontsize=6)
  ax.set_xlabel("z1")
  ax.set_ylabel("z2")
  if title:
    ax.set_title(title, fontsize=9)
  return _save(fig, path)


def roc_curves(
  curves: dict[str, tuple[np.ndarray, np.ndarray]],
  path: str,
  title: str = "",
  far: float | None = None,
) -> str:
  """ROC curves {name: (false accept rate [t], true accept rate [t])}, FAR on a log axis.

  `far` marks an operating point (e.g. 0.01 for TAR at FAR = 1%) with a vertical line.
  """
  fig, ax = plt.subplots(figsize=(5.2, 4.2))
  smallest = min(float(np.min(f[f > 0])) for f, _ in curves.values() if np.any(f > 0))
  for name, (fpr, tpr) in curves.items():
    ax.step(np.maximum(fpr, smallest / 2), tpr, where="post", label=name)
  if far is not None:
    ax.axvline(far, color="grey", ls="--", lw=0.8)
  ax.set_xscale("log")
  ax.set_xlim(smallest / 2, 1.0)
  ax.set_ylim(0.0, 1.01)
  ax.set_xlabel("false accept rate")
  ax.set_ylabel("true accept rate")
  if title:
    ax.set_title(title)
  ax.grid(alpha=0.3, which="both")
  ax.legend(fontsize=8, loc="lower right")
  return _save(fig, path)


def precision_recall_curves(
  curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str, title: str = ""
) -> str:
  """Precision-recall curves {name: (recall [d], precision [d])}, e.g. one per class of a
  detector, each point a detection taken in descending score."""
  fig, ax = plt.subplots(figsize=(5.6, 4.2))
  for name, (recall, precision) in curves.items():
    ax.plot(np.concatenate([[0.0], recall]), np.concatenate([[1.0], precision]), lw=1.2, label=name)
  ax.set_xlim(0.0, 1.0)
  ax.set_ylim(0.0, 1.01)
  ax.set_xlabel("recall")
  ax.set_ylabel("precision")
  if title:
    ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=6, loc="lower left", ncol=2 if len(curves) > 10 else 1)
  return _save(fig, path)


def to_unit_range(images: np.ndarray) -> np.ndarray:
  """Rescales each image [n, ...] to [0, 1] by its own minimum and maximum (for eigenfaces)."""
  images = np.asarray(images, np.float64)
  axes = tuple(range(1, images.ndim))
  lo, hi = images.min(axis=axes, keepdims=True), images.max(axis=axes, keepdims=True)
  return (images - lo) / np.maximum(hi - lo, 1e-12)
