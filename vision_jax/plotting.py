"""Pictures a person would rather look at than read: curves, image grids, bar charts (PNG)."""
from __future__ import annotations

import os
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path: str) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path + ".tmp.png", dpi=110, bbox_inches="tight")
  plt.close(fig)
  os.replace(path + ".tmp.png", path)
  return path


def plot_curves(records: Sequence[dict], path: str, title: str = "") -> str:
  """One panel per metric family (loss, accuracy/error, ...), train and eval splits overlaid.

  records: metrics.jsonl rows, {"step": int, "train/loss": float, "test/error": float, ...}.
  """
  by_metric: dict[str, dict[str, tuple[list, list]]] = {}
  for r in records:
    for key, value in r.items():
      if key == "step" or "/" not in key or not isinstance(value, (int, float)):
        continue
      split, metric = key.split("/", 1)
      if metric in ("learning_rate", "images_per_s", "steps_per_s"):
        continue
      xs, ys = by_metric.setdefault(metric, {}).setdefault(split, ([], []))
      xs.append(r["step"])
      ys.append(value)
  metrics = sorted(by_metric)
  if not metrics:
    raise ValueError("no metrics to plot")
  fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
  for ax, metric in zip(axes[0], metrics):
    for split, (xs, ys) in sorted(by_metric[metric].items()):
      ax.plot(xs, ys, label=split, marker="o" if len(xs) < 30 else None, ms=3)
    ax.set_title(metric)
    ax.set_xlabel("step")
    if metric.startswith("loss") and all(v > 0 for s in by_metric[metric].values() for v in s[1]):
      ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
  if title:
    fig.suptitle(title)
  return _save(fig, path)


def prediction_grid(images: np.ndarray, labels: np.ndarray, preds: np.ndarray, class_names: Sequence[str],
                    path: str, cols: int = 8) -> str:
  """A grid of images titled 'pred (true)', wrong predictions in red. images: uint8 [n, h, w, c]."""
  n = len(images)
  rows = max(1, -(-n // cols))
  fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.2, rows * 1.35), squeeze=False)
  for i, ax in enumerate(axes.flat):
    ax.axis("off")
    if i >= n:
      continue
    img = images[i]
    ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None)
    ok = preds[i] == labels[i]
    ax.set_title(f"{class_names[preds[i]]}" + ("" if ok else f" ({class_names[labels[i]]})"),
                 fontsize=7, color="black" if ok else "red")
  return _save(fig, path)


def image_grid(images: np.ndarray, path: str, cols: int = 8, titles: Sequence[str] | None = None) -> str:
  """A plain grid of images: uint8 or float in [0, 1], [n, h, w, c]."""
  n = len(images)
  rows = max(1, -(-n // cols))
  fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.15), squeeze=False)
  for i, ax in enumerate(axes.flat):
    ax.axis("off")
    if i < n:
      img = np.clip(images[i], 0, 255 if images.dtype == np.uint8 else 1)
      ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None)
      if titles is not None:
        ax.set_title(titles[i], fontsize=7)
  return _save(fig, path)


def bar_chart(names: Sequence[str], values: Sequence[float], path: str, ylabel: str, title: str = "") -> str:
  fig, ax = plt.subplots(figsize=(max(4, 0.9 * len(names)), 3.4))
  ax.bar(range(len(names)), values, color="tab:blue")
  ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
  ax.set_ylabel(ylabel)
  for i, v in enumerate(values):
    ax.text(i, v, f"{v:.3g}", ha="center", va="bottom", fontsize=8)
  if title:
    ax.set_title(title)
  ax.grid(axis="y", alpha=0.3)
  return _save(fig, path)


def line_plot(xs: Sequence[float], series: dict[str, Sequence[float]], path: str, xlabel: str, ylabel: str,
              title: str = "", errors: dict[str, Sequence[float]] | None = None, logx: bool = False) -> str:
  """One line per named series over shared `xs`, with optional +-error bands."""
  fig, ax = plt.subplots(figsize=(5.2, 3.6))
  for name, ys in series.items():
    ax.plot(xs, ys, marker="o", ms=3, label=name)
    if errors and name in errors:
      lo = np.asarray(ys) - np.asarray(errors[name])
      hi = np.asarray(ys) + np.asarray(errors[name])
      ax.fill_between(xs, lo, hi, alpha=0.2)
  if logx:
    ax.set_xscale("log")
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  if title:
    ax.set_title(title)
  ax.grid(alpha=0.3)
  if len(series) > 1:
    ax.legend()
  return _save(fig, path)


def roc_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str, title: str = "",
               far: float | None = None) -> str:
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


def to_unit_range(images: np.ndarray) -> np.ndarray:
  """Rescales each image [n, ...] to [0, 1] by its own minimum and maximum (for eigenfaces)."""
  images = np.asarray(images, np.float64)
  axes = tuple(range(1, images.ndim))
  lo, hi = images.min(axis=axes, keepdims=True), images.max(axis=axes, keepdims=True)
  return (images - lo) / np.maximum(hi - lo, 1e-12)
