"""Why an MLP on flattened pixels falls short (the lecture's CNN basics; LeCun et al. 1998,
Section II.A: "fully-connected networks ... have no built-in invariance with respect to
translations"). An MLP and LeNet-5 at the same parameter budget, trained alike on MNIST; the
table gives their parameters, test error, and test error on images shifted by 2 pixels.

    python -m experiments.mlp_vs_cnn --workdir runs/mlp_vs_cnn

Writes table.md and shift_errors.png beside each arm's run (workdir/mlp, workdir/lenet5).
"""

from __future__ import annotations

import copy
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vision_jax import cli, plotting
from vision_jax.config import bound, each
from vision_jax.data.augment import make_preprocess, shift
from vision_jax.data.pipeline import get_splits
from vision_jax.tasks import ClassificationTask
from vision_jax.train.loop import train_and_evaluate

RULES = {
  **ClassificationTask.RULES,
  "mlp_hidden": each(bound(1, integer=True)),
  "shift": bound(1, integer=True),
}


def arm_config(config: ml_collections.ConfigDict, arm: str) -> ml_collections.ConfigDict:
  c = copy.deepcopy(config)
  with c.unlocked():
    if arm == "mlp":
      c.model = ml_collections.ConfigDict(
        {"name": "mlp", "hidden": tuple(config.mlp_hidden), "dtype": config.model.dtype}
      )
    c.name = f"{config.name}/{arm}"
    c.wandb.name = arm
  return c


def shifted_error(
  task, state, images: np.ndarray, labels: np.ndarray, eval_fn, pixels: int, batch: int = 1000
) -> float:
  """Mean test error over the four shifts by `pixels` (right, left, down, up)."""
  predict = jax.jit(lambda s, x: jnp.argmax(task.predict(s, eval_fn({"image": x})["image"]), -1))
  errors = []
  for dy, dx in ((0, pixels), (0, -pixels), (pixels, 0), (-pixels, 0)):
    wrong = 0
    for start in range(0, len(images), batch):
      x = shift(jnp.asarray(images[start : start + batch]), dy, dx)
      wrong += int(jnp.sum(predict(state, x) != jnp.asarray(labels[start : start + batch])))
    errors.append(wrong / len(images))
  return float(np.mean(errors))


def run(config, workdir: str) -> dict:
  _, splits = get_splits(config.data)
  test = splits["test"].arrays()
  _, eval_fn = make_preprocess(config.data)
  rows, steps = {}, 0
  for arm in ("mlp", "lenet5"):
    summary = train_and_evaluate(
      arm_config(config, arm), os.path.join(workdir, arm), ClassificationTask
    )
    state, task = summary["state"], summary["task"]
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))
    rows[arm] = {
      "params": n_params,
      "test_error": 100 * summary["eval"]["test/error"],
      "shifted_error": 100
      * shifted_error(task, state, test["image"], test["label"], eval_fn, config.shift),
    }
    steps += summary["step"]
  lines = [
    f"| model | parameters | test error (%) | test error, shifted by {config.shift} px (%) |",
    "|---|---:|---:|---:|",
  ]
  lines += [
    f"| {arm} | {r['params']:,} | {r['test_error']:.2f} | {r['shifted_error']:.2f} |"
    for arm, r in rows.items()
  ]
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "table.md"), "w") as f:
      f.write("\n".join(lines) + "\n")
    plotting.bar_chart(
      [f"{a}\n{k}" for a in rows for k in ("clean", "shifted")],
      [rows[a][k] for a in rows for k in ("test_error", "shifted_error")],
      os.path.join(workdir, "shift_errors.png"),
      ylabel="test error (%)",
      title=f"MLP vs LeNet-5: clean and {config.shift}-px shifted MNIST",
    )
  print("\n".join(lines))
  return {
    "value": round(rows["lenet5"]["shifted_error"], 3),
    "steps": steps,
    "metric": f"LeNet-5 test error on {config.shift}-px shifted MNIST (%)",
    "table": {arm: {k: round(v, 3) for k, v in r.items()} for arm, r in rows.items()},
  }


if __name__ == "__main__":
  cli.main(
    "mlp_vs_cnn",
    run,
    paper="the lecture's CNN basics (LeCun et al. 1998, Section II.A)",
    metric="LeNet-5 test error on shifted MNIST (%)",
    paper_value=None,
  )
