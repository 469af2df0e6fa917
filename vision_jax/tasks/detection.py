"""Object detection: a registered detector, its named losses, and VOC and COCO average precision
over whole splits.

Batches carry image [b, H, W, C], boxes [b, max_boxes, 4] float32 pixel x0, y0, x1, y1, labels
[b, max_boxes] int32, box_mask [b, max_boxes] bool (the real boxes), and optionally difficult and
crowd [b, max_boxes] bool; eval batches also "mask" [b], the real (not padding) images.

The detector is YOLOv1 ("yolov1", "fast_yolo"; `vision_jax.models.yolo`), trained with the paper's
loss (`vision_jax.losses.yolo`). What is particular to it is in `losses` (the model's output ->
named losses) and `detect` (-> a fixed number of detections per image); a detector of another
family (two-stage, anchors) replaces those two and keeps the rest: evaluation, pictures, COCO
results.

config.detection:
  score_threshold: a detection's score must exceed this to be kept (low: AP ranks them all).
  iou_threshold: non-maximum suppression's, within a class.
  max_detections: K, the detections kept per image (COCO's AR100 counts 100).
  lambda_coord, lambda_noobj: the YOLO loss's weights (5 and 0.5 in the paper).
  visual_score_threshold: the score a detection needs to be drawn in the pictures.
  train_on_difficult: whether VOC's difficult objects are training targets (darknet's
    voc_label.py leaves them out; they count neither way in VOC's AP). Crowd boxes never are.

Eval metrics of each split: the loss terms (means), and from every image's detections
  mAP50          PASCAL VOC mAP at IoU 0.5, all-point interpolation (VOC 2010+): the primary one;
  mAP50_11point  the same with VOC 2007's 11-point interpolation;
  coco_AP, coco_AP50, coco_AP75, coco_AR100   COCOeval's (`metrics.detection.coco_evaluation`).
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from vision_jax import config as config_lib
from vision_jax import plotting
from vision_jax.detection.drawing import draw_boxes
from vision_jax.losses.yolo import yolo_decode, yolo_loss, yolo_targets
from vision_jax.metrics import detection as detection_metrics
from vision_jax.models.registry import build_model
from vision_jax.tasks.base import Batch, Task, masked_mean, to_host_images
from vision_jax.train.optimizers import make_optimizer
from vision_jax.train.state import TrainState

# The names evaluate_outputs reports, in its order.
SPLIT_METRICS = ("mAP50", "mAP50_11point", "coco_AP", "coco_AP50", "coco_AP75", "coco_AR100")
# Ground truth travels with the detections to the host under these names (eval_outputs).
_TRUTH = {"boxes": "true_boxes", "labels": "true_labels", "box_mask": "true_valid"}
# Optional per-box ground truth: VOC's difficult, COCO's crowd and stored area (COCO's
# small/medium/large go by the stored area, not the box's).
_TRUTH_FLAGS = {"difficult": "true_difficult", "crowd": "true_crowd", "area": "true_area"}


class DetectionTask(Task):
  """Trains `config.model` (a detector; num_classes from the data) with its named losses."""

  RULES = {
    "detection.score_threshold": config_lib.bound(0),
    "detection.iou_threshold": config_lib.bound(0, 1),
    "detection.max_detections": config_lib.bound(1, integer=True),
    "detection.lambda_coord": config_lib.bound(0),
    "detection.lambda_noobj": config_lib.bound(0),
    "detection.visual_score_threshold": config_lib.bound(0),
    "detection.train_on_difficult": config_lib.one_of(True, False),
    # The detector's own model settings (vision_jax/models/yolo.py).
    "model.grid_size": config_lib.bound(1, integer=True),
    "model.boxes_per_cell": config_lib.bound(1, integer=True),
    "model.head_features": config_lib.bound(0, integer=True),
    "model.backbone_kwargs.width": config_lib.bound(0, low_open=True),
  }

  def __init__(self, config, spec):
    super().__init__(config, spec)
    self.model = build_model(config.model, num_classes=spec.num_classes)
    self.settings = config.detection
    # The latest evaluation of each split (`metrics.detection.VocEvaluation`), for the pictures.
    self.last_evaluation: dict[str, detection_metrics.VocEvaluation] = {}

  def init_state(self, rng, batch, total_steps):
    self.tx = make_optimizer(self.config.optim, total_steps)
    variables = self.model.init({"params": rng, "dropout": rng}, batch["image"], train=False)
    params = variables.pop("params")
    return TrainState.create(params, self.tx, dict(variables))

  # ----------------------------------------------------------------------------------------------
  # What is particular to the detector (YOLOv1).

  def losses(self, outputs: jnp.ndarray, batch: Batch) -> dict[str, jnp.ndarray]:
    """The detector's named losses, each [batch] per image, from its output and the batch's
    ground truth. YOLOv1: `yolo_loss`'s five terms (output: predictions [b, S, S, B * 5 + C]).

    Crowd boxes, and unless `detection.train_on_difficult` difficult ones, are not targets; an
    image without boxes trains only its no-object confidences.
    """
    valid = batch["box_mask"]
    if "crowd" in batch:
      valid = valid & ~batch["crowd"]
    if "difficult" in batch and not self.settings.get("train_on_difficult", False):
      valid = valid & ~batch["difficult"]
    targets = yolo_targets(
      batch["boxes"],
      batch["labels"],
      valid,
      batch["image"].shape[1:3],
      self.model.grid_size,
      self.spec.num_classes,
    )

    def image_loss(predictions, targets):
      one = jax.tree.map(lambda x: x[None], (predictions, targets))
      return yolo_loss(*one, self.settings.lambda_coord, self.settings.lambda_noobj)

    return jax.vmap(image_loss)(outputs, targets)

  def detect(self, outputs: jnp.ndarray, image_size: tuple[int, int], score_threshold: float):
    """Detections, K = detection.max_detections per image: {"boxes" [b, K, 4] pixel x0, y0, x1,
    y1, "scores" [b, K], "labels" [b, K] int32, "valid" [b, K] bool}, by descending score."""
    return yolo_decode(
      outputs,
      self.spec.num_classes,
      tuple(image_size),
      score_threshold,
      self.settings.iou_threshold,
      self.settings.max_detections,
    )

  # ----------------------------------------------------------------------------------------------

  def apply(self, params, state: TrainState, batch: Batch, rng, train: bool):
    """(the model's output, its new state). In training with `train.frozen_batch_stats`, the
    model runs as at inference (BatchNorm on its running statistics, which stay as they are;
    no dropout), as ClassificationTask: for a pretrained backbone whose statistics should not
    drift on small detection batches."""
    variables = {"params": params, **state.model_state}
    if not train or self.config.train.get("frozen_batch_stats", False):
      outputs, _ = self.model.apply(variables, batch["image"], train=False)
      return outputs, state.model_state
    (outputs, _), model_state = self.model.apply(
      variables, batch["image"], train=True, rngs={"dropout": rng}, mutable=list(state.model_state)
    )
    return outputs, dict(model_state)

  def train_step(self, state, batch, rng):
    def total_loss(params):
      outputs, model_state = self.apply(params, state, batch, rng, train=True)
      named = {k: jnp.mean(v) for k, v in self.losses(outputs, batch).items()}
      return sum(named.values()), (named, model_state)

    (loss, (named, model_state)), grads = jax.value_and_grad(total_loss, has_aux=True)(state.params)
    state = state.apply_gradients(self.tx, grads, model_state=model_state)
    return state, {"loss": loss, **{f"loss_{k}": v for k, v in named.items()}}

  def predict(self, state: TrainState, batch: Batch) -> jnp.ndarray:
    """The model's output at inference for batch["image"]."""
    return self.apply(state.params, state, batch, None, train=False)[0]

  def eval_step(self, state, batch):
    named = self.losses(self.predict(state, batch), batch)
    out = {f"loss_{k}": masked_mean(v, batch["mask"]) for k, v in named.items()}
    out["loss"] = masked_mean(sum(named.values()), batch["mask"])
    return out

  def eval_outputs(self, state, batch):
    """Each image's detections and ground truth (the metrics need both; padded to fixed sizes)."""
    detections = self.detect(
      self.predict(state, batch), batch["image"].shape[1:3], self.settings.score_threshold
    )
    truth = {_TRUTH[k]: batch[k] for k in _TRUTH}
    truth.update({name: batch[k] for k, name in _TRUTH_FLAGS.items() if k in batch})
    return {**detections, **truth}

  @staticmethod
  def images_of(outputs: dict[str, np.ndarray]):
    """(ground truths, detections) per image, as `metrics.detection` takes them."""
    truths = detection_metrics.ground_truths_from_batch(
      outputs["true_boxes"],
      outputs["true_labels"],
      outputs["true_valid"],
      crowd=outputs.get("true_crowd"),
      difficult=outputs.get("true_difficult"),
      areas=outputs.get("true_area"),
    )
    detections = detection_metrics.detections_from_batch(
      outputs["boxes"], outputs["scores"], outputs["labels"], outputs["valid"]
    )
    return truths, detections

  def evaluate_outputs(self, outputs, split):
    truths, detections = self.images_of(outputs)
    classes = range(self.spec.num_classes)
    voc = detection_metrics.voc_evaluation(truths, detections, class_ids=classes)
    voc07 = detection_metrics.voc_evaluation(
      truths, detections, eleven_point=True, class_ids=classes
    )
    coco = detection_metrics.coco_evaluation(truths, detections, class_ids=classes)
    self.last_evaluation[split] = voc
    values = (voc.mean_average_precision, voc07.mean_average_precision)
    values += tuple(coco.stats[k] for k in ("AP", "AP50", "AP75", "AR100"))
    return dict(zip(SPLIT_METRICS, map(float, values)))

  def eval_metric_names(self, state, batch):
    return sorted(list(super().eval_metric_names(state, batch)) + list(SPLIT_METRICS))

  @property
  def primary_metric(self) -> str:
    return "mAP50"

  def coco_results(
    self, outputs: dict[str, np.ndarray], path: str, image_ids=None, category_ids=None
  ) -> str:
    """Writes a split's detections (its `eval_outputs`, gathered by `train.loop.split_outputs`)
    as a COCO results JSON file at `path`, for the COCO server or pycocotools' loadRes.
    image_ids, category_ids: as `metrics.detection.coco_results` (default: positions, labels)."""
    _, detections = self.images_of(outputs)
    results = detection_metrics.coco_results(detections, image_ids, category_ids)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
      json.dump(results, f)
    os.replace(path + ".tmp", path)
    return path

  def visuals(self, state, batch, directory, prefix):
    """Up to 8 images with their true boxes above the detections scoring over
    detection.visual_score_threshold, and each class's precision-recall curve of the latest
    evaluation of the first eval split."""
    n = min(8, batch["image"].shape[0])
    detections = jax.device_get(
      self.detect(
        self.predict(state, batch),
        batch["image"].shape[1:3],
        self.settings.get("visual_score_threshold", 0.2),
      )
    )
    raw = to_host_images(batch.get("raw_image", batch["image"]))[:n]
    if raw.dtype != np.uint8:  # the preprocessed images: back to [0, 255] by their own range
      raw = np.uint8(255 * plotting.to_unit_range(raw))
    if raw.shape[-1] == 1:
      raw = np.repeat(raw, 3, axis=-1)
    # Boxes are in the model's input's pixels; the raw image may be of another size.
    scale = np.array([raw.shape[2], raw.shape[1]] * 2) / np.array(
      [batch["image"].shape[2], batch["image"].shape[1]] * 2
    )
    truth = jax.device_get({k: batch[k] for k in ("boxes", "labels", "box_mask")})
    names = self.spec.class_names
    rows = [[], []]
    for i in range(n):
      rows[0].append(
        draw_boxes(
          raw[i], truth["boxes"][i] * scale, truth["labels"][i], None, names, truth["box_mask"][i]
        )
      )
      rows[1].append(
        draw_boxes(
          raw[i],
          detections["boxes"][i] * scale,
          detections["labels"][i],
          detections["scores"][i],
          names,
          detections["valid"][i],
        )
      )
    pictures = {
      f"{prefix}detections": plotting.image_rows(
        [np.stack(r) for r in rows],
        ["truth", "detected"],
        os.path.join(directory, f"{prefix}detections.png"),
      )
    }
    split = self.config.data.eval_splits[0]
    if split in self.last_evaluation:
      voc = self.last_evaluation[split]
      curves = {
        f"{names[c]} (AP {voc.average_precision[c]:.2f})": (curve.recall, curve.precision)
        for c, curve in voc.curves.items()
        if curve.num_positives
      }
      if curves:
        pictures[f"{prefix}precision_recall"] = plotting.precision_recall_curves(
          curves,
          os.path.join(directory, f"{prefix}precision_recall.png"),
          title=f"{split}: mAP50 {voc.mean_average_precision:.3f}",
        )
    return pictures
