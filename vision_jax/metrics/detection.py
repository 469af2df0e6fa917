"""Average precision of object detection over a whole split: PASCAL VOC's and COCO's, exactly.

Host-side numpy, computed once from every detection of a split (AP is not a mean of per-batch
values). The input is one `ImageGroundTruth` and one `ImageDetections` per image, in one order:

  ImageGroundTruth   boxes [G, 4] float, pixel x0, y0, x1, y1; labels [G] int;
                     crowd [G] bool (COCO iscrowd, default False); difficult [G] bool (VOC,
                     default False); areas [G] float (COCO's stored area, by which objects are
                     small/medium/large: a segment's area on COCO; default the box's area).
  ImageDetections    boxes [D, 4] float, pixel x0, y0, x1, y1; scores [D] float; labels [D] int.

A detection task gathers them from padded eval batches with `ground_truths_from_batch` and
`detections_from_batch`, which drop the padding (entries whose valid mask is False):

    ground_truths, detections = [], []
    for batch, out in eval_batches:
      ground_truths += ground_truths_from_batch(batch["boxes"], batch["labels"], batch["valid"])
      detections += detections_from_batch(out["boxes"], out["scores"], out["labels"], out["valid"])
    voc = voc_evaluation(ground_truths, detections)  # voc.mean_average_precision
    coco = coco_evaluation(ground_truths, detections)  # coco.stats["AP"], ...
    json.dump(coco_results(detections, image_ids, category_ids), file)  # For the COCO server.

VOC (`voc_evaluation`) follows the devkit's VOCevaldet.m (and py-faster-rcnn's voc_eval.py port):
detections of a class, across all images, are taken by descending score; each is matched to the
ground-truth box of its class and image it overlaps most (the first of equal overlaps); an IoU of
at least the threshold (0.5) with a box not yet matched is a true positive, with a box already
matched a false positive (a second detection of one object), with a difficult box neither, and
anything less a false positive. Difficult boxes do not count as positives. AP is the area under
the precision envelope (VOC 2010+), or with `eleven_point=True` VOC 2007's mean of the envelope at
recalls 0, 0.1, ..., 1. Choices where the sources differ or are silent:
  * Pixel convention: `inclusive_coordinates=False` (default) treats x1, y1 as continuous
    coordinates (width x1 - x0), like COCO, torchvision and `vision_jax.detection.boxes`;
    `inclusive_coordinates=True` is the devkit's +1 convention for its 1-based integer annotations,
    where x1 is the last pixel column inside the box (width x1 - x0 + 1), and with it results on
    VOC's annotation files equal the devkit's.
  * An IoU equal to the threshold matches (the devkit's `ovmax >= minoverlap`; voc_eval.py has
    `ovmax > ovthresh`, which differs only at exactly 0.5, common with integer boxes).
  * Tied scores are taken in input order (image order, then detection order): a stable sort, where
    voc_eval.py's np.argsort(-confidence) leaves their order to the sorting algorithm.
  * The 11 recall points are exactly k / 10; voc_eval.py's np.arange(0, 1.1, 0.1) has
    0.30000000000000004, 0.6000000000000001 and 0.7000000000000001, which skip a recall of exactly
    3/10, 6/10 or 7/10.
  * A class without any (non-difficult) ground truth has AP NaN and is left out of the mAP.

COCO (`coco_evaluation`) equals pycocotools' COCOeval(iouType="bbox") to within floating-point
rounding (tests/test_detection_metrics.py checks 1e-6 on random and edge cases), reproducing its
rules: IoU of boxes as x, y, w, h in float64, and with a crowd box intersection over the
detection's own area; crowd boxes and objects outside an area range are ignored (a detection
matched to one neither counts nor penalises; unmatched detections outside the range are ignored);
a detection prefers a non-ignored box, then the best IoU, the last such box in input order among
equal IoUs; max detections (1, 10, 100) are per image AND class, by score; IoU thresholds
0.50:0.05:0.95 and 101 recall points. Tied scores are taken in input order (COCOeval: by
increasing image id, then detection order), so images listed by increasing COCO id give its
results exactly. Where COCOeval reports -1 (no ground truth in a setting), this reports NaN.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

# COCOeval's parameters for bounding boxes (pycocotools.cocoeval.Params.setDetParams).
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # linspace, as COCOeval: exactly 0.5 and 0.75.
COCO_RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
COCO_AREA_RANGES = (("all", 0.0, 1e10), ("small", 0.0, 32.0**2), ("medium", 32.0**2, 96.0**2))
COCO_AREA_RANGES += (("large", 96.0**2, 1e10),)  # Bounds belong to both neighbours, as COCOeval's.
COCO_MAX_DETECTIONS = (1, 10, 100)
# COCOeval.stats, in its order.
COCO_STAT_NAMES = (
  "AP",
  "AP50",
  "AP75",
  "AP_small",
  "AP_medium",
  "AP_large",
  "AR1",
  "AR10",
  "AR100",
  "AR_small",
  "AR_medium",
  "AR_large",
)


@dataclasses.dataclass
class ImageGroundTruth:
  """One image's ground-truth objects; see the module docstring for the fields' meaning."""

  boxes: np.ndarray  # [G, 4] float64, pixel x0, y0, x1, y1.
  labels: np.ndarray  # [G] int64.
  crowd: np.ndarray | None = None  # [G] bool; None means none is a crowd.
  difficult: np.ndarray | None = None  # [G] bool; None means none is difficult.
  areas: np.ndarray | None = None  # [G] float64; None means the boxes' areas.

  def __post_init__(self):
    self.boxes = np.asarray(self.boxes, np.float64).reshape(-1, 4)
    count = len(self.boxes)
    self.labels = np.asarray(self.labels, np.int64).reshape(count)
    for name in ("crowd", "difficult"):
      flags = getattr(self, name)
      flags = np.zeros(count, bool) if flags is None else np.asarray(flags, bool).reshape(count)
      setattr(self, name, flags)
    if self.areas is None:
      self.areas = (self.boxes[:, 2] - self.boxes[:, 0]) * (self.boxes[:, 3] - self.boxes[:, 1])
    self.areas = np.asarray(self.areas, np.float64).reshape(count)


@dataclasses.dataclass
class ImageDetections:
  """One image's detections; see the module docstring for the fields' meaning."""

  boxes: np.ndarray  # [D, 4] float64, pixel x0, y0, x1, y1.
  scores: np.ndarray  # [D] float64.
  labels: np.ndarray  # [D] int64.

  def __post_init__(self):
    self.boxes = np.asarray(self.boxes, np.float64).reshape(-1, 4)
    count = len(self.boxes)
    self.scores = np.asarray(self.scores, np.float64).reshape(count)
    self.labels = np.asarray(self.labels, np.int64).reshape(count)


def ground_truths_from_batch(
  boxes: np.ndarray,
  labels: np.ndarray,
  valid: np.ndarray,
  crowd: np.ndarray | None = None,
  difficult: np.ndarray | None = None,
  areas: np.ndarray | None = None,
) -> list[ImageGroundTruth]:
  """Per-image ground truth from a padded batch: boxes [B, G, 4], labels, valid, and optionally
  crowd, difficult, areas [B, G]; entries where valid is False are padding and dropped."""
  valid = np.asarray(valid, bool)
  optional = {"crowd": crowd, "difficult": difficult, "areas": areas}
  optional = {name: np.asarray(value) for name, value in optional.items() if value is not None}
  boxes, labels = np.asarray(boxes), np.asarray(labels)
  return [
    ImageGroundTruth(
      boxes[i][valid[i]], labels[i][valid[i]], **{k: v[i][valid[i]] for k, v in optional.items()}
    )
    for i in range(len(valid))
  ]


def detections_from_batch(
  boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, valid: np.ndarray
) -> list[ImageDetections]:
  """Per-image detections from a padded batch (e.g. `batched_nms`'s fixed-size output gathered):
  boxes [B, D, 4], scores [B, D], labels [B, D], valid [B, D]; invalid entries are dropped."""
  valid = np.asarray(valid, bool)
  boxes, scores, labels = np.asarray(boxes), np.asarray(scores), np.asarray(labels)
  return [
    ImageDetections(boxes[i][valid[i]], scores[i][valid[i]], labels[i][valid[i]])
    for i in range(len(valid))
  ]


def _check_images(
  ground_truths: Sequence[ImageGroundTruth], detections: Sequence[ImageDetections]
) -> None:
  if len(ground_truths) != len(detections):
    raise ValueError(
      f"need one ImageDetections per ImageGroundTruth, got {len(detections)} and "
      f"{len(ground_truths)}"
    )


def _default_class_ids(ground_truths: Sequence[ImageGroundTruth]) -> list[int]:
  labels = [gt.labels for gt in ground_truths]
  return sorted(set(np.concatenate(labels).tolist())) if labels else []


# ------------------------------------------------------------------------------------------------
# PASCAL VOC


@dataclasses.dataclass(frozen=True)
class PrecisionRecallCurve:
  """One class's detections by descending score, and precision and recall after each: for plots
  (`recall` against `precision`) and for VOC AP."""

  scores: np.ndarray  # [D] float64, descending.
  precision: np.ndarray  # [D] float64: true positives / counted detections so far (0 before any).
  recall: np.ndarray  # [D] float64: true positives / num_positives (NaN if num_positives is 0).
  true_positive: np.ndarray  # [D] bool.
  false_positive: np.ndarray  # [D] bool; neither means matched to a difficult object.
  num_positives: int  # Ground-truth objects of the class that are not difficult.


@dataclasses.dataclass(frozen=True)
class VocEvaluation:
  average_precision: dict[int, float]  # Class id -> AP; NaN for a class with no positives.
  mean_average_precision: float  # Mean over classes with positives (NaN if none has).
  curves: dict[int, PrecisionRecallCurve]


def _pairwise_iou(a: np.ndarray, b: np.ndarray, inclusive_coordinates: bool) -> np.ndarray:
  """IoU [N, M] of boxes a [N, 4] and b [M, 4], as VOCevaldet.m computes it (0 without overlap)."""
  extra = 1.0 if inclusive_coordinates else 0.0
  widths = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
  heights = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
  widths, heights = widths + extra, heights + extra
  overlapping = (widths > 0) & (heights > 0)
  intersection = widths * heights
  area_a = (a[:, 2] - a[:, 0] + extra) * (a[:, 3] - a[:, 1] + extra)
  area_b = (b[:, 2] - b[:, 0] + extra) * (b[:, 3] - b[:, 1] + extra)
  union = area_a[:, None] + area_b[None, :] - intersection
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(overlapping, intersection / np.where(overlapping, union, 1.0), 0.0)


def precision_recall_curves(
  ground_truths: Sequence[ImageGroundTruth],
  detections: Sequence[ImageDetections],
  iou_threshold: float = 0.5,
  inclusive_coordinates: bool = False,
  class_ids: Sequence[int] | None = None,
) -> dict[int, PrecisionRecallCurve]:
  """Each class's precision-recall curve under VOC's matching rules (module docstring).

  class_ids: the classes to evaluate; default every label in the ground truth.
  """
  _check_images(ground_truths, detections)
  class_ids = _default_class_ids(ground_truths) if class_ids is None else list(class_ids)
  curves = {}
  for class_id in class_ids:
    num_positives = 0
    image_of, index_in_image, scores, overlaps, difficult, matched = [], [], [], [], [], []
    for image, (gt, det) in enumerate(zip(ground_truths, detections)):
      gt_mask, det_mask = gt.labels == class_id, det.labels == class_id
      num_positives += int(np.sum(gt_mask & ~gt.difficult))
      difficult.append(gt.difficult[gt_mask])
      matched.append(np.zeros(int(gt_mask.sum()), bool))
      overlaps.append(_pairwise_iou(det.boxes[det_mask], gt.boxes[gt_mask], inclusive_coordinates))
      count = int(det_mask.sum())
      image_of.append(np.full(count, image))
      index_in_image.append(np.arange(count))
      scores.append(det.scores[det_mask])
    scores = np.concatenate(scores) if scores else np.zeros(0)
    order = np.argsort(-scores, kind="stable")
    image_of = np.concatenate(image_of)[order] if image_of else np.zeros(0, int)
    index_in_image = np.concatenate(index_in_image)[order] if index_in_image else image_of
    true_positive = np.zeros(len(order), bool)
    false_positive = np.zeros(len(order), bool)
    for rank, (image, index) in enumerate(zip(image_of, index_in_image)):
      row = overlaps[image][index]
      if row.size == 0:
        false_positive[rank] = True
        continue
      best = int(np.argmax(row))  # The first of equal overlaps, as the devkit's strict `>`.
      if row[best] > 0 and row[best] >= iou_threshold:
        if difficult[image][best]:
          continue
        if matched[image][best]:
          false_positive[rank] = True
        else:
          true_positive[rank] = matched[image][best] = True
      else:
        false_positive[rank] = True
    tp, fp = np.cumsum(true_positive), np.cumsum(false_positive)
    with np.errstate(divide="ignore", invalid="ignore"):
      recall = tp / float(num_positives) if num_positives else np.full(len(tp), np.nan)
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    curves[class_id] = PrecisionRecallCurve(
      scores[order], precision, recall, true_positive, false_positive, num_positives
    )
  return curves


def voc_average_precision_of_curve(
  recall: np.ndarray, precision: np.ndarray, eleven_point: bool = False
) -> float:
  """VOC AP from a curve's recall [D] and precision [D] (detections by descending score).

  eleven_point=False: the area under the precision envelope (VOC 2010+, the devkit's VOCap.m);
  True: VOC 2007's mean over recalls t = 0, 0.1, ..., 1 of the best precision at recall >= t.
  """
  recall, precision = np.asarray(recall, np.float64), np.asarray(precision, np.float64)
  if eleven_point:
    total = 0.0
    for threshold in np.arange(11) / 10:  # Exactly k / 10 (see the module docstring).
      reached = recall >= threshold
      total += (precision[reached].max() if reached.any() else 0.0) / 11
    return float(total)
  recall = np.concatenate([[0.0], recall, [1.0]])
  envelope = np.maximum.accumulate(np.concatenate([[0.0], precision, [0.0]])[::-1])[::-1]
  steps = np.nonzero(recall[1:] != recall[:-1])[0]
  return float(np.sum((recall[steps + 1] - recall[steps]) * envelope[steps + 1]))


def voc_evaluation(
  ground_truths: Sequence[ImageGroundTruth],
  detections: Sequence[ImageDetections],
  iou_threshold: float = 0.5,
  eleven_point: bool = False,
  inclusive_coordinates: bool = False,
  class_ids: Sequence[int] | None = None,
) -> VocEvaluation:
  """PASCAL VOC per-class AP and mAP at `iou_threshold` (module docstring for the rules).

  eleven_point: VOC 2007's 11-point interpolation instead of the area (VOC 2010+).
  inclusive_coordinates: the devkit's +1 pixel convention (x1, y1 the last pixel inside).
  class_ids: the classes to evaluate; default every label in the ground truth.
  """
  curves = precision_recall_curves(
    ground_truths, detections, iou_threshold, inclusive_coordinates, class_ids
  )
  average_precision = {
    class_id: voc_average_precision_of_curve(curve.recall, curve.precision, eleven_point)
    if curve.num_positives
    else float("nan")
    for class_id, curve in curves.items()
  }
  defined = [ap for ap in average_precision.values() if not np.isnan(ap)]
  mean = float(np.mean(defined)) if defined else float("nan")
  return VocEvaluation(average_precision, mean, curves)


# ------------------------------------------------------------------------------------------------
# COCO


@dataclasses.dataclass(frozen=True)
class CocoEvaluation:
  """COCOeval's results, with NaN where it has -1 (no ground truth in that setting)."""

  stats: dict[str, float]  # COCO_STAT_NAMES -> value, COCOeval.stats.
  precision: np.ndarray  # [T, R, K, A, M]: IoU threshold, recall point, class, area, max dets.
  recall: np.ndarray  # [T, K, A, M].
  class_ids: list[int]  # The K classes, in the order of precision's and recall's axis.
  average_precision: dict[int, float]  # Class id -> AP@[.50:.95], all areas, most detections.


def _xywh(boxes: np.ndarray) -> np.ndarray:
  """x0, y0, x1, y1 [N, 4] -> x, y, w, h [N, 4] float64, as written to COCO results."""
  return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def _coco_iou(detections: np.ndarray, objects: np.ndarray, crowd: np.ndarray) -> np.ndarray:
  """IoU [D, G] of detections [D, 4] and objects [G, 4] (x, y, w, h), in pycocotools' bbIou's
  float64 arithmetic; against a crowd object, intersection over the detection's area."""
  dx, dy, dw, dh = (detections[:, None, i] for i in range(4))
  gx, gy, gw, gh = (objects[None, :, i] for i in range(4))
  widths = np.minimum(dw + dx, gw + gx) - np.maximum(dx, gx)
  heights = np.minimum(dh + dy, gh + gy) - np.maximum(dy, gy)
  intersection = widths * heights
  detection_area = dw * dh
  union = np.where(crowd[None, :], detection_area, detection_area + gw * gh - intersection)
  overlapping = (widths > 0) & (heights > 0)
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(overlapping, intersection / np.where(overlapping, union, 1.0), 0.0)


def _coco_match(
  overlaps: np.ndarray, ignored: np.ndarray, crowd: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
  """COCOeval.evaluateImg's greedy matching at every IoU threshold [T] at once.

  overlaps [D, G] (detections by descending score), ignored and crowd [G]. Returns
  (matched [T, D], matched to an ignored object [T, D]). Each detection takes the object with
  the best IoU of at least the threshold among those not yet taken (crowd objects can be taken
  again), preferring non-ignored objects; among equal IoUs the last in input order, as
  COCOeval's scan with `if ious[d, g] < iou: continue`.
  """
  num_detections, num_objects = overlaps.shape
  matched = np.zeros((len(thresholds), num_detections), bool)
  matched_ignored = np.zeros_like(matched)
  if num_detections == 0 or num_objects == 0:
    return matched, matched_ignored
  floor = np.minimum(thresholds, 1 - 1e-10)[:, None]
  taken = np.zeros((len(thresholds), num_objects), bool)
  rows = np.arange(len(thresholds))
  for d in range(num_detections):
    candidate = (~taken | crowd[None, :]) & (overlaps[d][None, :] >= floor)
    best = np.full(len(thresholds), -1)
    for group in (~ignored, ignored):
      in_group = candidate & group[None, :]
      values = np.where(in_group, overlaps[d][None, :], -np.inf)
      last_best = num_objects - 1 - np.argmax(values[:, ::-1], axis=1)
      best = np.where((best < 0) & in_group.any(axis=1), last_best, best)
    found = best >= 0
    matched[:, d] = found
    matched_ignored[:, d] = found & ignored[best]
    taken[rows[found], best[found]] = True
  return matched, matched_ignored


@dataclasses.dataclass
class _ImageClassResult:
  scores: np.ndarray  # [D] by descending score.
  counted_match: np.ndarray  # [T, D] bool: matched and not ignored (a true positive).
  counted_miss: np.ndarray  # [T, D] bool: unmatched and not ignored (a false positive).
  num_positives: int  # Objects not ignored.


def coco_evaluation(
  ground_truths: Sequence[ImageGroundTruth],
  detections: Sequence[ImageDetections],
  class_ids: Sequence[int] | None = None,
  max_detections: tuple[int, int, int] = COCO_MAX_DETECTIONS,
) -> CocoEvaluation:
  """COCO's bounding-box AP and AR, as pycocotools' COCOeval (module docstring for the rules).

  class_ids: the classes to evaluate (COCO's category ids); default every label in the ground
  truth. Detections of other labels are ignored, as COCOeval ignores categories outside its
  ground truth's; a listed class without ground truth gives NaN. max_detections: the three
  per-image-and-class limits for AR@1/10/100 (AP uses the last).
  """
  _check_images(ground_truths, detections)
  class_ids = _default_class_ids(ground_truths) if class_ids is None else list(class_ids)
  max_detections = tuple(sorted(max_detections))
  thresholds, recall_points = COCO_IOU_THRESHOLDS, COCO_RECALL_THRESHOLDS
  shape = (len(thresholds), len(class_ids), len(COCO_AREA_RANGES), len(max_detections))
  precision = np.full(shape[:1] + (len(recall_points),) + shape[1:], np.nan)
  recall = np.full(shape, np.nan)

  for k, class_id in enumerate(class_ids):
    per_area: list[list[_ImageClassResult]] = [[] for _ in COCO_AREA_RANGES]
    for gt, det in zip(ground_truths, detections):
      gt_mask, det_mask = gt.labels == class_id, det.labels == class_id
      if not gt_mask.any() and not det_mask.any():
        continue
      order = np.argsort(-det.scores[det_mask], kind="stable")[: max_detections[-1]]
      det_boxes = _xywh(det.boxes[det_mask][order])
      det_scores = det.scores[det_mask][order]
      det_areas = det_boxes[:, 2] * det_boxes[:, 3]
      crowd, areas = gt.crowd[gt_mask], gt.areas[gt_mask]
      overlaps = _coco_iou(det_boxes, _xywh(gt.boxes[gt_mask]), crowd)
      for a, (_, low, high) in enumerate(COCO_AREA_RANGES):
        ignored = crowd | (areas < low) | (areas > high)
        matched, matched_ignored = _coco_match(overlaps, ignored, crowd, thresholds)
        outside = (det_areas < low) | (det_areas > high)
        skipped = matched_ignored | (~matched & outside[None, :])
        per_area[a].append(
          _ImageClassResult(
            det_scores, matched & ~skipped, ~matched & ~skipped, int((~ignored).sum())
          )
        )
    for a, results in enumerate(per_area):
      num_positives = sum(r.num_positives for r in results)
      if not results or num_positives == 0:
        continue
      for m, limit in enumerate(max_detections):
        scores = np.concatenate([r.scores[:limit] for r in results])
        order = np.argsort(-scores, kind="mergesort")  # COCOeval's, across images in order.
        tp = np.concatenate([r.counted_match[:, :limit] for r in results], axis=1)[:, order]
        fp = np.concatenate([r.counted_miss[:, :limit] for r in results], axis=1)[:, order]
        tp_sum = np.cumsum(tp, axis=1).astype(float)
        fp_sum = np.cumsum(fp, axis=1).astype(float)
        count = tp_sum.shape[1]
        recall[:, k, a, m] = tp_sum[:, -1] / num_positives if count else 0.0
        for t in range(len(thresholds)):
          curve_recall = tp_sum[t] / num_positives
          curve_precision = tp_sum[t] / (fp_sum[t] + tp_sum[t] + np.spacing(1))
          envelope = np.maximum.accumulate(curve_precision[::-1])[::-1]
          at = np.searchsorted(curve_recall, recall_points, side="left")
          # Recall points beyond the curve's last recall get precision 0 (COCOeval's q's zeros).
          if count:
            at_point = envelope[np.minimum(at, count - 1)]
            precision[t, :, k, a, m] = np.where(at < count, at_point, 0.0)
          else:
            precision[t, :, k, a, m] = 0.0

  return CocoEvaluation(
    _coco_stats(precision, recall, max_detections),
    precision,
    recall,
    class_ids,
    {class_id: _mean_defined(precision[:, :, k, 0, -1]) for k, class_id in enumerate(class_ids)},
  )


def _mean_defined(values: np.ndarray) -> float:
  """Mean of the entries that are not NaN (COCOeval's mean of s[s > -1]); NaN if none is."""
  defined = values[~np.isnan(values)]
  return float(np.mean(defined)) if defined.size else float("nan")


def _coco_stats(
  precision: np.ndarray, recall: np.ndarray, max_detections: tuple[int, ...]
) -> dict[str, float]:
  """COCOeval.summarize's twelve numbers."""
  iou_50, iou_75 = 0, 5  # COCO_IOU_THRESHOLDS[5] == 0.75 exactly, as COCOeval's lookup needs.
  most = len(max_detections) - 1
  areas = {name: a for a, (name, _, _) in enumerate(COCO_AREA_RANGES)}
  values = [
    _mean_defined(precision[:, :, :, areas["all"], most]),
    _mean_defined(precision[iou_50, :, :, areas["all"], most]),
    _mean_defined(precision[iou_75, :, :, areas["all"], most]),
    *(
      _mean_defined(precision[:, :, :, areas[size], most]) for size in ("small", "medium", "large")
    ),
    *(_mean_defined(recall[:, :, areas["all"], m]) for m in range(len(max_detections))),
    *(_mean_defined(recall[:, :, areas[size], most]) for size in ("small", "medium", "large")),
  ]
  return dict(zip(COCO_STAT_NAMES, values))


def coco_results(
  detections: Sequence[ImageDetections],
  image_ids: Sequence[int] | None = None,
  category_ids: Sequence[int] | Mapping[int, int] | None = None,
) -> list[dict]:
  """Detections as a COCO results list (what json.dump writes for the COCO server or loadRes):
  one {"image_id", "category_id", "bbox": [x, y, w, h], "score"} per detection, in input order.

  image_ids: each image's COCO id (default its position in `detections`). category_ids: maps a
  label to its COCO category id (a sequence indexed by label, e.g. the 80 contiguous labels to
  COCO's 91 ids, or a mapping); default the label itself.
  """
  image_ids = list(range(len(detections))) if image_ids is None else list(image_ids)
  if len(image_ids) != len(detections):
    raise ValueError(f"{len(image_ids)} image ids for {len(detections)} images")
  results = []
  for image_id, det in zip(image_ids, detections):
    for box, score, label in zip(_xywh(det.boxes), det.scores, det.labels):
      category = int(label) if category_ids is None else int(category_ids[int(label)])
      results.append(
        {
          "image_id": int(image_id),
          "category_id": category,
          "bbox": [float(v) for v in box],
          "score": float(score),
        }
      )
  return results
