"""The box toolkit (vision_jax.detection.boxes) against torchvision.ops, and its own conventions.

torchvision 0.29.1 on CPU, as checked on this machine (each trap has a test of its own below):
  * box_iou and generalized_box_iou give NaN between two boxes of zero area (0 / 0); ours give 0.
  * box_area of an inverted box (x1 < x0 and y1 < y0) is positive; ours is 0.
  * nms sorts scores with a stable sort: among tied scores the lower index is kept first, ours
    too. But batched_nms on more than 1000 boxes (boxes.numel() > 4000) runs one nms per class and
    re-sorts the kept indices with an unstable sort, so tied scores come out in arbitrary order.
  * nms suppresses only IoU > threshold: a box at exactly the threshold survives, ours too.
So parity is tested on boxes with positive area and distinct scores, where both are defined.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is needed for parity with torchvision")
torchvision = pytest.importorskip("torchvision", reason="torchvision is needed for parity")

from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList

from vision_jax.detection import boxes as box_ops
from vision_jax.detection.drawing import BOX_COLOURS, draw_boxes

SEEDS = (0, 1, 2)
jit_nms = jax.jit(box_ops.nms, static_argnums=3)
jit_batched_nms = jax.jit(box_ops.batched_nms, static_argnums=4)


def random_boxes(rng: np.random.Generator, n: int, clusters: int = 4) -> np.ndarray:
  """n boxes [n, 4] float32 with positive area, jittered copies of a few objects (as a detector's
  raw outputs are), so that many overlap a lot (NMS has work to do) and some do not."""
  cluster = rng.integers(0, clusters, n)
  object_sizes = rng.uniform(10, 60, (clusters, 2))[cluster]
  centres = (
    rng.uniform(20, 200, (clusters, 2))[cluster] + rng.normal(0, 0.15, (n, 2)) * object_sizes
  )
  sizes = object_sizes * rng.lognormal(0, 0.25, (n, 2))
  return np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1).astype(np.float32)


def distinct_scores(rng: np.random.Generator, n: int) -> np.ndarray:
  return rng.permutation(n).astype(np.float32) / n + np.float32(0.001)


def kept(indices: jnp.ndarray, valid: jnp.ndarray) -> list[int]:
  indices, valid = np.asarray(indices), np.asarray(valid)
  assert not valid[np.argmin(valid) :].any() or valid.all(), "valid slots must come first"
  return indices[valid].tolist()


@pytest.mark.parametrize("seed", SEEDS)
def test_iou_and_generalized_iou_match_torchvision(seed):
  rng = np.random.default_rng(seed)
  together = random_boxes(rng, 20)  # One set of clusters, so that a's boxes meet b's.
  a, b = together[:13], together[13:]
  iou = box_ops.box_iou(jnp.asarray(a), jnp.asarray(b))
  giou = box_ops.generalized_box_iou(jnp.asarray(a), jnp.asarray(b))
  assert iou.shape == (13, 7)
  expected_iou = torchvision.ops.box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()
  expected_giou = torchvision.ops.generalized_box_iou(torch.from_numpy(a), torch.from_numpy(b))
  assert 0 < (expected_iou > 0).mean() < 1, "the boxes should overlap only sometimes"
  np.testing.assert_allclose(iou, expected_iou, atol=1e-6, rtol=0)
  np.testing.assert_allclose(giou, expected_giou.numpy(), atol=1e-6, rtol=0)
  np.testing.assert_allclose(
    box_ops.box_area(jnp.asarray(a)), torchvision.ops.box_area(torch.from_numpy(a)), rtol=1e-6
  )


def test_iou_broadcasts_over_leading_batch_dimensions():
  rng = np.random.default_rng(3)
  a = random_boxes(rng, 2 * 5).reshape(2, 5, 4)
  b = random_boxes(rng, 3 * 4).reshape(3, 1, 4, 4)
  batched = box_ops.box_iou(jnp.asarray(a), jnp.asarray(b))
  assert batched.shape == (3, 2, 5, 4)
  np.testing.assert_allclose(batched[2, 1], box_ops.box_iou(a[1], b[2, 0]), atol=1e-7)
  giou = box_ops.generalized_box_iou(jnp.asarray(a), jnp.asarray(b))
  np.testing.assert_allclose(giou[0, 1], box_ops.generalized_box_iou(a[1], b[0, 0]), atol=1e-7)


def test_boxes_without_area_have_iou_zero_where_torchvision_gives_nan():
  """Two empty boxes have union 0: torchvision divides 0 by 0. Ours say 0, and an empty box
  inside a real one has IoU 0 with it (no overlap area), in GIoU too, and gradients stay finite."""
  empty_and_real = np.array([[0, 0, 0, 0], [1, 1, 1, 5], [3, 3, 2, 2], [0, 0, 10, 10]], np.float32)
  ours = np.asarray(box_ops.box_iou(empty_and_real, empty_and_real))
  theirs = torchvision.ops.box_iou(*[torch.from_numpy(empty_and_real)] * 2).numpy()
  assert np.isnan(theirs[0, 0]) and np.isnan(theirs[0, 1])  # The trap being fixed.
  expected = np.zeros((4, 4), np.float32)
  expected[3, 3] = 1
  np.testing.assert_array_equal(ours, expected)
  giou = np.asarray(box_ops.generalized_box_iou(empty_and_real, empty_and_real))
  assert np.all(np.isfinite(giou)) and giou[0, 0] == 0 and giou[3, 3] == 1
  assert giou[1, 3] == 0  # Empty box inside the real one: enclosing box is the real one.
  grad = jax.grad(lambda b: box_ops.generalized_box_iou(b, b).sum())(jnp.asarray(empty_and_real))
  assert np.all(np.isfinite(grad))


def test_an_inverted_box_has_area_zero_where_torchvision_gives_it_a_positive_area():
  inverted = np.array([[5.0, 5.0, 0.0, 0.0]], np.float32)
  assert torchvision.ops.box_area(torch.from_numpy(inverted)).item() == 25  # The trap.
  assert float(box_ops.box_area(inverted)[0]) == 0
  real = np.array([[0.0, 0.0, 5.0, 5.0]], np.float32)
  assert float(box_ops.box_iou(inverted, real)[0, 0]) == 0


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_encode_and_decode_match_torchvision_box_coder(weights):
  rng = np.random.default_rng(4)
  anchors, targets = random_boxes(rng, 50), random_boxes(rng, 50)[::-1].copy()
  coder = BoxCoder(weights)
  assert coder.bbox_xform_clip == pytest.approx(box_ops.BBOX_XFORM_CLIP, abs=1e-12)
  deltas = box_ops.encode_boxes(jnp.asarray(targets), jnp.asarray(anchors), weights)
  expected = coder.encode_single(torch.from_numpy(targets), torch.from_numpy(anchors)).numpy()
  np.testing.assert_allclose(deltas, expected, atol=2e-5, rtol=1e-5)
  # Decoding round-trips, and agrees with torchvision on large deltas, where the clamp acts.
  np.testing.assert_allclose(
    box_ops.decode_boxes(deltas, jnp.asarray(anchors), weights), targets, atol=1e-3
  )
  wild = (rng.normal(0, 3, (50, 4)) * np.array(weights) * 2).astype(np.float32)
  assert (wild[:, 2:] / np.array(weights[2:]) > box_ops.BBOX_XFORM_CLIP).any()
  decoded = box_ops.decode_boxes(jnp.asarray(wild), jnp.asarray(anchors), weights)
  theirs = coder.decode_single(torch.from_numpy(wild), torch.from_numpy(anchors)).numpy()
  np.testing.assert_allclose(decoded, theirs, rtol=1e-5, atol=1e-3)


def test_decode_clamps_the_log_scale_at_log_1000_over_16():
  anchor = jnp.array([[10.0, 20.0, 30.0, 60.0]])  # width 20, height 40, centre (20, 40)
  decoded = box_ops.decode_boxes(jnp.array([[0.0, 0.0, 50.0, -1.0]]), anchor)
  width, height = decoded[0, 2] - decoded[0, 0], decoded[0, 3] - decoded[0, 1]
  np.testing.assert_allclose(width, 20 * 1000 / 16, rtol=1e-5)  # exp(50) clamped to 62.5
  np.testing.assert_allclose(height, 40 * np.exp(-1.0), rtol=1e-5)  # Only large values clamp.
  np.testing.assert_allclose((decoded[0, 0] + decoded[0, 2]) / 2, 20, rtol=1e-6)


def test_codec_broadcasts_over_leading_dimensions_under_jit():
  rng = np.random.default_rng(5)
  anchors, targets = random_boxes(rng, 12).reshape(3, 4, 4), random_boxes(rng, 12).reshape(3, 4, 4)
  deltas = jax.jit(box_ops.encode_boxes)(targets, anchors)
  assert deltas.shape == (3, 4, 4)
  np.testing.assert_allclose(deltas[1], box_ops.encode_boxes(targets[1], anchors[1]), atol=1e-6)


def test_clip_boxes_matches_torchvision_and_clips_each_image_to_its_size():
  rng = np.random.default_rng(6)
  boxes = (random_boxes(rng, 40) * 1.5 - 60).astype(np.float32)
  expected = torchvision.ops.clip_boxes_to_image(torch.from_numpy(boxes), (90, 130)).numpy()
  assert (expected != boxes).any()
  np.testing.assert_array_equal(box_ops.clip_boxes(jnp.asarray(boxes), 90, 130), expected)
  batch = jnp.asarray(boxes.reshape(2, 20, 4))
  sizes_h, sizes_w = jnp.array([[90.0], [50.0]]), jnp.array([[130.0], [70.0]])
  clipped = jax.jit(box_ops.clip_boxes)(batch, sizes_h, sizes_w)
  np.testing.assert_array_equal(clipped[1], box_ops.clip_boxes(batch[1], 50, 70))
  assert float(clipped[1][:, 2].max()) <= 70 and float(clipped[0][:, 2].max()) > 70


@pytest.mark.parametrize(
  "feature_shape, image_shape, sizes, ratios",
  [((5, 7), (80, 112), (32, 64, 128), (0.5, 1.0, 2.0)), ((3, 4), (33, 52), (23,), (0.3, 1.7))],
)
def test_anchors_match_torchvision_anchor_generator(feature_shape, image_shape, sizes, ratios):
  generator = AnchorGenerator(sizes=(sizes,), aspect_ratios=(ratios,))
  images = ImageList(torch.zeros(1, 3, *image_shape), [image_shape])
  expected = generator(images, [torch.zeros(1, 8, *feature_shape)])[0].numpy()
  stride = (image_shape[0] // feature_shape[0], image_shape[1] // feature_shape[1])
  anchors = box_ops.make_anchors(feature_shape, stride, sizes, ratios)
  assert anchors.shape == (feature_shape[0] * feature_shape[1] * len(sizes) * len(ratios), 4)
  np.testing.assert_array_equal(anchors, expected)
  assert stride[0] != stride[1] or feature_shape == (5, 7)  # The second case has unequal strides.


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_nms_keeps_exactly_torchvisions_indices_for_distinct_scores(seed, threshold):
  rng = np.random.default_rng(seed)
  boxes, scores = random_boxes(rng, 96), distinct_scores(rng, 96)
  expected = torchvision.ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), threshold)
  assert 4 < len(expected) < 90, "the case should suppress some boxes and keep several"
  indices, valid = jit_nms(jnp.asarray(boxes), jnp.asarray(scores), threshold, 96)
  assert kept(indices, valid) == expected.tolist()
  # A smaller max_output keeps the same boxes' prefix.
  indices, valid = jit_nms(jnp.asarray(boxes), jnp.asarray(scores), threshold, 4)
  assert kept(indices, valid) == expected[:4].tolist()


@pytest.mark.parametrize("seed", SEEDS)
def test_batched_nms_keeps_exactly_torchvisions_indices_for_distinct_scores(seed):
  rng = np.random.default_rng(seed)
  boxes, scores = random_boxes(rng, 96), distinct_scores(rng, 96)
  classes = rng.integers(0, 3, 96)
  expected = torchvision.ops.batched_nms(
    torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes), 0.5
  ).tolist()
  alone = torchvision.ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.5).tolist()
  assert len(expected) > len(alone), "classes should shelter boxes from suppression"
  indices, valid = jit_batched_nms(
    jnp.asarray(boxes), jnp.asarray(scores), jnp.asarray(classes), 0.5, 96
  )
  assert kept(indices, valid) == expected


def test_batched_nms_matches_torchvisions_per_class_path_on_many_boxes():
  """Over 1000 boxes torchvision's CPU batched_nms runs one nms per class (its other path)."""
  rng = np.random.default_rng(7)
  boxes, scores = random_boxes(rng, 1100, clusters=30), distinct_scores(rng, 1100)
  classes = rng.integers(0, 5, 1100)
  expected = torchvision.ops.batched_nms(
    torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes), 0.6
  ).tolist()
  indices, valid = jit_batched_nms(
    jnp.asarray(boxes), jnp.asarray(scores), jnp.asarray(classes), 0.6, len(expected) + 5
  )
  assert kept(indices, valid) == expected


def test_nms_breaks_ties_in_score_by_lower_index_like_torchvision():
  """torchvision's nms sorts with a stable sort on this machine, so equal scores keep the lower
  index; ours is documented to. torchvision's batched_nms over 1000 boxes does not keep that
  order, which this test also records (its kept set is the same; only the order differs)."""
  rng = np.random.default_rng(8)
  boxes = random_boxes(rng, 96)
  scores = np.repeat(np.float32([0.9, 0.5, 0.2]), 32)[rng.permutation(96)]
  expected = torchvision.ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.5).tolist()
  indices, valid = jit_nms(jnp.asarray(boxes), jnp.asarray(scores), 0.5, 96)
  assert kept(indices, valid) == expected
  for score in (0.9, 0.5, 0.2):
    at_score = [i for i in expected if scores[i] == score]
    assert at_score == sorted(at_score)
  # Identical boxes with one score: only the first survives.
  same = np.tile(np.float32([[10, 10, 50, 40]]), (5, 1))
  indices, valid = box_ops.nms(same, np.ones(5, np.float32), 0.5, 5)
  assert kept(indices, valid) == [0]
  assert torchvision.ops.nms(torch.from_numpy(same), torch.ones(5), 0.5).tolist() == [0]
  # torchvision's per-class path: tied scores come out of index order.
  many = random_boxes(rng, 1200, clusters=300)
  tv_kept = torchvision.ops.batched_nms(
    torch.from_numpy(many), torch.ones(1200), torch.from_numpy(rng.integers(0, 3, 1200)), 0.5
  ).tolist()
  assert tv_kept != sorted(tv_kept)


def test_nms_adversarial_cases():
  nested = np.float32([[0, 0, 100, 100], [10, 10, 90, 90], [20, 20, 80, 80], [45, 45, 55, 55]])
  scores = np.float32([0.4, 0.9, 0.6, 0.8])
  # IoUs with box 1 (kept first): box 0 0.64, box 2 0.5625, box 3 0.0156; box 2 vs 3: 0.0278.
  for threshold, expected in [(0.5, [1, 3]), (0.6, [1, 3, 2]), (0.7, [1, 3, 2, 0])]:
    theirs = torchvision.ops.nms(torch.from_numpy(nested), torch.from_numpy(scores), threshold)
    assert theirs.tolist() == expected
    assert kept(*box_ops.nms(nested, scores, threshold, 4)) == expected
  # All boxes suppressed by the first, and empty sets (N = 0) of either function.
  identical = np.tile(np.float32([[1, 2, 3, 4]]), (6, 1))
  assert kept(*box_ops.nms(identical, np.arange(6, dtype=np.float32), 0.1, 3)) == [5]
  indices, valid = box_ops.nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5, 3)
  assert indices.shape == (3,) and not np.asarray(valid).any()
  assert torchvision.ops.nms(torch.zeros(0, 4), torch.zeros(0), 0.5).numel() == 0
  empty = box_ops.batched_nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int), 0.5, 2)
  assert empty[0].shape == (2,) and not np.asarray(empty[1]).any()
  # An IoU exactly at the threshold does not suppress (torchvision: IoU > threshold).
  half = np.float32([[0, 0, 10, 10], [0, 0, 10, 20]])
  assert float(box_ops.box_iou(half, half)[0, 1]) == 0.5
  assert kept(*box_ops.nms(half, np.float32([1, 0.5]), 0.5, 2)) == [0, 1]
  assert torchvision.ops.nms(torch.from_numpy(half), torch.tensor([1, 0.5]), 0.5).tolist() == [0, 1]
  # Zero-area boxes have IoU 0 with everything, so none suppresses another.
  points = np.float32([[5, 5, 5, 5], [5, 5, 5, 5]])
  assert kept(*box_ops.nms(points, np.float32([1, 0.5]), 0.0, 2)) == [0, 1]


def test_nms_never_keeps_padding_or_nan_scores():
  rng = np.random.default_rng(9)
  boxes, scores = random_boxes(rng, 24), distinct_scores(rng, 24)
  valid = np.arange(24) < 16
  best_padding = 16 + int(np.argmax(scores[16:]))
  scores[best_padding] = 10.0  # The highest score of all sits in the padding.
  scores[3] = np.nan
  indices, keep_valid = jit_nms(
    jnp.asarray(boxes), jnp.asarray(scores), 0.5, 24, jnp.asarray(valid)
  )
  ours = kept(indices, keep_valid)
  real = np.arange(16)[np.arange(16) != 3]
  expected = [
    int(real[i])
    for i in torchvision.ops.nms(torch.from_numpy(boxes[real]), torch.from_numpy(scores[real]), 0.5)
  ]
  assert ours == expected
  assert np.all(np.asarray(indices)[~np.asarray(keep_valid)] == 0)


def test_nms_batches_over_images_with_vmap():
  rng = np.random.default_rng(10)
  boxes = np.stack([random_boxes(rng, 40) for _ in range(3)])
  scores = np.stack([distinct_scores(rng, 40) for _ in range(3)])
  classes = rng.integers(0, 2, (3, 40))
  run = jax.jit(jax.vmap(functools.partial(box_ops.batched_nms, iou_threshold=0.5, max_output=40)))
  indices, valid = run(jnp.asarray(boxes), jnp.asarray(scores), jnp.asarray(classes))
  assert indices.shape == (3, 40)
  for image in range(3):
    expected = torchvision.ops.batched_nms(
      *(torch.from_numpy(x[image]) for x in (boxes, scores, classes)), 0.5
    )
    assert kept(indices[image], valid[image]) == expected.tolist()


def test_top_k_breaks_ties_by_index_respects_validity_and_pads():
  scores = jnp.array([[0.5, 0.9, 0.5, -0.0, 0.9, 0.0], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
  valid = jnp.array([[True] * 6, [True, True, True, False, False, False]])
  values, indices, chosen = jax.jit(box_ops.top_k, static_argnums=1)(scores, 8, valid)
  assert values.shape == indices.shape == chosen.shape == (2, 8)
  assert indices[0].tolist() == [1, 4, 0, 2, 3, 5, 0, 0]  # -0.0 and 0.0 tie: lower index first.
  assert chosen[0].tolist() == [True] * 6 + [False] * 2
  assert indices[1, :3].tolist() == [2, 1, 0] and chosen[1].tolist() == [True] * 3 + [False] * 5
  np.testing.assert_array_equal(values[1], [3, 2, 1] + [-np.inf] * 5)
  values, indices, chosen = box_ops.top_k(jnp.array([0.1, jnp.nan, 0.3]), 2)
  assert indices.tolist() == [2, 0] and chosen.all()  # NaN is never chosen before a number.
  empty = box_ops.top_k(jnp.zeros((2, 0)), 3)
  assert empty[1].shape == (2, 3) and not empty[2].any()


def test_draw_boxes_colours_the_box_edges_and_keeps_shape_and_dtype():
  image = np.full((64, 80, 3), 7, np.uint8)
  boxes = np.array([[10, 30, 50, 60], [0, 0, 5, 5]], np.float32)
  picture = draw_boxes(
    image, boxes, labels=np.array([2, 1]), scores=np.array([0.87, 0.5]), class_names=["a", "b", "c"]
  )
  assert picture.shape == image.shape and picture.dtype == np.uint8
  assert (image == 7).all(), "the input must be left alone"
  colour = BOX_COLOURS[2]
  for x, y in [(10, 45), (49, 45), (30, 59), (11, 58)]:  # Left, right, bottom edges, inner line.
    assert tuple(picture[y, x]) == colour
  assert tuple(picture[45, 30]) == (7, 7, 7), "inside the box stays"
  assert tuple(picture[62, 70]) == (7, 7, 7), "outside the box stays"
  assert (picture[18:30, 10:40] != 7).any(), "a caption above the box"
  skipped = draw_boxes(image, boxes, valid=np.array([False, False]))
  np.testing.assert_array_equal(skipped, image)
  with pytest.raises(ValueError, match="uint8"):
    draw_boxes(image.astype(np.float32), boxes)
