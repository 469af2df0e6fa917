"""CNN face embeddings on ORL: softmax cross-entropy (Taigman et al. 2014's DeepFace recipe of
classifying identities, then using the penultimate features), the contrastive loss (Hadsell,
Chopra & LeCun 2006), the triplet loss with batch-hard mining (Schroff et al. 2015's FaceNet
loss; Hermans et al. 2017's mining) and the additive angular margin (Deng et al. 2019, ArcFace),
compared in one table with the eigenfaces baseline (Turk & Pentland 1991).

    python -m experiments.face_embedding_orl --workdir runs/face_embedding_orl

Each loss trains `face_cnn` twice from scratch on the AT&T/ORL database:
- identification (closed set): 5 images of each of the 40 people train, the other 5 are queries
  named after their nearest training image (cosine of the embeddings): rank-1 accuracy.
- verification (open set): 10 people never seen in training; all 4,950 pairs of their 100 images
  (450 same-person pairs). ROC, AUC, TAR at FAR = `face.far`, and the accuracy at the threshold
  that is best on the pairs of the 300 training images.
No paper reports these numbers on ORL with this network; the table compares the losses.
Writes table.md (refreshed after every run), roc.png, and one workdir per (loss, protocol).
"""

from __future__ import annotations

import copy
import os

import numpy as np

from vision_jax import cli, plotting
from vision_jax.classical.pca import fit_pca
from vision_jax.config import bound
from vision_jax.data.augment import make_preprocess
from vision_jax.data.pipeline import get_splits
from vision_jax.errors import ConfigError
from vision_jax.metrics.identification import identification_accuracy
from vision_jax.metrics.verification import verification_report
from vision_jax.tasks import EmbeddingTask
from vision_jax.train.loop import train_and_evaluate

EVAL_SPLIT = {"identification": "test", "verification": "unseen"}
COLUMNS = [
  ("identification_accuracy", "identification acc. (%)"),
  ("auc", "verification AUC"),
  ("verification_accuracy", "verif. acc. at train threshold (%)"),
  ("tar_at_far", "TAR at FAR (%)"),
]


def _protocol_config(config, protocol: str, loss: str | None = None):
  c = copy.deepcopy(config)
  c.data.protocol.name = protocol
  c.data.eval_splits = (EVAL_SPLIT[protocol],)
  if loss is not None:
    c.loss.name = loss
  return c


def _scores(protocol: str, features: dict, far: float, metric: str) -> dict:
  """This protocol's metrics from {split: (features [n, d], labels [n])}."""
  if protocol == "identification":
    return {
      "identification_accuracy": 100.0
      * identification_accuracy(*features["train"], *features["test"], metric)
    }
  report = verification_report(*features["train"], *features["unseen"], far=far, metric=metric)
  return {
    "auc": report["auc"],
    "verification_accuracy": 100.0 * report["accuracy"],
    "tar_at_far": 100.0 * report["tar_at_far"],
    "train_pair_accuracy": 100.0 * report["train_accuracy"],
    "threshold": report["threshold"],
    "roc": (report["fpr"], report["tpr"]),
  }


def _eigenfaces_row(config) -> dict:
  """The eigenfaces baseline on both protocols: PCA of each protocol's training faces, Euclidean distance."""
  row, curve = {"method": "eigenfaces"}, None
  for protocol in config.face.protocols:
    _, splits = get_splits(_protocol_config(config, protocol).data)
    pixels = {
      name: (s.arrays()["image"].reshape(len(s), -1) / 255.0, s.arrays()["label"])
      for name, s in splits.items()
    }
    pca = fit_pca(pixels["train"][0])
    k = min(config.face.eigenfaces_components, pca.components.shape[0])
    codes = {name: (np.asarray(pca.transform(x, k)), y) for name, (x, y) in pixels.items()}
    scores = _scores(protocol, codes, config.face.far, "euclidean")
    curve = scores.pop("roc", curve)
    row.update(scores)
  return row, curve


def _write_table(rows: list[dict], path: str, far: float) -> None:
  header = (
    "| method | "
    + " | ".join(name.replace("FAR", f"FAR {100 * far:g}%") for _, name in COLUMNS)
    + " |"
  )
  lines = [header, "|" + "---|" * (len(COLUMNS) + 1)]
  for row in rows:
    cells = [
      f"{row[key]:.4f}" if key == "auc" and key in row else f"{row[key]:.1f}" if key in row else "-"
      for key, _ in COLUMNS
    ]
    lines.append(f"| {row['method']} | " + " | ".join(cells) + " |")
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")


RULES = {
  **EmbeddingTask.RULES,
  "face.far": bound(0, 1),
  "face.eigenfaces_components": bound(1, integer=True),
}


def run(config, workdir: str) -> dict:
  fc = config.face
  for protocol in fc.protocols:
    if protocol not in EVAL_SPLIT:
      raise ConfigError(
        f"face.protocols: unknown protocol {protocol!r}; valid: {', '.join(EVAL_SPLIT)}"
      )
  os.makedirs(workdir, exist_ok=True)
  baseline, baseline_curve = _eigenfaces_row(config)
  rows, curves, steps, train_wall = [baseline], {}, 0, 0.0
  eval_fn = make_preprocess(config.data)[
    1
  ]  # the same for every run: one compiled embedding per task
  if baseline_curve is not None:
    curves[f"eigenfaces (AUC {baseline['auc']:.3f})"] = baseline_curve
  for loss in fc.losses:
    row = {"method": loss}
    rows.append(row)
    for protocol in fc.protocols:
      c = _protocol_config(config, protocol, loss)
      summary = train_and_evaluate(c, os.path.join(workdir, f"{loss}_{protocol}"), EmbeddingTask)
      steps, train_wall = steps + summary["step"], train_wall + summary["train_wall_s"]
      _, splits = get_splits(c.data)
      task, state = summary["task"], summary["state"]
      features = {name: task.embed_split(state, split, eval_fn) for name, split in splits.items()}
      scores = _scores(protocol, features, fc.far, "cosine")
      if "roc" in scores:
        curves[f"{loss} (AUC {scores['auc']:.3f})"] = scores.pop("roc")
      row.update(scores)
      _write_table(rows, os.path.join(workdir, "table.md"), fc.far)
  _write_table(rows, os.path.join(workdir, "table.md"), fc.far)
  if curves:
    plotting.roc_curves(
      curves,
      os.path.join(workdir, "roc.png"),
      far=fc.far,
      title="ORL verification, 10 unseen people (4,950 pairs)",
    )
  best = max((r for r in rows if "auc" in r), key=lambda r: r["auc"], default=None)
  rounded = [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in rows]
  return {
    "value": round(best["auc"], 4) if best else None,
    "best_method": best["method"] if best else None,
    "steps": steps,
    "train_wall_s": round(train_wall, 1),
    "table": rounded,
  }


if __name__ == "__main__":
  cli.main(
    "face_embedding_orl",
    run,
    paper="Turk & Pentland 1991; Hadsell et al. 2006; Schroff et al. 2015; Deng et al. 2019",
    metric="verification AUC on unseen people (best method)",
    paper_value=None,
  )
