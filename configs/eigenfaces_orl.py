"""Eigenfaces on ORL (Turk & Pentland 1991): PCA of the training faces, nearest neighbour in face space.

Command: python -m experiments.eigenfaces_orl --workdir runs/eigenfaces_orl
Protocol: closed-set identification, 5 random images per person train and 5 test, repeated over
`eigenfaces.repeats` seeds (mean and std reported). No training steps: PCA is closed form.
Variants: smoke (two repeats, few component counts, for tests), leave_one_out (9 train / 1 test,
the ten folds of one seed).
"""

import ml_collections

from configs.common import base_config
from vision_jax.config import parse_arg


def face_protocol(name: str = "identification") -> ml_collections.ConfigDict:
  """`config.data.protocol` for ORL (see vision_jax/data/face_protocols.py)."""
  return ml_collections.ConfigDict(
    {
      "name": name,
      "seed": 0,
      "test_per_person": 5,
      "fold": 0,
      "num_unseen": 10,
      "seen_test_per_person": 0,
    }
  )


def get_config(arg=None):
  arg = parse_arg(arg, smoke=False, leave_one_out=False)
  c = base_config()
  c.name = "eigenfaces_orl"
  c.data.dataset = "image_folder:orl_faces"
  c.data.protocol = face_protocol("identification")
  c.data.eval_splits = ("test",)
  c.train.steps = 0
  c.wandb.mode = "disabled"

  c.eigenfaces = ml_collections.ConfigDict()
  # Accuracy against the number of eigenfaces; counts above the training set's rank are skipped.
  c.eigenfaces.components = (1, 2, 3, 5, 7, 10, 15, 20, 30, 40, 50, 70, 100, 150, 199)
  c.eigenfaces.num_components = 50  # the count whose accuracy is the reported result
  c.eigenfaces.repeats = (
    10  # random splits (seeds protocol.seed + r), or folds (repeat_over="fold")
  )
  c.eigenfaces.repeat_over = "seed"  # seed | fold
  c.eigenfaces.metric = "euclidean"  # distance in face space: euclidean | cosine
  c.eigenfaces.show = 16  # eigenfaces drawn
  c.eigenfaces.reconstruct_faces = 6  # test faces reconstructed ...
  c.eigenfaces.reconstruct_components = (5, 10, 25, 50, 100, 199)  # ... from this many eigenfaces
  if arg.leave_one_out:
    c.data.protocol.test_per_person = 1
    c.eigenfaces.repeat_over = "fold"
    c.eigenfaces.components = (1, 2, 3, 5, 7, 10, 15, 20, 30, 40, 50, 70, 100, 150, 200, 300, 359)
  if arg.smoke:
    c.eigenfaces.repeats = 2
    c.eigenfaces.components = (1, 5, 20, 50)
    c.eigenfaces.num_components = 20
    c.eigenfaces.reconstruct_components = (5, 50)
  return c


def get_sweeps():
  """Distance in face space: `python -m scripts.sweep eigenfaces_orl --sweep metric`."""
  return {"metric": [{"eigenfaces.metric": "euclidean"}, {"eigenfaces.metric": "cosine"}]}
