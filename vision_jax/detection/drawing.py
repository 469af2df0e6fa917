"""Pictures of detections: boxes with class names and scores drawn onto images (numpy and PIL, on
the host).

    picture = draw_boxes(image, boxes, labels, scores, class_names=("cat", "dog"))
    PIL.Image.fromarray(picture).save("detections.png")
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Distinct, saturated colours (Tableau 10), one per class label modulo 10.
BOX_COLOURS = (
  (31, 119, 180),
  (255, 127, 14),
  (44, 160, 44),
  (214, 39, 40),
  (148, 103, 189),
  (140, 86, 75),
  (227, 119, 194),
  (127, 127, 127),
  (188, 189, 34),
  (23, 190, 207),
)


def _caption(label: int | None, score: float | None, class_names: Sequence[str] | None) -> str:
  parts = []
  if label is not None:
    parts.append(class_names[label] if class_names is not None else str(label))
  if score is not None:
    parts.append(f"{score:.2f}")
  return " ".join(parts)


def draw_boxes(
  image: np.ndarray,
  boxes: np.ndarray,
  labels: np.ndarray | None = None,
  scores: np.ndarray | None = None,
  class_names: Sequence[str] | None = None,
  valid: np.ndarray | None = None,
  line_width: int = 2,
) -> np.ndarray:
  """A copy of image [H, W, 3] uint8 with boxes [N, 4] (pixel x0, y0, x1, y1) drawn on it.

  Each box is outlined `line_width` pixels wide, inward from its edges, in its class's colour
  (`BOX_COLOURS[label % 10]`, or the first colour without labels [N]); a caption above its top-left
  corner (inside the box where there is no room above) names the class (class_names[label], or
  the label number) and the score [N] to two decimals. Boxes where valid [N] is False (padding of
  a fixed-size detector output) are skipped. Returns [H, W, 3] uint8; the input is unchanged.
  """
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f"image must be [H, W, 3] uint8, got {image.shape} {image.dtype}")
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  picture = Image.fromarray(image.copy())
  draw = ImageDraw.Draw(picture)
  font = ImageFont.load_default()
  for i, (x0, y0, x1, y1) in enumerate(boxes):
    if valid is not None and not valid[i]:
      continue
    label = None if labels is None else int(labels[i])
    colour = BOX_COLOURS[0 if label is None else label % len(BOX_COLOURS)]
    # PIL's rectangle includes both corners: pixel columns x0 .. x1 - 1 cover [x0, x1).
    corners = [round(x0), round(y0), max(round(x1) - 1, round(x0)), max(round(y1) - 1, round(y0))]
    draw.rectangle(corners, outline=colour, width=line_width)
    caption = _caption(label, None if scores is None else float(scores[i]), class_names)
    if caption:
      left, top, right, bottom = draw.textbbox((0, 0), caption, font=font)
      text_height = bottom - top + 2
      text_top = corners[1] - text_height if corners[1] >= text_height else corners[1]
      background = [corners[0], text_top, corners[0] + right - left + 4, text_top + text_height]
      draw.rectangle(background, fill=colour)
      draw.text((corners[0] + 2, text_top + 1 - top), caption, fill=(255, 255, 255), font=font)
  return np.asarray(picture)
