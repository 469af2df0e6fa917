"""YOLOv1: its target encoding, its loss against a hand computation term by term, where the loss's
gradients go, decoding back to boxes; its networks' sizes against the paper's layer list, and a
small detector trained end to end."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vision_jax.detection.boxes import box_iou
from vision_jax.errors import ConfigError
from vision_jax.losses.yolo import yolo_decode, yolo_loss, yolo_targets
from vision_jax.models import get_model
from vision_jax.models.yolo import YOLOV1_STAGES

pytestmark = pytest.mark.usefixtures("fast_compilation")

# One object in a 100x100 image, S=2, B=2, C=2: box (10, 60)-(50, 100), class 1. Its centre
# (30, 80) lies in row 1, column 0, at offsets (0.6, 0.6); its size is 0.4 x 0.4 of the image.
OBJECT_BOXES = np.array([[10.0, 60.0, 50.0, 100.0], [0, 0, 0, 0]], np.float32)
OBJECT_LABELS = np.array([1, 0])
OBJECT_VALID = np.array([True, False])


def _hand_predictions() -> np.ndarray:
  """[S, S, 12]: per cell, two boxes of (x, y, sqrt w, sqrt h, confidence), two class scores."""
  p = np.zeros((2, 2, 12), np.float32)
  p[..., :10] = 0.5
  p[..., 10:] = 0.3
  p[1, 0] = [0.5, 0.5, 0.6, 0.6, 0.7, 0.1, 0.1, 0.2, 0.2, 0.3, 0.2, 0.9]
  p[0, 0, [4, 9]] = 0.1, 0.2
  p[0, 1, [4, 9]] = 0.3, -0.4
  p[1, 1, [4, 9]] = 0.5, 0.1
  return p


def test_targets_of_one_object():
  targets = yolo_targets(OBJECT_BOXES, OBJECT_LABELS, OBJECT_VALID, 100, 2, 2)
  np.testing.assert_array_equal(targets.object_mask, [[False, False], [True, False]])
  np.testing.assert_allclose(targets.boxes[1, 0], [0.6, 0.6, 0.4, 0.4], rtol=1e-6)
  np.testing.assert_array_equal(targets.classes[1, 0], [0, 1])
  assert not np.any(targets.boxes[0]) and not np.any(targets.classes[0])
  assert targets.num_dropped == 0


def test_targets_of_a_rectangular_image_by_row_and_column():
  """(height, width) = (100, 200), S=4: cells are 50 wide and 25 high. The boxes' centres are
  (150, 25) and (200, 100): on the far edges, the second belongs to the last cell."""
  boxes = np.array([[100, 0, 200, 50], [150, 50, 250, 150]], np.float32)
  targets = yolo_targets(boxes, np.array([0, 1]), np.array([True, True]), (100, 200), 4, 2)
  assert set(zip(*np.nonzero(np.asarray(targets.object_mask)))) == {(1, 3), (3, 3)}
  np.testing.assert_allclose(targets.boxes[1, 3], [0.0, 0.0, 0.5, 0.5])
  np.testing.assert_allclose(targets.boxes[3, 3], [1.0, 1.0, 0.5, 1.0])


@pytest.mark.parametrize("order", [[0, 1, 2], [2, 1, 0]])
def test_objects_sharing_a_cell_the_largest_wins_and_the_rest_are_counted(order):
  boxes = np.array([[10, 10, 30, 30], [0, 0, 40, 40], [12, 12, 28, 28]], np.float32)[order]
  labels = np.array([0, 1, 2])[order]
  targets = yolo_targets(boxes, labels, np.ones(3, bool), 100, 2, 3)
  assert targets.object_mask.sum() == 1 and targets.num_dropped == 2
  np.testing.assert_array_equal(targets.classes[0, 0], [0, 1, 0])  # The 40x40 box.
  # Equal areas: the first. Padding (valid False) never takes a cell, however large.
  boxes = np.array([[0, 0, 100, 100], [10, 10, 30, 30], [12, 12, 32, 32]], np.float32)
  targets = yolo_targets(boxes, np.array([0, 1, 2]), np.array([False, True, True]), 100, 2, 3)
  np.testing.assert_array_equal(targets.classes[0, 0], [0, 1, 0])
  assert targets.num_dropped == 1 and targets.object_mask.sum() == 1


def test_targets_batch_and_empty_images():
  targets = yolo_targets(
    np.stack([OBJECT_BOXES, OBJECT_BOXES]),
    np.stack([OBJECT_LABELS] * 2),
    [[True, False]] * 2,
    100,
    2,
    2,
  )
  assert targets.object_mask.shape == (2, 2, 2) and targets.num_dropped.shape == (2,)
  targets = yolo_targets(
    np.zeros((3, 0, 4)), np.zeros((3, 0), int), np.zeros((3, 0), bool), 100, 2, 2
  )
  assert targets.boxes.shape == (3, 2, 2, 4) and not np.any(targets.object_mask)


def test_loss_against_a_hand_computation_term_by_term():
  """Image 0 holds the object; image 1 none. Every term is summed over cells and averaged over
  the batch of two."""
  targets = yolo_targets(
    np.stack([OBJECT_BOXES, OBJECT_BOXES]),
    np.stack([OBJECT_LABELS] * 2),
    [[True, False], [False, False]],
    100,
    2,
    2,
  )
  empty = np.zeros((2, 2, 12), np.float32)
  empty[..., 10:] = 0.8  # No object anywhere: class scores cost nothing.
  empty[0, 1, 9] = 0.6
  losses = yolo_loss(np.stack([_hand_predictions(), empty]), targets)

  # Predictor 0 of cell (1, 0): centre ((0 + 0.5) / 2, (1 + 0.5) / 2) = (0.25, 0.75), size
  # 0.6^2 = 0.36: corners (0.07, 0.57)-(0.43, 0.93); the object's are (0.1, 0.6)-(0.5, 1.0).
  iou = (0.33 * 0.33) / (0.36**2 + 0.4**2 - 0.33 * 0.33)
  # Predictor 1: centre (0.05, 0.55), size 0.04: no overlap, so predictor 0 is responsible.
  image0 = {
    "xy": 5 * ((0.5 - 0.6) ** 2 + (0.5 - 0.6) ** 2),
    "wh": 5 * 2 * (0.6 - math.sqrt(0.4)) ** 2,
    "object_confidence": (0.7 - iou) ** 2,
    # Predictor 1 of the object's cell, then both of each empty cell.
    "no_object_confidence": 0.5 * (0.3**2 + 0.1**2 + 0.2**2 + 0.3**2 + 0.4**2 + 0.5**2 + 0.1**2),
    "class": (0.2 - 0) ** 2 + (0.9 - 1) ** 2,
  }
  image1 = {"no_object_confidence": 0.5 * 0.6**2}
  assert set(losses) == set(image0)
  for name, value in image0.items():
    np.testing.assert_allclose(
      losses[name], (value + image1.get(name, 0)) / 2, rtol=1e-5, err_msg=name
    )


LOSS_TERMS = ("xy", "wh", "object_confidence", "no_object_confidence", "class")


@jax.jit
def _gradients(predictions: jnp.ndarray) -> dict[str, jnp.ndarray]:
  """Each loss term's gradient with respect to predictions [1, 2, 2, 12] of the one object."""
  targets = yolo_targets(OBJECT_BOXES[None], OBJECT_LABELS[None], OBJECT_VALID[None], 100, 2, 2)
  return {n: jax.grad(lambda p, n=n: yolo_loss(p, targets)[n])(predictions) for n in LOSS_TERMS}


def _gradient_slots(predictions: np.ndarray) -> dict[str, set]:
  """The (row, column, channel) slots of one image's predictions [S, S, 12] where each term's
  gradient is not zero."""
  grads = _gradients(jnp.asarray(predictions[None]))
  return {
    n: set(zip(*(i.tolist() for i in np.nonzero(np.asarray(g[0]))))) for n, g in grads.items()
  }


def _expected_slots(responsible: int) -> dict[str, set]:
  box = 5 * responsible
  confidences = {(r, c, k) for r in (0, 1) for c in (0, 1) for k in (4, 9)}
  return {
    "xy": {(1, 0, box), (1, 0, box + 1)},
    "wh": {(1, 0, box + 2), (1, 0, box + 3)},
    "object_confidence": {(1, 0, box + 4)},  # The IoU target passes no gradient to the box.
    "no_object_confidence": confidences - {(1, 0, box + 4)},
    "class": {(1, 0, 10), (1, 0, 11)},  # Only the object's cell.
  }


def test_gradients_reach_only_the_responsible_slots():
  assert _gradient_slots(_hand_predictions()) == _expected_slots(responsible=0)


def test_the_predictor_of_highest_iou_is_responsible():
  p = _hand_predictions()
  p[1, 0, 5:10] = [0.58, 0.62, 0.62, 0.64, 0.2]  # Predictor 1 now nearly the object: IoU 0.91.
  assert _gradient_slots(p) == _expected_slots(responsible=1)


def test_without_overlap_the_nearest_predictor_is_responsible():
  """Where neither predictor overlaps the object, darknet's rule: the nearest in (x, y, w, h)."""
  p = _hand_predictions()
  p[1, 0, 0:4] = [0.0, 0.0, 0.1, 0.1]  # Centre (0, 0.5) of the image, 0.01 wide: far off.
  p[1, 0, 5:9] = [0.1, 0.62, 0.1, 0.1]  # Centre (0.05, 0.81): left of the object, but nearer.
  assert _gradient_slots(p) == _expected_slots(responsible=1)


def _perfect_predictions(targets, boxes_per_cell: int) -> np.ndarray:
  """What a perfect network predicts: in each object's cell, predictor 0 is the object with
  confidence 1 and the others have confidence 0; class scores are the one-hot class."""
  b = boxes_per_cell
  shape = targets.object_mask.shape + (5 * b + targets.classes.shape[-1],)
  p = np.zeros(shape, np.float32)
  p[..., 0:2] = targets.boxes[..., 0:2]
  p[..., 2:4] = np.sqrt(targets.boxes[..., 2:4])
  p[..., 4] = targets.object_mask
  p[..., 5 * b :] = targets.classes
  return p


def _assert_detected(detections, image: int, boxes: np.ndarray, labels: np.ndarray, min_iou: float):
  valid = np.asarray(detections["valid"][image])
  found = np.asarray(detections["boxes"][image])[valid]
  assert valid.sum() == len(boxes)
  iou = np.asarray(box_iou(jnp.asarray(boxes), jnp.asarray(found)))
  match = iou.argmax(axis=1)
  assert np.all(iou.max(axis=1) > min_iou), iou
  np.testing.assert_array_equal(np.asarray(detections["labels"][image])[valid][match], labels)


# (height, width) = (120, 200), S=4, C=3: four objects, each in its own cell; image 1 has one.
GROUND_TRUTH = np.array(
  [
    [[10, 5, 60, 40], [120, 20, 190, 110], [70, 70, 110, 100], [0, 90, 30, 120]],
    [[50, 40, 150, 80], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]],
  ],
  np.float32,
)
GROUND_TRUTH_LABELS = np.array([[0, 2, 1, 2], [1, 0, 0, 0]])
GROUND_TRUTH_VALID = np.array([[True] * 4, [True, False, False, False]])


def test_decoding_a_perfect_prediction_gives_back_the_ground_truth():
  targets = yolo_targets(GROUND_TRUTH, GROUND_TRUTH_LABELS, GROUND_TRUTH_VALID, (120, 200), 4, 3)
  assert np.all(targets.num_dropped == 0)
  predictions = _perfect_predictions(targets, boxes_per_cell=2)
  predictions[0, 0, 0, 5:10] = predictions[0, 0, 0, 0:5]  # A duplicate, for NMS to remove.
  decode = jax.jit(yolo_decode, static_argnums=(1, 2), static_argnames="max_detections")
  detections = decode(predictions, 3, (120, 200), max_detections=6)
  assert detections["boxes"].shape == (2, 6, 4) and detections["labels"].dtype == jnp.int32
  for image in range(2):
    valid = GROUND_TRUTH_VALID[image]
    _assert_detected(
      detections, image, GROUND_TRUTH[image][valid], GROUND_TRUTH_LABELS[image][valid], 0.99
    )
  np.testing.assert_allclose(np.asarray(detections["scores"])[detections["valid"]], 1.0)
  invalid = ~np.asarray(detections["valid"])
  assert not np.any(np.asarray(detections["boxes"])[invalid]) and not np.any(
    np.asarray(detections["scores"])[invalid]
  )


def test_decoding_scores_classes_by_confidence_times_class_score_and_thresholds():
  """One box scoring 0.8 x (0.5, 0.25, 0.125): every class above the threshold is a detection
  (NMS works within a class); max_detections keeps the best."""
  predictions = np.zeros((1, 2, 2, 2 * 5 + 3), np.float32)
  predictions[0, 0, 1, :5] = [0.5, 0.5, 0.5, 0.5, 0.8]
  predictions[0, 0, 1, 10:] = [0.5, 0.25, 0.125]
  detections = yolo_decode(predictions, 3, 100, score_threshold=0.15)
  valid = np.asarray(detections["valid"][0])
  np.testing.assert_allclose(np.asarray(detections["scores"][0])[valid], [0.4, 0.2])
  np.testing.assert_array_equal(np.asarray(detections["labels"][0])[valid], [0, 1])
  np.testing.assert_allclose(detections["boxes"][0, 0], [62.5, 12.5, 87.5, 37.5])
  assert (
    yolo_decode(predictions, 3, 100, score_threshold=0.15, max_detections=1)["valid"].sum() == 1
  )


def test_minimising_the_loss_over_the_predictions_recovers_the_boxes():
  """The encoding, the loss and the decoding agree: gradient descent on the raw predictions of
  a batch, from noise, ends at predictions that decode to the ground truth."""
  targets = yolo_targets(GROUND_TRUTH, GROUND_TRUTH_LABELS, GROUND_TRUTH_VALID, (120, 200), 4, 3)
  optimizer = optax.adam(0.05)

  def step(carry, _):
    predictions, opt_state = carry
    grads = jax.grad(lambda p: sum(yolo_loss(p, targets).values()))(predictions)
    updates, opt_state = optimizer.update(grads, opt_state)
    return (optax.apply_updates(predictions, updates), opt_state), None

  noise = 0.1 * jax.random.normal(jax.random.key(0), (2, 4, 4, 13))
  (predictions, _), _ = jax.jit(lambda p: jax.lax.scan(step, (p, optimizer.init(p)), length=300))(
    noise
  )
  assert sum(yolo_loss(predictions, targets).values()) < 1e-3
  detections = yolo_decode(predictions, 3, (120, 200), score_threshold=0.5)
  for image in range(2):
    valid = GROUND_TRUTH_VALID[image]
    _assert_detected(
      detections, image, GROUND_TRUTH[image][valid], GROUND_TRUTH_LABELS[image][valid], 0.95
    )


# The paper's Figure 3, written out again here so that the model is checked against it:
# (kernel, in channels, out channels, stride) of the 24 convolutions, "pool" for a 2x2 max pool.
FIGURE_3 = (
  [(7, 3, 64, 2), "pool", (3, 64, 192, 1), "pool"]
  + [(1, 192, 128, 1), (3, 128, 256, 1), (1, 256, 256, 1), (3, 256, 512, 1), "pool"]
  + [(1, 512, 256, 1), (3, 256, 512, 1)] * 4
  + [(1, 512, 512, 1), (3, 512, 1024, 1), "pool"]
  + [(1, 1024, 512, 1), (3, 512, 1024, 1)] * 2
  + [(3, 1024, 1024, 1), (3, 1024, 1024, 2), (3, 1024, 1024, 1), (3, 1024, 1024, 1)]
)
FAST_YOLO = [(3, 3, 16, 1), "pool", (3, 16, 32, 1), "pool", (3, 32, 64, 1), "pool"]
FAST_YOLO += [(3, 64, 128, 1), "pool", (3, 128, 256, 1), "pool", (3, 256, 512, 1), "pool"]
FAST_YOLO += [(3, 512, 1024, 1), (3, 1024, 1024, 1), (3, 1024, 1024, 1)]


def _conv_parameters(layers) -> int:
  return sum(
    k * k * c_in * c_out + c_out for k, c_in, c_out, _ in (l for l in layers if l != "pool")
  )


def _param_count(model, size: int) -> int:
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, size, size, 3)))
  return sum(math.prod(p.shape) for p in jax.tree.leaves(shapes["params"]))


@pytest.mark.parametrize("name,layers", [("yolov1", FIGURE_3), ("fast_yolo", FAST_YOLO)])
def test_parameter_count_at_the_papers_configuration(name, layers):
  """448x448, S=7, B=2, C=20, the 4096 hidden layer: shapes only, nothing materialised."""
  assert len([l for l in layers if l != "pool"]) == {"yolov1": 24, "fast_yolo": 9}[name]
  head = (7 * 7 * 1024 * 4096 + 4096) + (4096 * 7 * 7 * 30 + 7 * 7 * 30)
  expected = _conv_parameters(layers) + head
  assert _param_count(get_model(name), 448) == expected
  if name == "yolov1":  # The published darknet model: about 2.7e8.
    assert expected == 271_703_550


def _valid_taps(size: int, kernel: int, stride: int) -> tuple[int, int]:
  """Output size, and the (output, kernel tap) pairs along one axis that read the image rather
  than its zero padding."""
  pad = (kernel - 1) // 2
  out = (size + 2 * pad - kernel) // stride + 1
  return out, sum(0 <= o * stride - pad + t < size for o in range(out) for t in range(kernel))


def test_flop_count_at_448():
  """XLA's count of the forward pass (traced, not compiled) against the layer list's: XLA counts
  2 flops per multiply-add that reads the image, not the padding (38.5 GFLOPs; 40.6 with every
  tap of the padding), plus the elementwise work."""
  size, multiply_adds = 448, 0
  for layer in FIGURE_3:
    if layer == "pool":
      size = math.ceil(size / 2)
      continue
    kernel, c_in, c_out, stride = layer
    size, taps = _valid_taps(size, kernel, stride)
    multiply_adds += taps * taps * c_in * c_out
  multiply_adds += 7 * 7 * 1024 * 4096 + 4096 * 1470
  model = get_model("yolov1")
  x = jax.ShapeDtypeStruct((1, 448, 448, 3), jnp.float32)
  variables = jax.eval_shape(model.init, jax.random.key(0), x)
  flops = jax.jit(model.apply).lower(variables, x).cost_analysis()["flops"]
  assert 2 * multiply_adds <= flops <= 1.005 * 2 * multiply_adds


def test_layer_list_gives_yolov2s_operation_count_of_the_pretraining_network():
  """YOLOv2 (Redmon & Farhadi 2017, section 3) gives YOLOv1's ImageNet network, its first 20
  convolutions at 224x224, 8.52 billion operations: darknet counts 2 per multiply-add of every
  tap (padding included), and its classifier is a 1x1 convolution to 1000 classes at 7x7."""
  size, c_in, multiply_adds = 224, 3, 0
  convs = [layer for stage in YOLOV1_STAGES for layer in stage]
  convs = convs[: [i for i, l in enumerate(convs) if l != "maxpool"][19] + 1]  # 20 convolutions
  for layer in convs:
    if layer == "maxpool":
      size //= 2
      continue
    kernel, c_out, stride = layer
    size = (size + 2 * ((kernel - 1) // 2) - kernel) // stride + 1
    multiply_adds += size * size * kernel * kernel * c_in * c_out
    c_in = c_out
  multiply_adds += 7 * 7 * 1024 * 1000
  assert f"{2 * multiply_adds / 1e9:.2f}" == "8.52"


def _small(name: str, **kwargs):
  return get_model(name, backbone_kwargs={"width": 1 / 16, "batch_norm": True}, **kwargs)


@pytest.mark.parametrize("name", ["yolov1", "fast_yolo"])
def test_every_parameter_gets_a_gradient_from_the_loss(name):
  """A small detector (1/16 of the filters, BatchNorm) end to end: the output layout, BatchNorm
  statistics updated in training, and a gradient of the loss in every parameter."""
  model = _small(name, num_classes=3, head_features=32)
  x = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype(np.float32)
  variables = jax.jit(model.init)(jax.random.key(0), x)
  targets = yolo_targets(
    np.array([[[4, 8, 40, 60], [30, 30, 60, 50]]] * 2, np.float32),
    np.array([[0, 2]] * 2),
    np.array([[True, True], [True, False]]),
    64,
    7,
    3,
  )

  def loss(params):
    (predictions, features), state = model.apply(
      {**variables, "params": params},
      x,
      train=True,
      mutable=["batch_stats"],
      rngs={"dropout": jax.random.key(1)},
    )
    assert predictions.shape == (2, 7, 7, 2 * 5 + 3)
    assert features["pre_logits"].shape == (2, 32) and features["stage6"].shape[1:3] == (1, 1)
    return sum(yolo_loss(predictions, targets).values()), state

  grads, state = jax.jit(jax.grad(loss, has_aux=True))(variables["params"])
  without = [
    jax.tree_util.keystr(path)
    for path, g in jax.tree_util.tree_leaves_with_path(grads)
    if not np.any(np.asarray(g))
  ]
  assert not without, f"parameters without gradient: {without}"
  changed = jax.tree.map(
    lambda a, b: not np.array_equal(a, b), variables["batch_stats"], state["batch_stats"]
  )
  assert all(jax.tree.leaves(changed))


def test_conv_head_reads_an_s_by_s_feature_map_of_any_backbone():
  x = np.zeros((2, 32, 32, 3), np.float32)
  model = get_model(
    "yolov1", backbone="resnet20", feature="stage3", grid_size=8, head="conv", head_features=16
  )
  (predictions, features), _ = jax.eval_shape(
    lambda x: model.init_with_output(jax.random.key(0), x), x
  )
  assert predictions.shape == (2, 8, 8, 30) and features["pre_logits"].shape == (2, 8, 8, 16)
  with pytest.raises(ConfigError, match=r"'stage3' to be 7x7 \(grid_size\), got 8x8 from 32x32"):
    model = get_model("yolov1", backbone="resnet20", feature="stage3", head="conv")
    jax.eval_shape(model.init, jax.random.key(0), x)
  with pytest.raises(ConfigError, match=r"no feature map 'stage4'.* stage1, stage2, stage3"):
    model = get_model("yolov1", backbone="resnet20", feature="stage4")
    jax.eval_shape(model.init, jax.random.key(0), x)
