"""Boxes for object detection in pure JAX: areas, IoU, the R-CNN box coder, anchors, NMS, top-k.

Boxes are `[..., 4]` float arrays of pixel coordinates `x0, y0, x1, y1`. Every function is
jittable with static output shapes, so that detection heads can run whole under `jax.jit`:
`nms`, `batched_nms` and `top_k` return a fixed number of slots and a mask that says which hold a
real result. Functions of boxes broadcast over leading batch dimensions; `nms` and `batched_nms`
work on one image's boxes and batch with `jax.vmap`.

Conventions (each tested on its own in tests/test_detection_boxes.py):
  * Ties. Among equal scores the lower index comes first, in `nms`, `batched_nms` and `top_k`
    alike (a stable sort by descending score). torchvision's `nms` does the same on CPU; its
    `batched_nms` on more than 1000 boxes (CPU) re-sorts its result with an unstable sort.
  * Empty boxes. A box with no area (x1 <= x0 or y1 <= y0) has area 0 and an IoU of 0 with every
    box, itself included. torchvision's `box_iou` gives NaN (0 / 0) between two such boxes, and
    its `box_area` gives an inverted box (x1 < x0 and y1 < y0) a positive area.
  * NMS suppresses a box whose IoU with a kept box of higher score is strictly above the
    threshold (an IoU equal to it survives), as torchvision's.

    anchors = make_anchors((50, 68), stride=16, sizes=(32, 64), aspect_ratios=(0.5, 1.0, 2.0))
    boxes = clip_boxes(decode_boxes(deltas, anchors), height, width)
    keep, keep_valid = batched_nms(boxes, scores, classes, iou_threshold=0.5, max_output=100)
"""

from __future__ import annotations

import math
from typing import Sequence

import jax.numpy as jnp
import numpy as np
from jax import lax

# torchvision's BoxCoder clamps decoded log-scales here, so that exp() of a wild regression output
# makes a box at most 1000/16 times the size of its anchor instead of overflowing.
BBOX_XFORM_CLIP = math.log(1000.0 / 16)


def box_area(boxes: jnp.ndarray) -> jnp.ndarray:
  """Areas of boxes [..., 4] (x0, y0, x1, y1): [...]. A box with x1 <= x0 or y1 <= y0 has area 0."""
  widths = jnp.maximum(boxes[..., 2] - boxes[..., 0], 0)
  heights = jnp.maximum(boxes[..., 3] - boxes[..., 1], 0)
  return widths * heights


def _intersection_and_union(a: jnp.ndarray, b: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Pairwise intersection and union areas of a [..., N, 4] and b [..., M, 4]: two [..., N, M]."""
  top_left = jnp.maximum(a[..., :, None, :2], b[..., None, :, :2])
  bottom_right = jnp.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
  overlap = jnp.maximum(bottom_right - top_left, 0)
  intersection = overlap[..., 0] * overlap[..., 1]
  union = box_area(a)[..., :, None] + box_area(b)[..., None, :] - intersection
  return intersection, union


def _safe_ratio(numerator: jnp.ndarray, denominator: jnp.ndarray) -> jnp.ndarray:
  """numerator / denominator where the denominator is positive, else 0 (no NaN, in gradients
  either)."""
  positive = denominator > 0
  return jnp.where(positive, numerator / jnp.where(positive, denominator, 1), 0)


def box_iou(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
  """Intersection over union of every pair of a [..., N, 4] and b [..., M, 4]: [..., N, M].

  Leading dimensions broadcast. A pair whose union has no area (two empty boxes) has IoU 0, where
  torchvision.ops.box_iou gives NaN.
  """
  intersection, union = _intersection_and_union(a, b)
  return _safe_ratio(intersection, union)


def generalized_box_iou(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
  """Generalized IoU (Rezatofighi et al., 2019) of every pair of a [..., N, 4], b [..., M, 4]:
  [..., N, M] in [-1, 1].

  IoU - (C - U) / C, where C is the area of the smallest box enclosing both and U their union.
  Where C is 0 (both boxes empty and on one line) the penalty term is 0, so GIoU = IoU = 0.
  """
  intersection, union = _intersection_and_union(a, b)
  top_left = jnp.minimum(a[..., :, None, :2], b[..., None, :, :2])
  bottom_right = jnp.maximum(a[..., :, None, 2:], b[..., None, :, 2:])
  enclosing_size = jnp.maximum(bottom_right - top_left, 0)
  enclosing = enclosing_size[..., 0] * enclosing_size[..., 1]
  return _safe_ratio(intersection, union) - _safe_ratio(enclosing - union, enclosing)


def _centres_and_sizes(boxes: jnp.ndarray) -> tuple[jnp.ndarray, ...]:
  widths = boxes[..., 2] - boxes[..., 0]
  heights = boxes[..., 3] - boxes[..., 1]
  return boxes[..., 0] + 0.5 * widths, boxes[..., 1] + 0.5 * heights, widths, heights


def encode_boxes(
  boxes: jnp.ndarray,
  anchors: jnp.ndarray,
  weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
) -> jnp.ndarray:
  """The R-CNN regression targets that take anchors [..., 4] to boxes [..., 4]: [..., 4].

  Deltas (dx, dy, dw, dh) = (wx (x - xa) / wa, wy (y - ya) / ha, ww log(w / wa), wh log(h / ha)),
  where (x, y, w, h) are a box's centre and size and (xa, ya, wa, ha) its anchor's, as
  torchvision.models.detection._utils.BoxCoder.encode_single(boxes, anchors). Faster R-CNN's box
  head uses weights (10, 10, 5, 5), its RPN (1, 1, 1, 1). Anchors must have an area.
  """
  wx, wy, ww, wh = weights
  x, y, w, h = _centres_and_sizes(boxes)
  xa, ya, wa, ha = _centres_and_sizes(anchors)
  return jnp.stack(
    [wx * (x - xa) / wa, wy * (y - ya) / ha, ww * jnp.log(w / wa), wh * jnp.log(h / ha)], axis=-1
  )


def decode_boxes(
  deltas: jnp.ndarray,
  anchors: jnp.ndarray,
  weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
  scale_clip: float = BBOX_XFORM_CLIP,
) -> jnp.ndarray:
  """Boxes [..., 4] from R-CNN deltas [..., 4] relative to anchors [..., 4]; `encode_boxes`'s
  inverse.

  As torchvision's BoxCoder.decode_single: dw / ww and dh / wh are clamped from above at
  `scale_clip` (log(1000 / 16), BoxCoder's bbox_xform_clip) before exp, so that a decoded box is at
  most 62.5 times its anchor's size.
  """
  wx, wy, ww, wh = weights
  xa, ya, wa, ha = _centres_and_sizes(anchors.astype(deltas.dtype))
  dx, dy = deltas[..., 0] / wx, deltas[..., 1] / wy
  dw = jnp.minimum(deltas[..., 2] / ww, scale_clip)
  dh = jnp.minimum(deltas[..., 3] / wh, scale_clip)
  x, y = dx * wa + xa, dy * ha + ya
  half_w, half_h = 0.5 * (jnp.exp(dw) * wa), 0.5 * (jnp.exp(dh) * ha)
  return jnp.stack([x - half_w, y - half_h, x + half_w, y + half_h], axis=-1)


def clip_boxes(
  boxes: jnp.ndarray, height: float | jnp.ndarray, width: float | jnp.ndarray
) -> jnp.ndarray:
  """Boxes [..., 4] clamped into an image: x into [0, width], y into [0, height].

  height and width may be traced; scalars, or arrays that broadcast against boxes.shape[:-1]
  (e.g. [B, 1] for boxes [B, N, 4]) so that a padded batch clips each image to its own size.
  """
  height = jnp.asarray(height, boxes.dtype)[..., None]
  width = jnp.asarray(width, boxes.dtype)[..., None]
  xs = jnp.clip(boxes[..., 0::2], 0, width)
  ys = jnp.clip(boxes[..., 1::2], 0, height)
  return jnp.stack([xs[..., 0], ys[..., 0], xs[..., 1], ys[..., 1]], axis=-1)


def make_anchors(
  feature_shape: tuple[int, int],
  stride: int | tuple[int, int],
  sizes: Sequence[float],
  aspect_ratios: Sequence[float],
) -> jnp.ndarray:
  """Anchor boxes of one feature map [H * W * A, 4] float32, A = len(aspect_ratios) * len(sizes).

  torchvision's AnchorGenerator convention: for each aspect ratio r (height / width) and size s,
  a zero-centred base anchor of width s / sqrt(r) and height s sqrt(r), its corners rounded to
  whole pixels (half to even); each is shifted to every cell's top-left corner
  (column * stride_w, row * stride_h). Rows run over cells in row-major order, then aspect ratios,
  then sizes, as torchvision's. feature_shape (H, W) and stride (an int or (stride_h, stride_w),
  torchvision's image size // feature size) are static; the result is a constant under jit.
  """
  grid_height, grid_width = feature_shape
  stride_h, stride_w = (stride, stride) if isinstance(stride, int) else stride
  # float32 throughout, in torchvision's order of operations, so that rounding agrees exactly.
  scales = np.asarray(sizes, np.float32)
  h_ratios = np.sqrt(np.asarray(aspect_ratios, np.float32))
  w_ratios = np.float32(1) / h_ratios
  widths = (w_ratios[:, None] * scales[None, :]).reshape(-1)
  heights = (h_ratios[:, None] * scales[None, :]).reshape(-1)
  base = np.round(np.stack([-widths, -heights, widths, heights], axis=1) / np.float32(2))
  shift_y, shift_x = np.meshgrid(
    np.arange(grid_height) * stride_h, np.arange(grid_width) * stride_w, indexing="ij"
  )
  shifts = np.stack([shift_x, shift_y, shift_x, shift_y], axis=-1).reshape(-1, 1, 4)
  return jnp.asarray((shifts.astype(np.float32) + base[None]).reshape(-1, 4))


def _descending_order(scores: jnp.ndarray, valid: jnp.ndarray) -> jnp.ndarray:
  """Indices [..., N] that sort scores [..., N] descending along the last axis: valid entries
  first, ties by lower index (a stable sort). NaN scores count as invalid."""
  valid = valid & ~jnp.isnan(scores)
  index = lax.broadcasted_iota(jnp.int32, scores.shape, scores.ndim - 1)
  # -0.0 and 0.0 compare equal in lax.sort, so they tie like any other equal scores.
  _, _, order = lax.sort(
    ((~valid).astype(jnp.int32), -scores, index), dimension=-1, is_stable=True, num_keys=2
  )
  return order


def top_k(
  scores: jnp.ndarray, k: int, valid: jnp.ndarray | None = None
) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
  """The k highest scores along the last axis of scores [..., N]: (values [..., k],
  indices [..., k] int32, valid [..., k] bool).

  Entries where `valid` [..., N] is False (and NaN scores) are never chosen before a valid one;
  ties go to the lower index. When fewer than k entries are valid (k > N included), the extra
  slots have valid False, index 0 and value -inf.
  """
  scores = jnp.asarray(scores)
  n = scores.shape[-1]
  if valid is None:
    valid = jnp.ones(scores.shape, bool)
  valid = jnp.broadcast_to(valid, scores.shape) & ~jnp.isnan(scores)
  if n == 0:
    batch = scores.shape[:-1]
    return (
      jnp.full(batch + (k,), -jnp.inf, scores.dtype),
      jnp.zeros(batch + (k,), jnp.int32),
      jnp.zeros(batch + (k,), bool),
    )
  order = _descending_order(scores, valid)[..., :k]
  chosen_valid = jnp.take_along_axis(valid, order, axis=-1)
  values = jnp.where(chosen_valid, jnp.take_along_axis(scores, order, axis=-1), -jnp.inf)
  indices = jnp.where(chosen_valid, order, 0)
  if k > n:
    padding = [(0, 0)] * (scores.ndim - 1) + [(0, k - n)]
    values = jnp.pad(values, padding, constant_values=-jnp.inf)
    indices = jnp.pad(indices, padding)
    chosen_valid = jnp.pad(chosen_valid, padding)
  return values, indices, chosen_valid


def _greedy_nms(
  boxes: jnp.ndarray,
  scores: jnp.ndarray,
  classes: jnp.ndarray | None,
  iou_threshold: float | jnp.ndarray,
  max_output: int,
  valid: jnp.ndarray | None,
) -> tuple[jnp.ndarray, jnp.ndarray]:
  boxes, scores = jnp.asarray(boxes), jnp.asarray(scores)
  n = boxes.shape[0]
  if n == 0 or max_output == 0:
    return jnp.zeros((max_output,), jnp.int32), jnp.zeros((max_output,), bool)
  valid = jnp.ones((n,), bool) if valid is None else jnp.asarray(valid, bool)
  order = _descending_order(scores, valid)
  sorted_boxes = boxes[order]
  remaining = (valid & ~jnp.isnan(scores))[order]
  sorted_classes = None if classes is None else classes[order]
  position = jnp.arange(n)

  def keep_next(i, state):
    remaining, kept, kept_valid = state
    best = jnp.argmax(remaining)  # The first remaining in score order (0 when none remains).
    found = remaining[best]
    overlaps = box_iou(sorted_boxes[best][None], sorted_boxes)[0]
    if sorted_classes is not None:
      overlaps = jnp.where(sorted_classes == sorted_classes[best], overlaps, 0)
    remaining = remaining & (overlaps <= iou_threshold) & (position != best)
    kept = kept.at[i].set(jnp.where(found, order[best], 0))
    return remaining, kept, kept_valid.at[i].set(found)

  initial = (remaining, jnp.zeros((max_output,), jnp.int32), jnp.zeros((max_output,), bool))
  _, kept, kept_valid = lax.fori_loop(0, max_output, keep_next, initial)
  return kept, kept_valid


def nms(
  boxes: jnp.ndarray,
  scores: jnp.ndarray,
  iou_threshold: float | jnp.ndarray,
  max_output: int,
  valid: jnp.ndarray | None = None,
) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Greedy non-maximum suppression of one image's boxes [N, 4] with scores [N], fixed-size.

  Repeatedly keeps the highest-scoring remaining box and drops every remaining box whose IoU with
  it is above `iou_threshold` (strictly), as torchvision.ops.nms, until `max_output` boxes are
  kept or none remains. Ties in score go to the lower index. Boxes where `valid` [N] is False
  (padding) and NaN scores are never kept.

  Returns (indices [max_output] int32 into boxes, in descending score order; valid
  [max_output] bool). Slots past the last kept box have valid False and index 0, so gathering
  with the indices is always in bounds. Costs max_output passes over the N boxes (no N x N
  matrix); batch over images with jax.vmap.
  """
  return _greedy_nms(boxes, scores, None, iou_threshold, max_output, valid)


def batched_nms(
  boxes: jnp.ndarray,
  scores: jnp.ndarray,
  classes: jnp.ndarray,
  iou_threshold: float | jnp.ndarray,
  max_output: int,
  valid: jnp.ndarray | None = None,
) -> tuple[jnp.ndarray, jnp.ndarray]:
  """`nms` within each class: a box suppresses only boxes of its own class (classes [N] int).

  torchvision.ops.batched_nms gets the same rule by shifting each box by class * (largest
  coordinate + 1) so that boxes of different classes never overlap; here the IoU between boxes
  of different classes is set to 0 instead, which is the same rule without the float32 rounding
  of the shifted coordinates (at class 80 and coordinates near 1000 they keep only ~1/128 pixel).
  Returns (indices [max_output] int32, valid [max_output] bool) as `nms`, over all classes
  together in descending score order.
  """
  return _greedy_nms(boxes, scores, jnp.asarray(classes), iou_threshold, max_output, valid)
