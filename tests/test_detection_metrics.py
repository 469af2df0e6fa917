"""VOC and COCO average precision (vision_jax.metrics.detection) against references.

COCO: pycocotools' COCOeval (bbox) on the same detections, which our `coco_results` exports, to
within 1e-6 on every number it computes (stats, precision [T,R,K,A,M], recall [T,K,A,M]).
pycocotools 2.0.11's traps, handled in `pycocotools_evaluation` below:
  * loadRes([]) raises (it looks at anns[0]), so no detections at all needs a results COCO built
    by hand.
  * A ground-truth annotation with id 0 counts as unmatched (COCOeval stores the matched id and
    tests it for truth), so annotation ids start at 1.
  * Small/medium/large go by each annotation's stored "area", not its box, and the bounds
    (32^2, 96^2) belong to both neighbouring ranges.
  * Categories come from the ground truth's "categories" (ids need not be contiguous); detections
    of other categories are silently ignored.
  * maxDets (1, 10, 100) limits detections per image and category, not per image.
  * COCOeval sorts image ids, so ties in score across images go by image id: the images here
    have increasing ids in input order, our order for ties.
  * loadRes writes "area", "id" and "segmentation" into the result dicts it is given.
  * evaluate() and summarize() print; COCOeval reports -1 where we report NaN.

VOC: an independent, loop-by-loop port of the devkit's VOCevaldet.m and VOCap.m written here
(`devkit_average_precision`), with the choices the module documents (stable order of tied
scores, recall points exactly k/10, the +1 pixel convention optional).
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from vision_jax.metrics.detection import (
  COCO_STAT_NAMES,
  ImageDetections,
  ImageGroundTruth,
  coco_evaluation,
  coco_results,
  detections_from_batch,
  ground_truths_from_batch,
  precision_recall_curves,
  voc_average_precision_of_curve,
  voc_evaluation,
)

CLASS_IDS = (1, 3, 7, 90)  # Non-contiguous, as COCO's.
TOLERANCE = 1e-6


def image_ids_of(count: int) -> list[int]:
  return [10 * (i + 1) for i in range(count)]  # Increasing, non-contiguous, none 0.


def jittered(rng: np.random.Generator, box: np.ndarray, amount: float) -> np.ndarray:
  size = np.concatenate([box[2:] - box[:2]] * 2)
  return box + rng.normal(0, amount, 4) * size


def random_dataset(
  rng: np.random.Generator, num_images: int = 10, with_difficult: bool = False
) -> tuple[list[ImageGroundTruth], list[ImageDetections]]:
  """Realistic-looking images: objects of every size (small, medium, large), some crowds and
  difficult ones, some images without objects; detections that find most objects, some twice,
  some with the wrong class, plus false positives; a fifth of scores on a coarse grid (ties)."""
  ground_truths, detections = [], []
  for image in range(num_images):
    count = 0 if image % 4 == 3 else int(rng.integers(1, 9))
    sizes = np.exp(rng.uniform(np.log(6), np.log(250), (count, 2)))
    corners = rng.uniform(0, 400, (count, 2))
    boxes = np.concatenate([corners, corners + sizes], axis=1)
    labels = rng.choice(CLASS_IDS, count)
    crowd = rng.random(count) < 0.12
    difficult = (rng.random(count) < 0.15) if with_difficult else None
    areas = (sizes[:, 0] * sizes[:, 1]) * np.where(
      rng.random(count) < 0.5, rng.uniform(0.4, 1, count), 1
    )
    ground_truths.append(ImageGroundTruth(boxes, labels, crowd, difficult, areas))
    det_boxes, det_labels = [], []
    for box, label in zip(boxes, labels):
      for _ in range(int(rng.choice([0, 1, 1, 1, 2, 3]))):
        det_boxes.append(jittered(rng, box, 0.08))
        det_labels.append(label if rng.random() < 0.85 else rng.choice(CLASS_IDS))
    for _ in range(int(rng.integers(0, 6))):
      corner = rng.uniform(0, 400, 2)
      det_boxes.append(np.concatenate([corner, corner + rng.uniform(5, 150, 2)]))
      det_labels.append(rng.choice(CLASS_IDS))
    scores = rng.random(len(det_boxes))
    coarse = rng.random(len(det_boxes)) < 0.2
    scores[coarse] = np.round(scores[coarse], 1)
    detections.append(ImageDetections(np.reshape(det_boxes, (-1, 4)), scores, det_labels))
  return ground_truths, detections


# ------------------------------------------------------------------------------------------------
# COCO against pycocotools


def pycocotools_evaluation(
  ground_truths: list[ImageGroundTruth],
  detections: list[ImageDetections],
  class_ids=CLASS_IDS,
) -> dict:
  """COCOeval's stats, precision and recall on our data, -1 replaced by NaN."""
  pytest.importorskip("pycocotools", reason="pycocotools is the reference for COCO AP")
  from pycocotools.coco import COCO  # pylint: disable=g-import-not-at-top
  from pycocotools.cocoeval import COCOeval  # pylint: disable=g-import-not-at-top

  image_ids = image_ids_of(len(ground_truths))
  annotations = []
  for image_id, gt in zip(image_ids, ground_truths):
    for box, label, crowd, area in zip(gt.boxes, gt.labels, gt.crowd, gt.areas):
      annotations.append(
        {
          "id": len(annotations) + 1,  # Not 0: COCOeval would count annotation 0 as unmatched.
          "image_id": image_id,
          "category_id": int(label),
          "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])],
          "area": float(area),
          "iscrowd": int(crowd),
        }
      )
  dataset = {
    "images": [{"id": i, "width": 640, "height": 480} for i in image_ids],
    "categories": [{"id": c, "name": str(c)} for c in class_ids],
    "annotations": annotations,
  }
  results = coco_results(detections, image_ids)
  with contextlib.redirect_stdout(io.StringIO()):
    coco_gt = COCO()
    coco_gt.dataset = dataset
    coco_gt.createIndex()
    if results:
      coco_dt = coco_gt.loadRes(results)
    else:  # loadRes([]) raises IndexError: build the empty results object by hand.
      coco_dt = COCO()
      coco_dt.dataset = {**dataset, "annotations": []}
      coco_dt.createIndex()
    evaluator = COCOeval(coco_gt, coco_dt, "bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
  undefined_to_nan = lambda x: np.where(np.asarray(x) == -1, np.nan, x)
  return {
    "stats": undefined_to_nan(evaluator.stats),
    "precision": undefined_to_nan(evaluator.eval["precision"]),
    "recall": undefined_to_nan(evaluator.eval["recall"]),
  }


def assert_coco_parity(ground_truths, detections, class_ids=CLASS_IDS) -> float:
  """Asserts ours equals COCOeval's within TOLERANCE; returns the largest difference."""
  ours = coco_evaluation(ground_truths, detections, class_ids=class_ids)
  theirs = pycocotools_evaluation(ground_truths, detections, class_ids)
  stats = np.array([ours.stats[name] for name in COCO_STAT_NAMES])
  largest = 0.0
  for name, mine, reference in [
    ("stats", stats, theirs["stats"]),
    ("precision", ours.precision, theirs["precision"]),
    ("recall", ours.recall, theirs["recall"]),
  ]:
    assert mine.shape == reference.shape, name
    np.testing.assert_array_equal(np.isnan(mine), np.isnan(reference), err_msg=name)
    np.testing.assert_allclose(mine, reference, atol=TOLERANCE, rtol=0, err_msg=name)
    largest = max(largest, float(np.nanmax(np.abs(mine - reference), initial=0.0)))
  return largest


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_coco_matches_pycocotools_on_random_realistic_detections(seed):
  rng = np.random.default_rng(seed)
  ground_truths, detections = random_dataset(rng)
  ours = coco_evaluation(ground_truths, detections, class_ids=CLASS_IDS)
  assert 0.05 < ours.stats["AP"] < 0.95, "the case should be neither trivial nor hopeless"
  assert not np.isnan(ours.stats["AP_small"]) and not np.isnan(ours.stats["AP_large"])
  assert assert_coco_parity(ground_truths, detections) <= TOLERANCE


def test_coco_matches_pycocotools_with_many_tied_scores_and_overlapping_detections():
  """Every score on one of three values, and detections piled on one another: which detection
  takes an object, and the order of true and false positives, hang on the order of ties."""
  rng = np.random.default_rng(11)
  ground_truths, detections = random_dataset(rng, num_images=8)
  for det in detections:
    det.scores = rng.choice([0.3, 0.6, 0.9], len(det.scores))
  piled = np.array([[100, 100, 160, 150], [105, 98, 162, 155], [96, 103, 150, 148.0]])
  ground_truths[0] = ImageGroundTruth(piled[:2], [3, 3])
  detections[0] = ImageDetections(np.repeat(piled, 3, axis=0), np.full(9, 0.6), np.full(9, 3))
  assert assert_coco_parity(ground_truths, detections) <= TOLERANCE


def test_coco_matches_pycocotools_without_any_detection():
  rng = np.random.default_rng(12)
  ground_truths, _ = random_dataset(rng, num_images=5)
  nothing = [ImageDetections(np.zeros((0, 4)), [], []) for _ in ground_truths]
  assert assert_coco_parity(ground_truths, nothing) == 0
  ours = coco_evaluation(ground_truths, nothing, class_ids=CLASS_IDS)
  assert ours.stats["AP"] == 0 and ours.stats["AR100"] == 0


def test_coco_matches_pycocotools_on_images_without_ground_truth_and_absent_classes():
  """Detections on images without objects are false positives; a class with no ground truth
  (90 here) is left out of the means (COCOeval: -1, ours: NaN), and so is a size without
  objects."""
  boxes = np.array([[10, 10, 50, 60], [200, 200, 400, 380.0]])
  ground_truths = [ImageGroundTruth(boxes, [1, 3]), ImageGroundTruth(np.zeros((0, 4)), [])]
  detections = [
    ImageDetections(boxes + 1, [0.9, 0.8], [1, 3]),
    ImageDetections(boxes[:1] + 5, [0.95], [1]),
  ]
  assert assert_coco_parity(ground_truths, detections, class_ids=(1, 3, 90)) <= TOLERANCE
  ours = coco_evaluation(ground_truths, detections, class_ids=(1, 3, 90))
  assert np.isnan(ours.average_precision[90]) and np.isnan(ours.stats["AP_small"])
  assert ours.average_precision[3] == pytest.approx(1.0)
  assert ours.average_precision[1] < 1  # Its false positive on the empty image scores highest.


def test_coco_matches_pycocotools_on_crowds():
  """Detections inside a crowd region are ignored, however many (a crowd can be matched again),
  as long as the detection lies mostly inside it (IoU with a crowd is over the detection's area)."""
  crowd_box = np.array([0, 0, 300, 200.0])
  person = np.array([320, 10, 380, 150.0])
  ground_truths = [ImageGroundTruth(np.stack([crowd_box, person]), [1, 1], crowd=[True, False])]
  inside = np.array([[10, 10, 60, 90], [100, 20, 160, 120], [200, 50, 260, 190.0]])
  straddling = np.array([[280, 20, 340, 150.0]])
  boxes = np.concatenate([inside, straddling, person[None] + 2])
  detections = [ImageDetections(boxes, [0.99, 0.98, 0.97, 0.96, 0.5], [1] * 5)]
  assert assert_coco_parity(ground_truths, detections, class_ids=(1,)) <= TOLERANCE
  ours = coco_evaluation(ground_truths, detections, class_ids=(1,))
  # Three ignored, the straddling one a false positive before the true positive: AP50 = 1/2.
  assert ours.stats["AP50"] == pytest.approx(0.5, abs=1e-9)


def test_coco_matches_pycocotools_beyond_100_detections_per_image():
  """maxDets counts per image and class: 150 detections of one class in an image, the true
  positives spread through the ranking, make AR@1 < AR@10 < AR@100 < the recall of all 150."""
  rng = np.random.default_rng(13)
  corners = rng.uniform(0, 900, (40, 2))
  objects = np.concatenate([corners, corners + rng.uniform(20, 90, (40, 2))], axis=1)
  hits = np.stack([jittered(rng, box, 0.03) for box in objects])
  corners = rng.uniform(0, 900, (110, 2))
  misses = np.concatenate([corners, corners + 3], axis=1)  # Tiny boxes that overlap nothing.
  scores = rng.permutation(150) / 150.0
  ground_truths = [
    ImageGroundTruth(objects, [7] * 40),
    ImageGroundTruth(objects[:5], [3] * 5),
  ]
  detections = [
    ImageDetections(np.concatenate([hits, misses]), scores, [7] * 150),
    ImageDetections(objects[:5] + 1, [0.5] * 5, [3] * 5),
  ]
  assert assert_coco_parity(ground_truths, detections, class_ids=(3, 7)) <= TOLERANCE
  ours = coco_evaluation(ground_truths, detections, class_ids=(3, 7))
  ar = [ours.recall[0, 1, 0, m] for m in range(3)]  # IoU 0.5, class 7, all areas.
  hits_in_top_100 = int(np.sum(np.argsort(-scores, kind="stable")[:100] < 40))
  assert ar[0] < ar[1] < ar[2] < 1
  assert ar[2] == pytest.approx(hits_in_top_100 / 40)


def test_coco_prefers_a_counted_object_to_a_better_overlapping_crowd():
  """A person in a crowd: the detection overlaps the crowd fully (IoU over its own area: 1) and
  the person at 0.8; COCOeval takes the person, so the detection is a true positive."""
  crowd_box, person = np.array([0, 0, 300, 200.0]), np.array([100, 50, 140, 150.0])
  ground_truths = [ImageGroundTruth(np.stack([crowd_box, person]), [1, 1], crowd=[True, False])]
  detections = [ImageDetections([person + [0, 0, 0, 25]], [0.9], [1])]  # IoU 100/125 = 0.8.
  assert assert_coco_parity(ground_truths, detections, class_ids=(1,)) <= TOLERANCE
  assert coco_evaluation(ground_truths, detections, class_ids=(1,)).stats["AP50"] == pytest.approx(
    1
  )


# Objects A and B and a detection D1 between them with equal IoU (9/11) with each; a later
# detection D2 overlaps A at 9/11 but B at only 7/13.
TIED_OBJECTS = np.array([[0, 0, 10, 10], [2, 0, 12, 10.0]])
TIED_DETECTIONS = np.array([[1, 0, 11, 10], [-1, 0, 9, 10.0]])


def test_coco_gives_an_equal_overlap_to_the_last_object_as_cocoeval():
  """COCOeval's scan (`if iou < best: continue`) leaves D1 on the last of equal IoUs, B, so D2
  takes A: two true positives up to IoU 0.8. Taking the first (A) would leave D2 only B, a miss
  above IoU 0.55."""
  ground_truths = [ImageGroundTruth(TIED_OBJECTS, [1, 1])]
  detections = [ImageDetections(TIED_DETECTIONS, [0.9, 0.8], [1, 1])]
  assert assert_coco_parity(ground_truths, detections, class_ids=(1,)) <= TOLERANCE
  assert coco_evaluation(ground_truths, detections, class_ids=(1,)).stats["AP75"] == pytest.approx(
    1
  )


def test_coco_object_sizes_use_the_given_areas_and_include_the_bounds():
  """An object whose stored area is 32^2 exactly is both small and medium (COCOeval's closed
  ranges); a large box with a small stored area (a thin segment) counts as small."""
  boxes = np.array([[0, 0, 32, 32], [100, 100, 300, 300.0]])
  ground_truths = [ImageGroundTruth(boxes, [1, 1], areas=[1024.0, 500.0])]
  detections = [ImageDetections(boxes, [0.9, 0.8], [1, 1])]
  assert assert_coco_parity(ground_truths, detections, class_ids=(1,)) <= TOLERANCE
  ours = coco_evaluation(ground_truths, detections, class_ids=(1,))
  assert ours.stats["AP_small"] == pytest.approx(1.0) and ours.stats["AP_medium"] == pytest.approx(
    1
  )
  assert np.isnan(ours.stats["AP_large"])  # The 200 x 200 box's area says small.


def test_coco_results_is_the_json_of_the_detections():
  det = ImageDetections(np.array([[10, 20, 40.5, 60], [0, 0, 1, 2]]), [0.7, 0.2], [0, 2])
  results = coco_results([ImageDetections(np.zeros((0, 4)), [], []), det], [5, 9], [1, 2, 3])
  assert json.loads(json.dumps(results)) == [
    {"image_id": 9, "category_id": 1, "bbox": [10.0, 20.0, 30.5, 40.0], "score": 0.7},
    {"image_id": 9, "category_id": 3, "bbox": [0.0, 0.0, 1.0, 2.0], "score": 0.2},
  ]
  assert coco_results([det])[1]["category_id"] == 2 and coco_results([det])[1]["image_id"] == 0
  with pytest.raises(ValueError, match="image ids"):
    coco_results([det], [1, 2])


def test_padded_batches_give_the_same_evaluation_as_per_image_lists():
  rng = np.random.default_rng(14)
  ground_truths, detections = random_dataset(rng, num_images=4)
  width_g = max(len(gt.boxes) for gt in ground_truths) + 2
  width_d = max(len(det.boxes) for det in detections) + 3

  def pad(rows: list[np.ndarray], width: int, fill=0) -> np.ndarray:
    return np.stack(
      [np.concatenate([r, np.full((width - len(r),) + r.shape[1:], fill)]) for r in rows]
    )

  gt_valid = pad([np.ones(len(gt.boxes), bool) for gt in ground_truths], width_g, False)
  det_valid = pad([np.ones(len(d.boxes), bool) for d in detections], width_d, False)
  batched_gt = ground_truths_from_batch(
    pad([gt.boxes for gt in ground_truths], width_g, 5),
    pad([gt.labels for gt in ground_truths], width_g, 1),
    gt_valid.astype(bool),
    crowd=pad([gt.crowd for gt in ground_truths], width_g, False),
    areas=pad([gt.areas for gt in ground_truths], width_g, 1.0),
  )
  batched_det = detections_from_batch(
    pad([d.boxes for d in detections], width_d, 5),
    pad([d.scores for d in detections], width_d, 2.0),  # Padding with the best score of all.
    pad([d.labels for d in detections], width_d, 1),
    det_valid.astype(bool),
  )
  expected = coco_evaluation(ground_truths, detections, class_ids=CLASS_IDS)
  got = coco_evaluation(batched_gt, batched_det, class_ids=CLASS_IDS)
  np.testing.assert_array_equal(got.precision, expected.precision)
  assert voc_evaluation(batched_gt, batched_det).average_precision == pytest.approx(
    voc_evaluation(ground_truths, detections).average_precision, nan_ok=True
  )
  with pytest.raises(ValueError, match="one ImageDetections per"):
    coco_evaluation(ground_truths, detections[:-1])


# ------------------------------------------------------------------------------------------------
# VOC against a straightforward port of the devkit


def devkit_average_precision(
  ground_truths, detections, class_id, iou_threshold, eleven_point, inclusive
) -> float:
  """VOCevaldet.m and VOCap.m for one class, loop by loop (stable sort of scores)."""
  plus = 1.0 if inclusive else 0.0
  objects = {}
  npos = 0
  for image, gt in enumerate(ground_truths):
    rows = [i for i in range(len(gt.labels)) if gt.labels[i] == class_id]
    objects[image] = {
      "boxes": [gt.boxes[i] for i in rows],
      "difficult": [bool(gt.difficult[i]) for i in rows],
      "detected": [False] * len(rows),
    }
    npos += sum(not gt.difficult[i] for i in rows)
  found = []
  for image, det in enumerate(detections):
    found += [
      (float(det.scores[i]), image, det.boxes[i])
      for i in range(len(det.labels))
      if det.labels[i] == class_id
    ]
  found = sorted(found, key=lambda entry: -entry[0])  # sorted() is stable.
  tp, fp = [0.0] * len(found), [0.0] * len(found)
  for d, (_, image, bb) in enumerate(found):
    gt = objects[image]
    ovmax, jmax = -np.inf, -1
    for j, bbgt in enumerate(gt["boxes"]):
      iw = min(bb[2], bbgt[2]) - max(bb[0], bbgt[0]) + plus
      ih = min(bb[3], bbgt[3]) - max(bb[1], bbgt[1]) + plus
      if iw > 0 and ih > 0:
        ua = (
          (bb[2] - bb[0] + plus) * (bb[3] - bb[1] + plus)
          + (bbgt[2] - bbgt[0] + plus) * (bbgt[3] - bbgt[1] + plus)
          - iw * ih
        )
        ov = iw * ih / ua
        if ov > ovmax:
          ovmax, jmax = ov, j
    if ovmax >= iou_threshold:
      if not gt["difficult"][jmax]:
        if not gt["detected"][jmax]:
          tp[d] = 1.0
          gt["detected"][jmax] = True
        else:
          fp[d] = 1.0
    else:
      fp[d] = 1.0
  if npos == 0:
    return float("nan")
  rec, prec, tp_sum, fp_sum = [], [], 0.0, 0.0
  for t, f in zip(tp, fp):
    tp_sum, fp_sum = tp_sum + t, fp_sum + f
    rec.append(tp_sum / npos)
    prec.append(tp_sum / (tp_sum + fp_sum) if tp_sum + fp_sum > 0 else 0.0)
  if eleven_point:
    ap = 0.0
    for k in range(11):
      at_least = [p for r, p in zip(rec, prec) if r >= k / 10]
      ap += (max(at_least) if at_least else 0.0) / 11
    return ap
  mrec, mpre = [0.0] + rec + [1.0], [0.0] + prec + [0.0]
  for i in range(len(mpre) - 2, -1, -1):
    mpre[i] = max(mpre[i], mpre[i + 1])
  return sum(
    (mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1]
  )


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
  "iou_threshold, eleven_point, inclusive",
  [(0.5, False, False), (0.5, True, True), (0.7, False, True)],
)
def test_voc_matches_a_straightforward_port_of_the_devkit(
  seed, iou_threshold, eleven_point, inclusive
):
  rng = np.random.default_rng(100 + seed)
  ground_truths, detections = random_dataset(rng, with_difficult=True)
  if inclusive:  # Whole-pixel boxes, as VOC's annotations, so that IoUs of exactly 0.5 occur.
    for item in ground_truths + detections:
      item.boxes = np.round(item.boxes)
  ours = voc_evaluation(
    ground_truths, detections, iou_threshold, eleven_point, inclusive, class_ids=CLASS_IDS
  )
  expected = {
    c: devkit_average_precision(
      ground_truths, detections, c, iou_threshold, eleven_point, inclusive
    )
    for c in CLASS_IDS
  }
  assert ours.average_precision == pytest.approx(expected, abs=1e-12, nan_ok=True)
  assert 0.05 < ours.mean_average_precision < 0.95
  assert ours.mean_average_precision == pytest.approx(
    np.nanmean(list(expected.values())), abs=1e-12
  )


def test_voc_second_detection_of_an_object_is_a_false_positive_and_difficult_ones_are_neither():
  boxes = np.array([[0, 0, 10, 10], [50, 50, 70, 80.0]])
  ground_truths = [ImageGroundTruth(boxes, [0, 0], difficult=[False, True])]
  detections = [ImageDetections([boxes[1], boxes[0], boxes[0] + 1], [0.9, 0.8, 0.7], [0, 0, 0])]
  curve = precision_recall_curves(ground_truths, detections)[0]
  assert curve.num_positives == 1
  assert curve.true_positive.tolist() == [False, True, False]
  assert curve.false_positive.tolist() == [False, False, True]  # The first is on a difficult box.
  np.testing.assert_allclose(curve.precision, [0, 1, 0.5])
  np.testing.assert_allclose(curve.recall, [0, 1, 1])
  np.testing.assert_allclose(curve.scores, [0.9, 0.8, 0.7])
  # Difficult neither counts nor penalises: AP is 1 (it would be 1/2 were the first a miss).
  assert voc_evaluation(ground_truths, detections).average_precision[0] == 1.0


def test_voc_gives_an_equal_overlap_to_the_first_object_as_the_devkit():
  """VOCevaldet.m keeps the first of equal overlaps (`if ov > ovmax`): D1 takes A; D2's best
  overlap is then A, already detected, so D2 is a false positive (VOC does not look further)."""
  ground_truths = [ImageGroundTruth(TIED_OBJECTS, [1, 1])]
  detections = [ImageDetections(TIED_DETECTIONS, [0.9, 0.8], [1, 1])]
  curve = precision_recall_curves(ground_truths, detections)[1]
  assert curve.true_positive.tolist() == [True, False]
  assert voc_evaluation(ground_truths, detections).average_precision[1] == 0.5


def test_voc_plus_one_pixel_convention_and_an_iou_equal_to_the_threshold():
  """(0,0)-(9,9) and (0,0)-(9,19) as inclusive pixels are 10x10 and 10x20: IoU exactly 0.5, which
  matches (the devkit's >=). As continuous coordinates the IoU is 81/171 < 0.5: no match."""
  ground_truths = [ImageGroundTruth([[0, 0, 9, 9]], [0])]
  detections = [ImageDetections([[0, 0, 9, 19]], [0.5], [0])]
  inclusive = voc_evaluation(ground_truths, detections, inclusive_coordinates=True)
  continuous = voc_evaluation(ground_truths, detections, inclusive_coordinates=False)
  assert inclusive.average_precision[0] == 1.0 and continuous.average_precision[0] == 0.0


def test_voc_eleven_point_counts_a_recall_of_exactly_three_tenths():
  """Three true positives of ten objects reach recall 3/10 exactly; the 11-point mean counts the
  points 0, 0.1, 0.2, 0.3 (4/11). np.arange(0, 1.1, 0.1)'s 0.30000000000000004 would give 3/11."""
  objects = np.array([[20 * i, 0, 20 * i + 10, 10] for i in range(10)], np.float64)
  ground_truths = [ImageGroundTruth(objects, [0] * 10)]
  detections = [ImageDetections(objects[:3], [0.9, 0.8, 0.7], [0, 0, 0])]
  ap = voc_evaluation(ground_truths, detections, eleven_point=True).average_precision[0]
  assert ap == pytest.approx(4 / 11, abs=1e-12)
  assert voc_evaluation(ground_truths, detections).average_precision[0] == pytest.approx(0.3)


def test_voc_tied_scores_are_taken_in_input_order():
  """Two detections at one score, a miss (first image) then a hit (second): precision 0 then 1/2,
  AP 1/2. Taken the other way round it would be 1."""
  box = np.array([[0, 0, 10, 10.0]])
  ground_truths = [ImageGroundTruth(np.zeros((0, 4)), []), ImageGroundTruth(box, [0])]
  detections = [ImageDetections(box, [0.5], [0]), ImageDetections(box, [0.5], [0])]
  result = voc_evaluation(ground_truths, detections)
  np.testing.assert_allclose(result.curves[0].precision, [0, 0.5])
  assert result.average_precision[0] == 0.5
  swapped = voc_evaluation(ground_truths[::-1], detections[::-1])
  assert swapped.average_precision[0] == 1.0


def test_voc_class_without_positives_is_nan_and_left_out_of_the_mean():
  box = np.array([[0, 0, 10, 10.0]])
  ground_truths = [
    ImageGroundTruth(np.concatenate([box, box + 50]), [0, 1], difficult=[False, True])
  ]
  detections = [ImageDetections(box, [0.5], [0])]
  result = voc_evaluation(ground_truths, detections, class_ids=[0, 1, 2])
  assert result.average_precision[0] == 1.0
  assert np.isnan(result.average_precision[1]) and np.isnan(result.average_precision[2])
  assert result.mean_average_precision == 1.0
  assert np.isnan(result.curves[2].recall).all() and len(result.curves[2].recall) == 0


def test_voc_average_precision_of_a_curve_by_hand():
  recall, precision = np.array([0.25, 0.5, 0.5, 0.75]), np.array([1.0, 1.0, 2 / 3, 0.75])
  # Envelope 1 up to recall 0.5, then 0.75 up to 0.75, then nothing: 0.5 + 0.25 * 0.75.
  assert voc_average_precision_of_curve(recall, precision) == pytest.approx(0.6875)
  # 11-point: t = 0..0.5 -> 1 (6 points), t = 0.6, 0.7 -> 0.75, t >= 0.8 -> 0.
  assert voc_average_precision_of_curve(recall, precision, True) == pytest.approx(7.5 / 11)
