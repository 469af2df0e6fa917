"""Eigenfaces: Turk & Pentland 1991, "Eigenfaces for recognition", J. Cognitive Neuroscience 3(1).
Faces are projected on the principal components of the training faces and named after the
nearest training face in that space. The paper reports 96% correct over lighting variation on
its own 16-person database; here the AT&T/ORL database (40 people x 10 images), 5 random images
per person to train and 5 to test.

    python -m experiments.eigenfaces_orl --workdir runs/eigenfaces_orl
    python -m experiments.eigenfaces_orl --workdir runs/eigenfaces_orl_loo --variant leave_one_out

Writes: accuracy_vs_components.png, mean_face.png, eigenfaces.png, reconstructions.png,
explained_variance.png, result.json (accuracy per component count, mean and std over repeats).
"""

from __future__ import annotations

import copy
import os

import jax.numpy as jnp
import numpy as np

from vision_jax import cli, plotting
from vision_jax.classical.pca import fit_pca
from vision_jax.config import bound, checked_where_used, each
from vision_jax.data.augment import to_float
from vision_jax.data.pipeline import get_splits
from vision_jax.errors import ConfigError
from vision_jax.metrics.identification import identification_accuracy


def _faces(split) -> tuple[np.ndarray, np.ndarray, tuple]:
  """(faces [n, pixels] float in [0, 1], labels [n], image shape) of a split."""
  arrays = split.arrays()
  images = np.asarray(to_float(jnp.asarray(arrays["image"]), (0.0,), (1.0,)))
  return images.reshape(len(images), -1), arrays["label"], images.shape[1:]


RULES = {
  "eigenfaces.repeats": bound(1, integer=True),
  "eigenfaces.components": each(bound(1, integer=True)),
  "eigenfaces.num_components": checked_where_used(
    "experiments/eigenfaces_orl.py, against eigenfaces.components"
  ),
  "eigenfaces.show": bound(1, integer=True),
  "eigenfaces.reconstruct_faces": bound(1, integer=True),
  "eigenfaces.reconstruct_components": each(bound(1, integer=True)),
}


def run(config, workdir: str) -> dict:
  ec = config.eigenfaces
  if ec.repeat_over not in ("seed", "fold"):
    raise ConfigError(f"eigenfaces.repeat_over must be 'seed' or 'fold', got {ec.repeat_over!r}")
  accuracies = []  # [repeats, component counts]
  for r in range(ec.repeats):
    data = copy.deepcopy(config.data)
    if ec.repeat_over == "seed":
      data.protocol.seed = config.data.protocol.seed + r
    else:
      data.protocol.fold = r
    _, splits = get_splits(data)
    train, train_labels, shape = _faces(splits["train"])
    test, test_labels, _ = _faces(splits["test"])
    pca = fit_pca(train)
    counts = [k for k in ec.components if k <= pca.components.shape[0]]
    accuracies.append(
      [
        identification_accuracy(
          pca.transform(train, k), train_labels, pca.transform(test, k), test_labels, ec.metric
        )
        for k in counts
      ]
    )
    if r == 0:
      first = (pca, test, shape)
  accuracies = 100.0 * np.asarray(accuracies)
  mean, std = accuracies.mean(axis=0), accuracies.std(axis=0)
  if ec.num_components not in counts:
    raise ConfigError(
      f"eigenfaces.num_components {ec.num_components} must be one of the evaluated counts {counts}"
    )
  reported = counts.index(ec.num_components)

  os.makedirs(workdir, exist_ok=True)
  pca, test, shape = first
  path = lambda name: os.path.join(workdir, name)
  split_name = (
    f"{10 - config.data.protocol.test_per_person} train / {config.data.protocol.test_per_person} test "
    f"per person, {ec.repeats} {ec.repeat_over}s"
  )
  plotting.line_plot(
    counts,
    {"eigenfaces + 1-NN": mean},
    path("accuracy_vs_components.png"),
    "eigenfaces (components)",
    "identification accuracy (%)",
    title=f"ORL, {split_name}",
    errors={"eigenfaces + 1-NN": std},
    xscale="log",
  )
  plotting.line_plot(
    np.arange(1, len(pca.explained_variance_ratio) + 1),
    {"cumulative": np.cumsum(np.asarray(pca.explained_variance_ratio))},
    path("explained_variance.png"),
    "components",
    "fraction of variance",
    xscale="log",
  )
  plotting.image_grid(
    plotting.to_unit_range(np.asarray(pca.mean).reshape(1, *shape)),
    path("mean_face.png"),
    cols=1,
    titles=["mean face"],
  )
  shown = np.asarray(pca.components[: ec.show]).reshape(-1, *shape)
  plotting.image_grid(
    plotting.to_unit_range(shown),
    path("eigenfaces.png"),
    cols=8,
    titles=[f"eigenface {i + 1}" for i in range(len(shown))],
  )
  faces = test[: ec.reconstruct_faces]
  ks = [k for k in ec.reconstruct_components if k <= pca.components.shape[0]]
  rows, titles = [], []
  for face in faces:
    rows.append(face)
    titles.append("original")
    for k in ks:
      rows.append(np.asarray(pca.inverse_transform(pca.transform(face[None], k)))[0])
      titles.append(f"k = {k}")
  plotting.image_grid(
    np.clip(np.stack(rows), 0, 1).reshape(-1, *shape),
    path("reconstructions.png"),
    cols=len(ks) + 1,
    titles=titles,
  )
  return {
    "value": round(float(mean[reported]), 2),
    "steps": 0,
    "std": round(float(std[reported]), 2),
    "num_components": ec.num_components,
    "protocol": split_name,
    "accuracy_vs_components": {
      int(k): [round(float(m), 2), round(float(s), 2)] for k, m, s in zip(counts, mean, std)
    },
  }


if __name__ == "__main__":
  cli.main(
    "eigenfaces_orl",
    run,
    paper="Turk & Pentland 1991 (method); ORL 5/5 protocol",
    metric="identification accuracy (%) at eigenfaces.num_components (default 50)",
    paper_value=None,
  )
