"""LeNet-5 (LeCun et al. 1998) on scikit-learn's bundled handwritten digits: `make demo`'s job.

No paper reports this dataset at 32x32; it is here because it ships with a dependency, so a
fresh machine without internet or datasets runs a real training end to end: data preparation,
training, evaluation on held-out images, a checkpoint, a W&B run (offline when not logged in),
curves and a grid of predictions.

    python -m experiments.lenet5_digits --workdir runs/demo
"""

from __future__ import annotations

from vision_jax import cli
from vision_jax.tasks import ClassificationTask
from vision_jax.train.loop import train_and_evaluate

RULES = ClassificationTask.RULES  # the bounds of this experiment's settings: its task's


def run(config, workdir: str) -> dict:
  summary = train_and_evaluate(config, workdir, ClassificationTask)
  return {
    "value": round(100.0 * summary["eval"]["test/error"], 3),
    **cli.loop_result(config, summary),
  }


if __name__ == "__main__":
  cli.main(
    "lenet5_digits",
    run,
    paper="LeCun et al. 1998 (LeNet-5), on scikit-learn's digits",
    metric="test error (%)",
    paper_value=None,
  )
