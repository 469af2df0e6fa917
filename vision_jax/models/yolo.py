"""YOLOv1 (Redmon, Divvala, Girshick & Farhadi 2016, "You only look once: unified, real-time
object detection"): one network that maps an image to an S x S grid of box and class predictions.

Networks:
- "yolov1_darknet": the paper's 24 convolutional layers (its Figure 3), LeakyReLU(0.1) after
  each. As a classifier (`num_classes` > 0) it ends in global average pooling and a dense layer,
  as the network the paper pretrains on ImageNet (whose first 20 layers it keeps); with
  `num_classes=0` it returns the pooled features (a backbone has no classifier).
- "fast_yolo_darknet": Fast YOLO's 9 convolutional layers. The paper gives only their number and
  "fewer filters"; the list is darknet's v1 tiny-yolo configuration: six 3x3 convolutions of
  16..512 filters each followed by a 2x2 max pool, then three 3x3 convolutions of 1024.
- "yolov1" and "fast_yolo": `YOLOv1`, the detector, on either network. `YOLOv1` puts its head on
  any registered backbone's named feature map (`backbone`, `backbone_kwargs`, `feature`): a CIFAR
  ResNet's "stage3", a ResNet's "stage4".

Both darknets name their feature maps by where a stride ends, the same in both, so that one
`feature` setting picks the same place in either: "stage1".."stage6" at strides 4, 8, 16, 32, 64
and 64 (112, 56, 28, 14, 7 and 7 pixels square at the paper's 448x448 input; 1024 channels in
"stage6"). Max pools are darknet's: a partial window at the bottom or right edge is kept, so that
every size works (ceil mode). Convolutions carry biases and no BatchNorm, as the paper (YOLOv2
added it); `batch_norm=True` puts BatchNorm after every convolution instead of its bias.

The detector's output, predictions [batch, S, S, B * 5 + C], holds for each cell (row, column)
B boxes of (x, y, w, h, confidence) and then C class scores:
  * x, y: the box centre's offset within the cell, in cell units ([0, 1] inside the cell);
  * w, h: the square roots of the box's width and height relative to the image (the paper
    regresses sqrt(w), sqrt(h) so that an error counts more in a small box than in a large one);
  * confidence: Pr(object) * IoU(prediction, truth);
  * C class scores: Pr(class | object), one set per cell, shared by its B boxes.
Every output is linear (no sigmoid, no softmax), as the paper's final layer and darknet's
detection layer (`softmax=0`): its loss regresses each of them with a squared error.
`vision_jax.losses.yolo` encodes ground truth into this layout (`yolo_targets`), computes the
paper's loss (`yolo_loss`) and decodes predictions into detections (`yolo_decode`).

Parameters (the paper's configuration: 448x448, S=7, B=2, C=20, a 4096-wide hidden layer):
"yolov1" has 271,703,550, of which 205,524,992 are the first fully connected layer's.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax.numpy as jnp

from vision_jax.errors import ConfigError
from vision_jax.models.layers import Conv
from vision_jax.models.pooling import max_pool
from vision_jax.models.registry import get_model, list_models, register, settings

# A layer is (kernel, filters, stride) for a convolution, or "maxpool" for a 2x2 stride-2 pool;
# each tuple of layers is a stage, and its output is the feature map "stage<i>".
YOLOV1_STAGES = (
  ((7, 64, 2), "maxpool"),
  ((3, 192, 1), "maxpool"),
  ((1, 128, 1), (3, 256, 1), (1, 256, 1), (3, 512, 1), "maxpool"),
  ((1, 256, 1), (3, 512, 1)) * 4 + ((1, 512, 1), (3, 1024, 1), "maxpool"),
  ((1, 512, 1), (3, 1024, 1)) * 2 + ((3, 1024, 1), (3, 1024, 2)),
  ((3, 1024, 1), (3, 1024, 1)),
)
FAST_YOLO_STAGES = (
  ((3, 16, 1), "maxpool", (3, 32, 1), "maxpool"),
  ((3, 64, 1), "maxpool"),
  ((3, 128, 1), "maxpool"),
  ((3, 256, 1), "maxpool"),
  ((3, 512, 1), "maxpool"),
  ((3, 1024, 1), (3, 1024, 1), (3, 1024, 1)),
)

# He et al.'s initialisation (fan-in, for LeakyReLU's near-linear negative side): without
# BatchNorm, LeCun's halves the activations' variance at every one of the 24 layers.
_conv_init = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


def _leaky_relu(x: jnp.ndarray) -> jnp.ndarray:
  return nn.leaky_relu(x, negative_slope=0.1)


class Darknet(nn.Module):
  """A plain stack of convolutions and max pools, each convolution followed by LeakyReLU(0.1).

  Attributes:
    stages: the layers, by stage (`YOLOV1_STAGES`, `FAST_YOLO_STAGES`).
    num_classes: outputs of the classifier after global average pooling; 0 for none (the
      output is then the pooled features).
    width: multiplies every convolution's filters (rounded, at least 1), for small budgets.
    batch_norm: BatchNorm after each convolution, which then has no bias (the paper has none).
    dtype: computation dtype (parameters stay float32).
  """

  stages: Sequence[Sequence[Any]] = YOLOV1_STAGES
  num_classes: int = 1000
  width: float = 1.0
  batch_norm: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool = False):
    """x: [batch, height, width, channels] float; 448x448 in the paper, any size works.

    Returns:
      logits [batch, num_classes] (the pooled features [batch, channels] when num_classes is 0)
      and features "stage1".."stage<n>" [batch, h_i, w_i, channels_i] and "pre_logits"
      [batch, channels], the globally average-pooled last stage.
    """
    if self.width <= 0:
      raise ConfigError(f"width must be positive, got {self.width!r}")
    out = {}
    x = jnp.asarray(x, self.dtype)
    conv_index = 0
    for s, stage in enumerate(self.stages):
      for layer in stage:
        if layer == "maxpool":
          x = max_pool(x, 2, 2, ceil_mode=True)
          continue
        kernel, filters, stride = layer
        conv_index += 1
        pad = (kernel - 1) // 2
        x = Conv(
          max(1, round(filters * self.width)),
          (kernel, kernel),
          strides=stride,
          padding=[(pad, pad)] * 2,
          use_bias=not self.batch_norm,
          kernel_init=_conv_init,
          dtype=self.dtype,
          name=f"conv{conv_index}",
        )(x)
        if self.batch_norm:
          x = nn.BatchNorm(
            use_running_average=not train, momentum=0.9, dtype=self.dtype, name=f"bn{conv_index}"
          )(x)
        x = _leaky_relu(x)
      out[f"stage{s + 1}"] = x
    x = x.mean(axis=(1, 2))
    out["pre_logits"] = x
    if self.num_classes > 0:
      x = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)
    return x, out


YOLOv1Darknet = register("yolov1_darknet")(partial(Darknet, stages=YOLOV1_STAGES))
FastYOLODarknet = register("fast_yolo_darknet")(partial(Darknet, stages=FAST_YOLO_STAGES))


class YOLOv1(nn.Module):
  """The YOLOv1 detector: a backbone's feature map, then a head that predicts an S x S grid.

  Attributes:
    num_classes: C, the object classes (without background).
    grid_size: S, the cells along each side of the image.
    boxes_per_cell: B, the boxes each cell predicts.
    backbone: a registered model's name; its feature map `feature` is the head's input.
    backbone_kwargs: the backbone's settings. Unless they say otherwise, the backbone computes in
      this module's dtype, and a darknet has no classifier (num_classes=0). Other backbones keep
      their classifier, unused (it gets no gradient), so that a pretrained classifier's
      parameters load under "backbone" as they are.
    feature: the name of the backbone's feature map that the head reads.
    head: "fc", the paper's: flatten, a dense layer of `head_features` and LeakyReLU(0.1),
      dropout, a dense layer of S * S * (B * 5 + C); any feature map size works. "conv": the
      same as convolutions at each cell (3x3 to `head_features`, LeakyReLU(0.1), dropout, 1x1 to
      B * 5 + C), for a feature map of exactly S x S.
    head_features: the hidden layer's width (4096 in the paper); 0 for no hidden layer.
    dropout: dropout rate after the hidden layer (0.5 in the paper).
    dtype: computation dtype of the head (parameters stay float32).
  """

  num_classes: int = 20
  grid_size: int = 7
  boxes_per_cell: int = 2
  backbone: str = "yolov1_darknet"
  backbone_kwargs: Mapping[str, Any] | None = None
  feature: str = "stage6"
  head: str = "fc"
  head_features: int = 4096
  dropout: float = 0.5
  dtype: Any = jnp.float32

  def _backbone(self) -> nn.Module:
    if self.backbone not in list_models():
      raise ConfigError(
        f"unknown backbone {self.backbone!r} (model.backbone); registered models: "
        f"{', '.join(list_models())}"
      )
    kwargs = dict(self.backbone_kwargs or {})
    accepted = settings(self.backbone)  # None: it takes any setting.
    if "dtype" not in kwargs and (accepted is None or "dtype" in accepted):
      kwargs["dtype"] = self.dtype
    backbone = get_model(self.backbone, **kwargs)
    if isinstance(backbone, Darknet) and "num_classes" not in kwargs:
      backbone = backbone.clone(num_classes=0)
    return backbone.clone(name="backbone", parent=self)

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool = False):
    """x: [batch, height, width, channels] float; 448x448 in the paper.

    Returns:
      predictions [batch, S, S, B * 5 + C] (the layout is the module docstring's) and the
      backbone's features, with "pre_logits" replaced by the head's hidden layer: [batch,
      head_features] for the "fc" head, [batch, S, S, head_features] for the "conv" head (the
      head's input where head_features is 0).
    """
    s, per_cell = self.grid_size, self.boxes_per_cell * 5 + self.num_classes
    if self.head not in ("fc", "conv"):
      raise ConfigError(f"head must be 'fc' or 'conv', got {self.head!r}")
    if min(s, self.boxes_per_cell, self.num_classes) < 1:
      raise ConfigError(
        f"grid_size, boxes_per_cell and num_classes must be at least 1, got "
        f"{s}, {self.boxes_per_cell} and {self.num_classes}"
      )
    _, features = self._backbone()(x, train=train)
    if self.feature not in features:
      raise ConfigError(
        f"backbone {self.backbone!r} has no feature map {self.feature!r} (model.feature); it has: "
        f"{', '.join(features)}"
      )
    y = jnp.asarray(features[self.feature], self.dtype)
    out = dict(features)
    if self.head == "conv":
      if y.ndim != 4 or y.shape[1:3] != (s, s):
        raise ConfigError(
          f"head='conv' needs the feature map {self.feature!r} to be {s}x{s} (grid_size), got "
          f"{'x'.join(map(str, y.shape[1:-1]))} from {x.shape[1]}x{x.shape[2]} images; change "
          f"the image size or grid_size, or use head='fc'"
        )
      if self.head_features > 0:
        y = Conv(self.head_features, (3, 3), padding=[(1, 1)] * 2, dtype=self.dtype, name="hidden")(
          y
        )
        y = nn.Dropout(self.dropout, deterministic=not train)(_leaky_relu(y))
      out["pre_logits"] = y
      y = Conv(per_cell, (1, 1), dtype=self.dtype, name="predictions")(y)
    else:
      y = y.reshape(y.shape[0], -1)
      if self.head_features > 0:
        y = nn.Dense(self.head_features, dtype=self.dtype, name="hidden")(y)
        y = nn.Dropout(self.dropout, deterministic=not train)(_leaky_relu(y))
      out["pre_logits"] = y
      y = nn.Dense(s * s * per_cell, dtype=self.dtype, name="predictions")(y)
      y = y.reshape(y.shape[0], s, s, per_cell)
    return y, out


register("yolov1")(YOLOv1)
register("fast_yolo")(partial(YOLOv1, backbone="fast_yolo_darknet"))
