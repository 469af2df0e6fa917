"""YOLOv1's output format (Redmon et al. 2016): ground truth encoded into it (`yolo_targets`), the
paper's loss (`yolo_loss`), and predictions decoded into detections (`yolo_decode`). Pure JAX,
jittable, static shapes; they live together because all three read one layout.

The layout (`vision_jax.models.yolo`): predictions [batch, S, S, B * 5 + C] hold for each cell
(row, column) B boxes of (x, y, sqrt(w), sqrt(h), confidence), then C class scores. x, y are the
box centre's offset within the cell in cell units, w, h the box size relative to the image. All
are linear outputs (the paper's), regressed with squared errors: no sigmoid, no softmax.

    targets = yolo_targets(batch["boxes"], batch["labels"], batch["valid"], (448, 448), 7, 20)
    losses = yolo_loss(predictions, targets)  # {"xy": ..., "wh": ..., ...}; the loop sums them.
    detections = yolo_decode(predictions, 20, (448, 448))  # boxes, scores, labels, valid
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from vision_jax.detection.boxes import batched_nms, box_iou, clip_boxes

ImageSize = int | tuple[int, int]


class YoloTargets(NamedTuple):
  """Per-cell training targets of one image (or a batch: a leading [batch] on every field).

  Attributes:
    object_mask: [S, S] bool, the cells holding an object's centre (each responsible for it).
    boxes: [S, S, 4] float32, the object's (x, y, w, h): centre offset within the cell in cell
      units ([0, 1]) and size relative to the image; zeros where object_mask is False.
    classes: [S, S, C] float32, the object's class one-hot; zeros where object_mask is False.
    num_dropped: [] int32, valid objects left without a cell (their centre's cell holds a
      larger object).
  """

  object_mask: jnp.ndarray
  boxes: jnp.ndarray
  classes: jnp.ndarray
  num_dropped: jnp.ndarray


def _height_width(image_size: ImageSize) -> tuple[int, int]:
  return (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)


def _image_targets(boxes, labels, valid, image_size, grid_size, num_classes) -> YoloTargets:
  s = grid_size
  height, width = _height_width(image_size)
  boxes = jnp.asarray(boxes, jnp.float32)
  valid = jnp.asarray(valid, bool)
  # Centres on the far edge (or, after a careless crop, outside) belong to the edge cells.
  cx = jnp.clip((boxes[:, 0] + boxes[:, 2]) / 2 / width * s, 0, s)
  cy = jnp.clip((boxes[:, 1] + boxes[:, 3]) / 2 / height * s, 0, s)
  column = jnp.minimum(jnp.floor(cx), s - 1).astype(jnp.int32)
  row = jnp.minimum(jnp.floor(cy), s - 1).astype(jnp.int32)
  encoded = jnp.stack(
    [
      cx - column,
      cy - row,
      (boxes[:, 2] - boxes[:, 0]) / width,
      (boxes[:, 3] - boxes[:, 1]) / height,
    ],
    axis=-1,
  )
  # One object per cell: the largest (by area) whose centre falls in it, the first of equals.
  in_cell = valid[:, None] & ((row * s + column)[:, None] == jnp.arange(s * s))  # [N, S * S]
  area = encoded[:, 2] * encoded[:, 3]
  winner = jnp.argmax(jnp.where(in_cell, area[:, None], -jnp.inf), axis=0)  # [S * S]
  has_object = jnp.any(in_cell, axis=0)
  object_boxes = jnp.where(has_object[:, None], encoded[winner], 0)
  classes = jax.nn.one_hot(labels[winner], num_classes) * has_object[:, None]
  return YoloTargets(
    object_mask=has_object.reshape(s, s),
    boxes=object_boxes.reshape(s, s, 4),
    classes=classes.reshape(s, s, num_classes),
    num_dropped=(jnp.sum(valid) - jnp.sum(has_object)).astype(jnp.int32),
  )


def yolo_targets(
  boxes: jnp.ndarray,
  labels: jnp.ndarray,
  valid: jnp.ndarray,
  image_size: ImageSize,
  grid_size: int,
  num_classes: int,
) -> YoloTargets:
  """The paper's targets: the cell holding an object's centre is responsible for it.

  Each cell predicts one class, so it takes one object: where the centres of several fall in one
  cell, the largest by area wins (the first of equal areas) and the others are dropped and
  counted in `num_dropped` (darknet keeps the first of a randomly shuffled list). Centres on
  the image's right or bottom edge belong to the last cell.

  Args:
    boxes: [N, 4] or [batch, N, 4] float, pixel x0, y0, x1, y1 (padded to a fixed N).
    labels: [N] or [batch, N] int in [0, num_classes).
    valid: [N] or [batch, N] bool, the real objects (False for padding).
    image_size: (height, width) in pixels, or one int for square images.
    grid_size: S.
    num_classes: C.

  Returns:
    `YoloTargets`, with a leading [batch] on every field for batched inputs.
  """
  boxes, labels, valid = jnp.asarray(boxes), jnp.asarray(labels), jnp.asarray(valid)
  if boxes.shape[-2] == 0:  # No object slots at all: every cell is empty.
    batch, s = boxes.shape[:-2], grid_size
    return YoloTargets(
      jnp.zeros(batch + (s, s), bool),
      jnp.zeros(batch + (s, s, 4), jnp.float32),
      jnp.zeros(batch + (s, s, num_classes), jnp.float32),
      jnp.zeros(batch, jnp.int32),
    )
  if boxes.ndim == 3:
    return jax.vmap(_image_targets, in_axes=(0, 0, 0, None, None, None))(
      boxes, labels, valid, image_size, grid_size, num_classes
    )
  return _image_targets(boxes, labels, valid, image_size, grid_size, num_classes)


def _cell_boxes_to_corners(cell_boxes: jnp.ndarray, grid_size: int) -> jnp.ndarray:
  """Boxes [..., S, S, K, 4] as (x, y, w, h) in the layout's units (centre in cell units, size
  relative to the image) -> [..., S, S, K, 4] x0, y0, x1, y1 relative to the image ([0, 1])."""
  s = grid_size
  column = jnp.arange(s, dtype=cell_boxes.dtype)[None, :, None]
  row = jnp.arange(s, dtype=cell_boxes.dtype)[:, None, None]
  cx = (cell_boxes[..., 0] + column) / s
  cy = (cell_boxes[..., 1] + row) / s
  half_w, half_h = cell_boxes[..., 2] / 2, cell_boxes[..., 3] / 2
  return jnp.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=-1)


def _split(predictions: jnp.ndarray, num_classes: int):
  """predictions [..., S, S, B * 5 + C] -> boxes [..., S, S, B, 4] (x, y, sqrt w, sqrt h),
  confidences [..., S, S, B], class scores [..., S, S, C]."""
  per_cell = predictions.shape[-1]
  if (per_cell - num_classes) % 5 or per_cell <= num_classes:
    raise ValueError(
      f"predictions have {per_cell} values per cell, which is not B * 5 + C for C = "
      f"{num_classes} classes and some B >= 1"
    )
  per_box = predictions[..., : per_cell - num_classes].reshape(predictions.shape[:-1] + (-1, 5))
  return per_box[..., :4], per_box[..., 4], predictions[..., per_cell - num_classes :]


def _responsible(pred_boxes: jnp.ndarray, true_boxes: jnp.ndarray, grid_size: int):
  """Which of a cell's B predictors is responsible for its object, and their IoUs with it.

  pred_boxes [S, S, B, 4] (x, y, sqrt w, sqrt h), true_boxes [S, S, 4] (x, y, w, h). The
  predictor of highest IoU with the object; where none overlaps it (IoU 0 for all, common early
  in training), the one nearest in (x, y, w, h), as darknet's detection layer, rather than always
  the first. Returns (one-hot [S, S, B], IoUs [S, S, B]), no gradient.
  """
  pred_boxes = jax.lax.stop_gradient(pred_boxes)
  pred_xywh = jnp.concatenate([pred_boxes[..., :2], jnp.square(pred_boxes[..., 2:])], axis=-1)
  iou = box_iou(
    _cell_boxes_to_corners(pred_xywh, grid_size),
    _cell_boxes_to_corners(true_boxes[..., None, :], grid_size),
  )[..., 0]
  # Distances in image units, as darknet's box_rmse: centres in cell units are divided by S.
  scale = jnp.array([1 / grid_size, 1 / grid_size, 1, 1], pred_xywh.dtype)
  distance = jnp.sum(jnp.square((pred_xywh - true_boxes[..., None, :]) * scale), axis=-1)
  overlaps = jnp.any(iou > 0, axis=-1, keepdims=True)
  best = jnp.argmax(jnp.where(overlaps, iou, -distance), axis=-1)
  return jax.nn.one_hot(best, pred_boxes.shape[-2], dtype=iou.dtype), iou


def _image_loss(predictions, targets: YoloTargets, lambda_coord, lambda_noobj) -> dict:
  s, num_classes = predictions.shape[0], targets.classes.shape[-1]
  boxes, confidence, class_scores = _split(predictions, num_classes)
  has_object = targets.object_mask.astype(predictions.dtype)
  responsible, iou = _responsible(boxes, targets.boxes, s)
  responsible = responsible * has_object[..., None]  # [S, S, B]
  true = targets.boxes[..., None, :]
  xy = jnp.sum(jnp.square(boxes[..., :2] - true[..., :2]), axis=-1)
  wh = jnp.sum(jnp.square(boxes[..., 2:] - jnp.sqrt(jnp.maximum(true[..., 2:], 0))), axis=-1)
  return {
    "xy": lambda_coord * jnp.sum(responsible * xy),
    "wh": lambda_coord * jnp.sum(responsible * wh),
    "object_confidence": jnp.sum(responsible * jnp.square(confidence - iou)),
    "no_object_confidence": lambda_noobj * jnp.sum((1 - responsible) * jnp.square(confidence)),
    "class": jnp.sum(has_object[..., None] * jnp.square(class_scores - targets.classes)),
  }


def yolo_loss(
  predictions: jnp.ndarray,
  targets: YoloTargets,
  lambda_coord: float = 5.0,
  lambda_noobj: float = 0.5,
) -> dict[str, jnp.ndarray]:
  """The paper's loss (its equation 3), term by term: five sums of squared errors.

  In each cell holding an object, the responsible predictor is the one of its B with the highest
  IoU with the object (computed without gradient; the nearest where none overlaps it). Then:
    "xy": lambda_coord * (x - x_true)^2 + (y - y_true)^2 of the responsible predictors;
    "wh": lambda_coord * (sqrt w - sqrt w_true)^2 + (sqrt h - sqrt h_true)^2 of the same;
    "object_confidence": (confidence - IoU)^2 of the same, the IoU as its target (no gradient);
    "no_object_confidence": lambda_noobj * confidence^2 of every other predictor: all B in empty
      cells, and the B - 1 others in a cell holding an object;
    "class": (score_c - one_hot_c)^2 summed over classes, only in cells holding an object.
  Each is summed over cells and predictors and averaged over the batch; they already carry
  their weights, so the paper's loss is their sum.

  Args:
    predictions: [batch, S, S, B * 5 + C] float, the layout of `vision_jax.models.yolo`.
    targets: `yolo_targets` of the batch (fields with a leading [batch]).
    lambda_coord: weight of the box coordinates' terms (5 in the paper).
    lambda_noobj: weight of the confidences of predictors without an object (0.5 in the paper).

  Returns:
    {name: [] float32} for the five terms above.
  """
  predictions = jnp.asarray(predictions, jnp.float32)
  per_image = jax.vmap(_image_loss, in_axes=(0, 0, None, None))(
    predictions, targets, lambda_coord, lambda_noobj
  )
  return {name: jnp.mean(value) for name, value in per_image.items()}


def yolo_decode(
  predictions: jnp.ndarray,
  num_classes: int,
  image_size: ImageSize,
  score_threshold: float = 0.005,
  iou_threshold: float = 0.5,
  max_detections: int = 100,
) -> dict[str, jnp.ndarray]:
  """Detections from predictions, a fixed number per image: the paper's test-time scoring.

  Each of the S * S * B boxes scores every class with the paper's class-specific confidence,
  Pr(class | object) * confidence: the raw class score of its cell times its raw confidence
  (both linear outputs, as the loss regresses them; no softmax). Box, class pairs scoring above
  `score_threshold` go through non-maximum suppression within each class
  (`vision_jax.detection.boxes.batched_nms`), and the `max_detections` best remain. Boxes are
  clipped to the image; sizes are the squares of the predicted sqrt(w), sqrt(h).

  Args:
    predictions: [batch, S, S, B * 5 + C] float.
    num_classes: C (B follows from the last dimension).
    image_size: (height, width) in pixels of the images the predictions are for, or one int.
    score_threshold: the class-specific confidence a detection must exceed. Low by default, as
      average precision counts every detection in the ranking; raise it (~0.2) for pictures.
    iou_threshold: NMS suppresses a box whose IoU with a better one of its class is above this.
    max_detections: K, the detections per image.

  Returns:
    {"boxes": [batch, K, 4] float32 pixel x0, y0, x1, y1, "scores": [batch, K] float32,
    "labels": [batch, K] int32, "valid": [batch, K] bool}, by descending score; slots past an
    image's detections have valid False and zeros elsewhere (the format of
    `vision_jax.metrics.detection.detections_from_batch`).
  """
  predictions = jnp.asarray(predictions, jnp.float32)
  s = predictions.shape[1]
  height, width = _height_width(image_size)
  boxes, confidence, class_scores = _split(predictions, num_classes)
  xywh = jnp.concatenate([boxes[..., :2], jnp.square(boxes[..., 2:])], axis=-1)
  corners = _cell_boxes_to_corners(xywh, s) * jnp.array([width, height, width, height])
  corners = clip_boxes(corners, height, width)  # [batch, S, S, B, 4]
  scores = confidence[..., :, None] * class_scores[..., None, :]  # [batch, S, S, B, C]
  batch, b = predictions.shape[0], confidence.shape[-1]
  candidates = s * s * b * num_classes
  corners = jnp.broadcast_to(corners[..., None, :], scores.shape + (4,)).reshape(batch, -1, 4)
  scores = scores.reshape(batch, candidates)
  labels = jnp.broadcast_to(
    jnp.tile(jnp.arange(num_classes, dtype=jnp.int32), s * s * b), (batch, candidates)
  )

  def image(boxes, scores, labels):
    keep, keep_valid = batched_nms(
      boxes, scores, labels, iou_threshold, max_detections, valid=scores > score_threshold
    )
    return {
      "boxes": jnp.where(keep_valid[:, None], boxes[keep], 0),
      "scores": jnp.where(keep_valid, scores[keep], 0),
      "labels": jnp.where(keep_valid, labels[keep], 0),
      "valid": keep_valid,
    }

  return jax.vmap(image)(corners, scores, labels)
