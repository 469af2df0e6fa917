"""Where a run's numbers and pictures go: `metrics.jsonl`, Weights & Biases, a progress bar.

Only process 0 writes. W&B runs online when the user is logged in (WANDB_API_KEY or a netrc
entry), and otherwise offline into the workdir (`wandb sync` uploads it later); a W&B failure
never fails the run. A resumed run truncates `metrics.jsonl` to the restored step and continues
the same W&B run.
"""

from __future__ import annotations

import json
import logging
import math
import netrc
import os
import secrets
import sys
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from tqdm import tqdm

from vision_jax.errors import ConfigError


def wandb_mode(requested: str) -> str:
  """ "auto" resolves to online when W&B credentials exist, else offline."""
  if requested not in ("auto", "online", "offline", "disabled"):
    raise ConfigError(f"wandb.mode must be auto, online, offline or disabled, got {requested!r}")
  if requested != "auto":
    return requested
  if os.environ.get("WANDB_API_KEY"):
    return "online"
  try:
    if netrc.netrc().authenticators("api.wandb.ai"):
      return "online"
  except (FileNotFoundError, netrc.NetrcParseError):
    pass
  return "offline"


def read_metrics(workdir: str) -> list[dict]:
  """The records of a run's metrics.jsonl."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


class MetricWriter:
  """Writes scalars and images of one run."""

  def __init__(self, workdir: str, config: ml_collections.ConfigDict, start_step: int):
    self.workdir = workdir
    self.active = jax.process_index() == 0
    self._wandb = None
    if not self.active:
      return
    os.makedirs(workdir, exist_ok=True)
    self.path = os.path.join(workdir, "metrics.jsonl")
    kept = [r for r in read_metrics(workdir) if r["step"] <= start_step]
    with open(self.path + ".tmp", "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in kept)
    os.replace(self.path + ".tmp", self.path)
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True))
    self._start_wandb(config)

  def _start_wandb(self, config: ml_collections.ConfigDict) -> None:
    wcfg = config.get("wandb", ml_collections.ConfigDict({"mode": "auto"}))
    mode = wandb_mode(wcfg.get("mode", "auto"))
    if mode == "disabled":
      return
    id_path = os.path.join(self.workdir, "wandb_run_id")
    try:
      import wandb  # pylint: disable=g-import-not-at-top

      if os.path.exists(id_path):
        run_id = open(id_path).read().strip()
      else:
        run_id = secrets.token_hex(4)
        with open(id_path, "w") as f:
          f.write(run_id)
      self._wandb = wandb.init(
        project=wcfg.get("project", "vision_jax"),
        entity=wcfg.get("entity", None) or None,
        group=wcfg.get("group", None) or None,
        name=wcfg.get("name", None) or os.path.basename(os.path.abspath(self.workdir)),
        dir=self.workdir,
        id=run_id,
        resume="allow",
        mode=mode,
        config=config.to_dict(),
        settings=wandb.Settings(silent=True, init_timeout=60),
      )
    except Exception as e:  # never fail a run for W&B
      logging.warning(
        "W&B unavailable (%s: %s); metrics are still written to %s",
        e.__class__.__name__,
        e,
        os.path.join(self.workdir, "metrics.jsonl"),
      )
      self._wandb = None

  def write(self, step: int, metrics: dict[str, Any]) -> None:
    """Appends one record of scalars at `step`."""
    if not self.active:
      return
    record = {"step": int(step), **{k: _scalar(v) for k, v in metrics.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    if self._wandb is not None:
      self._wandb.log({k: v for k, v in record.items() if k != "step"}, step=int(step))

  def write_images(self, step: int, images: dict[str, str]) -> None:
    """Logs PNG files (name -> path) to W&B; they are already on disk in the workdir."""
    if self.active and self._wandb is not None and images:
      import wandb  # pylint: disable=g-import-not-at-top

      self._wandb.log({k: wandb.Image(p) for k, p in images.items()}, step=int(step))

  def close(self) -> None:
    if self._wandb is not None:
      self._wandb.finish()
      self._wandb = None


def _scalar(v: Any) -> float | int:
  v = np.asarray(v).item()
  return v if isinstance(v, int) or not math.isfinite(v) else float(v)


class Progress:
  """A progress bar over steps with throughput (images/s) and ETA, on process 0."""

  def __init__(self, total: int, initial: int, batch_size: int, desc: str = "train"):
    self._batch = batch_size
    self._bar = tqdm(
      total=total,
      initial=initial,
      desc=desc,
      unit="step",
      dynamic_ncols=True,
      file=sys.stderr,
      disable=jax.process_index() != 0 or os.environ.get("VISION_JAX_NO_PROGRESS") == "1",
      smoothing=0.1,
    )
    self._last = time.perf_counter()

  def update(self, steps: int, **postfix: float) -> None:
    now = time.perf_counter()
    rate = steps * self._batch / max(now - self._last, 1e-9)
    self._last = now
    self._bar.set_postfix(
      {**{k: f"{v:.4g}" for k, v in postfix.items()}, "img/s": f"{rate:,.0f}"}, refresh=False
    )
    self._bar.update(steps)

  def reset_clock(self) -> None:
    """Excludes time spent outside training (evaluation, checkpoints) from the throughput."""
    self._last = time.perf_counter()

  def close(self) -> None:
    self._bar.close()
