"""GoogLeNet on CIFAR-10: Szegedy et al. 2015, "Going deeper with convolutions" (Inception v1),
as torchvision builds it, with a CIFAR stem, and the ablation of its auxiliary classifiers.
The paper reports ImageNet numbers only; there is no CIFAR-10 number to match.

    python -m experiments.googlenet_cifar10 --workdir runs/googlenet_cifar10
    python -m scripts.sweep googlenet_cifar10 --sweep aux     # with against without the aux heads

Data: the JPEG copy of CIFAR-10 (`image_folder:cifar10`, quality 75). Recipe and expectations:
configs/googlenet_cifar10.py.
"""

from __future__ import annotations

from vision_jax import cli
from vision_jax.tasks import ClassificationTask
from vision_jax.train.loop import train_and_evaluate

RULES = ClassificationTask.RULES  # the bounds of this experiment's settings: its task's


def run(config, workdir: str) -> dict:
  summary = train_and_evaluate(config, workdir, ClassificationTask)
  # The smoke variant evaluates on held-out training images instead of the test set.
  split = "test" if "test" in config.data.eval_splits else config.data.eval_splits[0]
  return {
    "value": round(100.0 * summary["eval"][f"{split}/error"], 3),
    "split": split,
    **cli.loop_result(config, summary),
    "model": config.model.name,
    "aux_logits": config.model.aux_logits,
  }


if __name__ == "__main__":
  cli.main(
    "googlenet_cifar10",
    run,
    paper="Szegedy et al. 2015 (GoogLeNet; no CIFAR-10 number)",
    metric="test error (%)",
    paper_value=None,
  )
