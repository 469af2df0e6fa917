"""YOLOv1 on MNIST digit canvases: Redmon, Divvala, Girshick & Farhadi 2016, "You only look once".

The paper reports 63.4 mAP on VOC 2007 test (trained on 07+12) at 45 frames/s on a Titan X; that
needs a GPU and VOC. This is the lecture's one-stage detector on the workload a 2-core CPU trains
in minutes (`mnist_detection:mnist`, configs/yolov1_mnist_detection.py): an S x S grid, the cell
holding an object's centre responsible for it, one class per cell, the paper's five-term loss.

    python -m experiments.yolov1_mnist_detection --workdir runs/yolov1_mnist_detection

Reported: VOC mAP@0.5 (all-point) on every test canvas, and on the canvases where no two digits'
centres share a grid cell (the goal of 0.90 is set there: a cell predicts one class, so a digit
whose centre shares a cell with another cannot be found, the lecture's point about YOLO's grid),
COCO AP, the GFLOP of one image's forward pass, and inference images/s at batch 1 and 32.
Writes test_detections.json (COCO results format) beside result.json.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from vision_jax import cli
from vision_jax.config import checked_where_used
from vision_jax.data.augment import make_preprocess
from vision_jax.data.pipeline import eval_batches, get_splits
from vision_jax.metrics import detection as detection_metrics
from vision_jax.tasks import DetectionTask
from vision_jax.train import mesh as mesh_lib
from vision_jax.train.loop import make_eval_step, split_outputs, train_and_evaluate

RULES = {  # the bounds of this experiment's settings: its task's, and its canvases'
  **DetectionTask.RULES,
  **{
    f"data.format_options.{key}": checked_where_used("the mnist_detection format, with its others")
    for key in ("canvas_size", "train_size", "test_size")
  },
}


def shares_a_cell(boxes: np.ndarray, valid: np.ndarray, image_size: int, grid_size: int):
  """[n] bool: whether two of an image's objects have their centres in one of the S x S cells.

  boxes: [n, max_boxes, 4] pixel x0, y0, x1, y1; valid: [n, max_boxes]."""
  centres = (boxes[..., :2] + boxes[..., 2:]) / 2
  cells = np.clip(np.floor(centres / image_size * grid_size), 0, grid_size - 1).astype(int)
  flat = cells[..., 1] * grid_size + cells[..., 0]
  shared = np.zeros(len(boxes), bool)
  for i, (f, v) in enumerate(zip(flat, valid)):
    kept = f[v.astype(bool)]
    shared[i] = len(np.unique(kept)) < len(kept)
  return shared


def inference_speed(task: DetectionTask, state, image_shape, batch: int, repeats: int = 5):
  """Images/s of the jitted forward pass and decoding at `batch`, after one compiling call."""
  images = jnp.zeros((batch, *image_shape), jnp.float32)
  fn = jax.jit(lambda s, x: task.detect(task.predict(s, {"image": x}), image_shape[:2], 0.005))
  jax.block_until_ready(fn(state, images))
  t0 = time.perf_counter()
  for _ in range(repeats):
    out = fn(state, images)
  jax.block_until_ready(out)
  return batch * repeats / (time.perf_counter() - t0)


def forward_gflop(task: DetectionTask, state, image_shape) -> float:
  """XLA's count of one image's forward pass, in GFLOP (a multiply-add is two)."""
  fn = jax.jit(lambda s, x: task.predict(s, {"image": x}))
  cost = fn.lower(state, jnp.zeros((1, *image_shape), jnp.float32)).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost["flops"]) / 1e9


def cost_report(task: DetectionTask, state, image_shape) -> dict:
  """What result.json reports of a detector's cost: forward GFLOP per image, and inference
  images/s at batch 1 and 32."""
  return {
    "forward_gflop_per_image": round(forward_gflop(task, state, image_shape), 4),
    "inference_images_per_s": {
      "batch_1": round(inference_speed(task, state, image_shape, 1, repeats=20), 1),
      "batch_32": round(inference_speed(task, state, image_shape, 32), 1),
    },
  }


def run(config, workdir: str) -> dict:
  summary = train_and_evaluate(config, workdir, DetectionTask)
  task, state = summary["task"], summary["state"]
  split = config.data.eval_splits[0]
  # The test split's detections again, for the scores on canvases without a shared cell.
  mesh = mesh_lib.make_mesh()
  _, splits = get_splits(config.data)
  _, eval_fn = make_preprocess(config.data)
  eval_step = make_eval_step(task, eval_fn, mesh_lib.replicated(mesh))
  batches = eval_batches(splits[split], config.train.eval_batch_size, mesh)
  _, outputs = split_outputs(state, eval_step, batches)
  example = splits[split].read(np.arange(1))
  size = example["image"].shape[1]
  shared = shares_a_cell(outputs["true_boxes"], outputs["true_valid"], size, config.model.grid_size)
  truths, detections = task.images_of(outputs)
  classes = range(task.spec.num_classes)
  apart = [i for i in range(len(truths)) if not shared[i]]
  voc_apart = detection_metrics.voc_evaluation(
    [truths[i] for i in apart], [detections[i] for i in apart], class_ids=classes
  )
  task.coco_results(outputs, os.path.join(workdir, "test_detections.json"))
  image_shape = tuple(int(d) for d in eval_fn(example)["image"].shape[1:])
  final = summary["eval"]
  return {
    "value": 100 * voc_apart.mean_average_precision,
    "metric": "VOC mAP@0.5 (%), all-point, test canvases without a shared cell",
    **cli.loop_result(config, summary),
    "map50_all_canvases": 100 * final[f"{split}/mAP50"],
    "coco_ap_all_canvases": 100 * final[f"{split}/coco_AP"],
    "canvases_without_a_shared_cell": len(apart),
    "canvases": len(truths),
    **cost_report(task, state, image_shape),
  }


if __name__ == "__main__":
  cli.main(
    "yolov1_mnist_detection",
    run,
    paper="Redmon et al. 2016 (YOLOv1; VOC 2007 63.4 mAP, not this workload)",
    metric="VOC mAP@0.5 (%), all-point, test canvases without a shared cell",
    paper_value=None,
  )
