"""YOLOv1 on real photos: the whole pet's box in the 3-breed Oxford-IIIT Pet subset.

Redmon et al. 2016 on `oxford_pets:oxford_pets_3breeds` with `boxes=pet` (the tight box of each
trimap's pet and border pixels; one box per image, labelled with the breed: Abyssinian,
american_bulldog, Bengal), 300 trainval / 298 test images, letterboxed to 112x112 (the whole
picture kept, in its proportions; 7 cells of 16 px, for the convolutional head). The detector and loss are configs/yolov1_mnist_detection.py's
on three colour channels, with flips and a random zoom that keeps a box while half of it remains.

Command: python -m experiments.yolov1_pets --workdir runs/yolov1_pets
Reported: VOC mAP@0.5 (all-point) on the 298 test images, COCO AP beside it. No paper reports
this subset; measured numbers and their commands go to docs/results/yolov1_mnist_detection.md.
"""

import ml_collections

from configs import yolov1_mnist_detection
from vision_jax.config import parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, smoke=False)
  c = yolov1_mnist_detection.get_config("smoke" if arg.smoke else None)
  c.name = "yolov1_pets"
  c.data.dataset = "oxford_pets:oxford_pets_3breeds"
  c.data.train_split = "trainval"
  c.data.format_options = ml_collections.ConfigDict(
    {"boxes": "pet", "resize": "letterbox", "image_size": 112, "label": "breed"}
  )
  c.data.mean = (0.48, 0.45, 0.40)
  c.data.std = (0.23, 0.23, 0.23)
  c.data.max_boxes = 1
  c.data.augment.flip = True
  c.data.augment.scale_range = (0.8, 1.25)
  c.data.augment.min_visible = 0.5
  c.data.augment.brightness = 0.2
  c.train.eval_batch_size = 100
  c.wandb.group = "yolov1_pets"
  if arg.smoke:
    c.train.batch_size = 8
  else:
    c.train.batch_size = 32
    c.train.steps = 2000
    c.train.eval_every = 500
  return c
