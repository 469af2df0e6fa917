"""LeNet-5 on MNIST: LeCun, Bottou, Bengio & Haffner 1998, "Gradient-based learning applied to
document recognition", Proc. IEEE. The paper's LeNet-5 reaches 0.95% test error without
distortions (Section III.C).

    python -m experiments.lenet5_mnist --workdir runs/lenet5_mnist

Data: MNIST's original IDX files from $VISION_JAX_DATASETS/mnist, padded to 32x32.
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
    "lenet5_mnist",
    run,
    paper="LeCun et al. 1998, Section III.C (no distortions)",
    metric="test error (%)",
    paper_value=0.95,
  )
