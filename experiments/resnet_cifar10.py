"""ResNets on CIFAR-10: He, Zhang, Ren & Sun 2015, "Deep Residual Learning for Image
Recognition", Table 6: test error 8.75% (ResNet-20), 7.51 (32), 7.17 (44), 6.97 (56), 6.43 (110).

    python -m experiments.resnet_cifar10 --workdir runs/resnet20_cifar10 --variant model=resnet20
    python -m scripts.sweep resnet_cifar10 --sweep degradation   # Figure 6: plain vs residual
    python -m scripts.report runs/sweeps/resnet_cifar10/degradation   # draws it: figure6.png

Data: CIFAR-10 from JPEGs (quality 75), so expect errors slightly above the paper's.
"""

from __future__ import annotations

from vision_jax import cli
from vision_jax.tasks import ClassificationTask
from vision_jax.train.loop import train_and_evaluate

PAPER_ERRORS = {
  "resnet20": 8.75,
  "resnet32": 7.51,
  "resnet44": 7.17,
  "resnet56": 6.97,
  "resnet110": 6.43,
}


RULES = ClassificationTask.RULES  # the bounds of this experiment's settings: its task's


def run(config, workdir: str) -> dict:
  summary = train_and_evaluate(config, workdir, ClassificationTask)
  return {
    "value": round(100.0 * summary["eval"]["test/error"], 3),
    **cli.loop_result(config, summary),
    "model": config.model.name,
    "paper_value": PAPER_ERRORS.get(config.model.name),
  }


if __name__ == "__main__":
  cli.main(
    "resnet_cifar10",
    run,
    paper="He et al. 2015, Table 6 (CIFAR-10)",
    metric="test error (%)",
    paper_value=None,
  )
