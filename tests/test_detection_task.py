"""DetectionTask on synthetic batches (the data layer's detection format): named losses that train,
VOC and COCO AP over a split through the loop's eval path, without its padding rows, pictures
and COCO results."""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs.common import base_config
from vision_jax.data.formats.base import DatasetSpec
from vision_jax.errors import ConfigError
from vision_jax.losses.yolo import yolo_targets
from vision_jax.metrics import detection as detection_metrics
from vision_jax.tasks import DetectionTask
from vision_jax.train import mesh as mesh_lib
from vision_jax.train.loop import evaluate_split, make_eval_step, split_outputs

SIZE, GRID, CLASSES, MAX_BOXES = 32, 4, 3, 4
CELL = SIZE // GRID


def detection_config(**detection) -> ml_collections.ConfigDict:
  c = base_config()
  c.model = ml_collections.ConfigDict(
    {
      "name": "yolov1",
      "backbone": "resnet20",
      "feature": "stage3",
      "grid_size": GRID,
      "head_features": 16,
      "dropout": 0.0,
    }
  )
  c.optim.learning_rate = 3e-3
  c.data.eval_splits = ("test",)
  c.detection = ml_collections.ConfigDict(
    {
      "score_threshold": 0.005,
      "iou_threshold": 0.5,
      "max_detections": 10,
      "lambda_coord": 5.0,
      "lambda_noobj": 0.5,
      "visual_score_threshold": 0.2,
      "train_on_difficult": False,
    }
  )
  c.detection.update(detection)
  return c


SPEC = DatasetSpec((SIZE, SIZE, 3), ("cat", "dog", "bird"), ("train", "test"))


def synthetic_images(n: int, seed: int = 0) -> dict[str, np.ndarray]:
  """n images with up to MAX_BOXES boxes each, at most one centre per grid cell (so that YOLO's
  targets keep them all); image 1 has none. Features as the data layer's detection batches."""
  rng = np.random.default_rng(seed)
  boxes = np.zeros((n, MAX_BOXES, 4), np.float32)
  labels = np.zeros((n, MAX_BOXES), np.int32)
  box_mask = np.zeros((n, MAX_BOXES), bool)
  for i in range(n):
    count = 0 if i == 1 else 1 + i % MAX_BOXES
    for j in range(count):
      cx, cy = (j + 0.5) * CELL + rng.uniform(-2, 2), ((i + j) % GRID + 0.5) * CELL
      w, h = rng.uniform(4, 14, size=2)
      boxes[i, j] = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
      labels[i, j] = rng.integers(0, CLASSES)
      box_mask[i, j] = True
  return {
    "image": rng.normal(size=(n, SIZE, SIZE, 3)).astype(np.float32),
    "boxes": np.clip(boxes, 0, SIZE),
    "labels": labels,
    "box_mask": box_mask,
    "difficult": np.zeros((n, MAX_BOXES), bool),
    "image_id": np.arange(n, dtype=np.int32),
  }


def eval_batches(images: dict[str, np.ndarray], batch_size: int):
  """The loop's eval batches: in order, the last padded with copies of the first example."""
  n = len(images["image"])
  for start in range(0, n, batch_size):
    positions = np.arange(start, start + batch_size)
    mask = positions < n
    batch = {k: jnp.asarray(v[np.where(mask, positions, 0)]) for k, v in images.items()}
    yield {**batch, "mask": jnp.asarray(mask)}


class PerfectDetector(DetectionTask):
  """Predicts each image's ground truth exactly, in YOLOv1's layout, except for the images in
  `missed` (by image_id), for which it predicts nothing."""

  missed: tuple[int, ...] = ()

  def predict(self, state, batch):
    t = yolo_targets(batch["boxes"], batch["labels"], batch["box_mask"], SIZE, GRID, CLASSES)
    found = ~jnp.isin(batch["image_id"], jnp.asarray(self.missed, jnp.int32))[:, None, None, None]
    box = jnp.concatenate(
      [t.boxes[..., :2], jnp.sqrt(t.boxes[..., 2:]), t.object_mask[..., None].astype(jnp.float32)],
      axis=-1,
    )
    return jnp.concatenate([box, jnp.zeros_like(box), t.classes], axis=-1) * found


def _state(task, images):
  return task.init_state(jax.random.key(0), {"image": jnp.asarray(images["image"][:2])}, 10)


def _evaluate(task, state, images, batch_size):
  step = make_eval_step(task, lambda b: b, mesh_lib.replicated(mesh_lib.make_mesh()))
  return evaluate_split(task, state, step, eval_batches(images, batch_size), "test")


def test_train_step_returns_finite_named_losses_and_they_fall():
  task = DetectionTask(detection_config(), SPEC)
  images = synthetic_images(6)
  images["difficult"][0, 0] = True  # not a target
  batch = {k: jnp.asarray(v) for k, v in images.items()}
  state = _state(task, images)
  step = jax.jit(task.train_step)
  first = None
  for i in range(40):
    state, metrics = step(state, batch, jax.random.key(i))
    first = first or jax.device_get(metrics)
  names = {"xy", "wh", "object_confidence", "no_object_confidence", "class"}
  assert set(first) == {"loss"} | {f"loss_{k}" for k in names}
  assert all(np.isfinite(v) for v in first.values())
  np.testing.assert_allclose(first["loss"], sum(first[f"loss_{k}"] for k in names), rtol=1e-5)
  assert float(metrics["loss"]) < 0.5 * float(first["loss"])
  # BatchNorm's statistics moved in training, and stay put with frozen_batch_stats.
  fresh = _state(task, images)
  changed = jax.tree.map(lambda a, b: not np.allclose(a, b), fresh.model_state, state.model_state)
  assert all(jax.tree.leaves(changed))
  frozen = DetectionTask(detection_config(), SPEC)
  frozen.config.train.frozen_batch_stats = True
  state = _state(frozen, images)
  state, _ = jax.jit(frozen.train_step)(state, batch, jax.random.key(0))
  jax.tree.map(np.testing.assert_array_equal, fresh.model_state, state.model_state)


def test_images_without_boxes_train_only_no_object_confidence():
  task = DetectionTask(detection_config(), SPEC)
  images = synthetic_images(4)
  images["box_mask"][:] = False
  state = _state(task, images)
  _, metrics = jax.jit(task.train_step)(
    state, {k: jnp.asarray(v) for k, v in images.items()}, jax.random.key(0)
  )
  metrics = jax.device_get(metrics)
  assert metrics["loss_no_object_confidence"] > 0 and np.isfinite(metrics["loss"])
  for name in ("xy", "wh", "object_confidence", "class"):
    assert metrics[f"loss_{name}"] == 0


def test_perfect_detections_score_one_over_a_padded_split():
  task = PerfectDetector(detection_config(), SPEC)
  images = synthetic_images(7)  # batches of 3: the last holds 2 copies of image 0
  state = _state(task, images)
  results = _evaluate(task, state, images, batch_size=3)
  assert set(results) == set(task.eval_metric_names(state, next(eval_batches(images, 3))))
  for name in ("mAP50", "mAP50_11point", "coco_AP50", "coco_AP75", "coco_AR100"):
    assert results[name] == pytest.approx(1.0), name
  assert results["coco_AP"] == pytest.approx(1.0)
  # Each real object counted once: image 0's copies in the padding are not.
  curves = task.last_evaluation["test"].curves
  assert sum(c.num_positives for c in curves.values()) == images["box_mask"].sum()


def test_padding_rows_are_not_scored():
  """Missing image 0's objects costs recall in proportion to its share of the real objects; had
  its padding copies been scored, the share (and the mAP) would be another."""
  task = PerfectDetector(detection_config(), SPEC)
  task.missed = (0,)
  images = synthetic_images(7)
  state = _state(task, images)
  results = _evaluate(task, state, images, batch_size=3)

  def expected(rows):
    truths = detection_metrics.ground_truths_from_batch(
      images["boxes"][rows], images["labels"][rows], images["box_mask"][rows]
    )
    detections = [
      detection_metrics.ImageDetections(
        np.zeros((0, 4)) if i == 0 else t.boxes,
        np.ones(0 if i == 0 else len(t.labels)),
        np.zeros(0) if i == 0 else t.labels,
      )
      for i, t in zip(rows, truths)
    ]
    return detection_metrics.voc_evaluation(truths, detections, class_ids=range(CLASSES))

  real = expected(np.arange(7)).mean_average_precision
  padded = expected(np.array([0, 1, 2, 3, 4, 5, 6, 0, 0])).mean_average_precision
  assert real < 1.0 and padded != pytest.approx(real)
  assert results["mAP50"] == pytest.approx(real)


def test_visuals_and_coco_results(tmp_path):
  task = PerfectDetector(detection_config(), SPEC)
  images = synthetic_images(5)
  state = _state(task, images)
  _evaluate(task, state, images, batch_size=4)
  batch = {k: jnp.asarray(v) for k, v in images.items()}
  raw = np.uint8(np.clip(images["image"] * 40 + 128, 0, 255))
  pictures = task.visuals(state, {**batch, "raw_image": raw}, str(tmp_path), "final_")
  assert set(pictures) == {"final_detections", "final_precision_recall"}
  assert all(os.path.getsize(p) > 0 for p in pictures.values())
  step = make_eval_step(task, lambda b: b, mesh_lib.replicated(mesh_lib.make_mesh()))
  _, outputs = split_outputs(state, step, eval_batches(images, 4))
  path = task.coco_results(outputs, str(tmp_path / "results.json"), image_ids=[9, 8, 7, 6, 5])
  results = json.load(open(path))
  assert len(results) == images["box_mask"].sum()
  assert {r["image_id"] for r in results} == {9, 7, 6, 5}  # image 1 (id 8) has no objects
  assert all(r["score"] == pytest.approx(1.0) for r in results)


def test_settings_are_checked():
  DetectionTask.check_settings(detection_config())
  with pytest.raises(ConfigError, match="detection.iou_threshold"):
    DetectionTask.check_settings(detection_config(iou_threshold=1.5))
  with pytest.raises(ConfigError, match="detection.max_detections"):
    DetectionTask.check_settings(detection_config(max_detections=0))


def test_a_stored_area_reaches_the_coco_size_ranges():
  """COCO's small/medium/large go by each annotation's stored area (a `coco:` dataset keeps it):
  the ground truth a task scores carries the batch's "area", not the box's own."""
  outputs = {
    "true_boxes": np.array([[[0, 0, 50, 50]]], np.float32),
    "true_labels": np.array([[1]], np.int32),
    "true_valid": np.array([[True]]),
    "true_area": np.array([[100.0]], np.float32),  # a 50x50 box whose object is small
    "boxes": np.array([[[0, 0, 50, 50]]], np.float32),
    "scores": np.array([[0.9]], np.float32),
    "labels": np.array([[1]], np.int32),
    "valid": np.array([[True]]),
  }
  truths, _ = DetectionTask.images_of(outputs)
  np.testing.assert_array_equal(truths[0].areas, [100.0])
