"""YOLOv1 on the Oxford-IIIT Pet subset's whole-pet boxes: Redmon et al. 2016 on real photos.

No paper reports this subset (the paper: 63.4 mAP on VOC 2007 test). The 3-breed subset's 300
trainval images train it, its 298 test images score it (configs/yolov1_pets.py).

    python -m experiments.yolov1_pets --workdir runs/yolov1_pets

Reported: VOC mAP@0.5 (all-point) on the test split, COCO AP, the GFLOP of one image's forward
pass, and inference images/s at batch 1 and 32.
"""

from __future__ import annotations

from experiments.yolov1_mnist_detection import cost_report
from vision_jax import cli
from vision_jax.tasks import DetectionTask
from vision_jax.train.loop import train_and_evaluate

RULES = DetectionTask.RULES  # the bounds of this experiment's settings: its task's


def run(config, workdir: str) -> dict:
  summary = train_and_evaluate(config, workdir, DetectionTask)
  task, state = summary["task"], summary["state"]
  split = config.data.eval_splits[0]
  size = config.data.format_options.image_size
  image_shape = (size, size, 3)
  return {
    "value": 100 * summary["eval"][f"{split}/mAP50"],
    **cli.loop_result(config, summary),
    "coco_ap": 100 * summary["eval"][f"{split}/coco_AP"],
    **cost_report(task, state, image_shape),
  }


if __name__ == "__main__":
  cli.main(
    "yolov1_pets",
    run,
    paper="Redmon et al. 2016 (YOLOv1; no number for this subset)",
    metric="VOC mAP@0.5 (%), all-point, test split",
    paper_value=None,
  )
