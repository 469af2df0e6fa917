"""YOLOv1 on PASCAL VOC 2007: Redmon et al. 2016's setting (configs/yolov1_voc07.py).

The paper: 63.4 mAP on VOC 2007 test, trained on 07+12 trainval; this trains on 07 trainval.
Needs internet the first time (TFDS downloads VOC 2007) and a GPU.

    python -m experiments.yolov1_voc07 --workdir runs/yolov1_voc07

Reported as experiments/yolov1_pets.py reports (its `run`): VOC mAP@0.5 on 2007 test, COCO AP,
one image's forward GFLOP, inference images/s.
"""

from __future__ import annotations

from experiments.yolov1_pets import RULES, run
from vision_jax import cli

__all__ = ["RULES", "run"]

if __name__ == "__main__":
  cli.main(
    "yolov1_voc07",
    run,
    paper="Redmon et al. 2016 (YOLOv1, VOC 2007+2012 trainval)",
    metric="VOC mAP@0.5 (%), all-point, VOC 2007 test",
    paper_value=63.4,
  )
