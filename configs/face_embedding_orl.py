"""CNN face embeddings on ORL, trained with four losses and compared on two protocols.

Command: python -m experiments.face_embedding_orl --workdir runs/face_embedding_orl
For each loss in `face.losses`, two trainings of `face_cnn` from scratch: on the closed-set
identification protocol (5 train / 5 test images of each of the 40 people) and on the open-set
verification protocol (10 people never seen in training; all pairs of their 100 images). The
eigenfaces baseline (PCA of the same training faces) is a row of the same table.
Variants: smoke (a few steps, the triplet loss only, for tests), loss=<name> (one loss only).
"""

import ml_collections

from configs.common import base_config
from configs.eigenfaces_orl import face_protocol
from vision_jax.config import parse_arg

LOSSES = ("cross_entropy", "contrastive", "triplet", "arcface")


def get_config(arg=None):
  arg = parse_arg(arg, smoke=False, loss="")
  c = base_config()
  c.name = "face_embedding_orl"
  c.data.dataset = "image_folder:orl_faces"
  c.data.protocol = face_protocol("identification")  # the experiment runs both protocols
  c.data.eval_splits = ("test",)
  c.data.mean = (0.4417,)  # ORL's pixel mean and std
  c.data.std = (0.1958,)
  c.data.augment.crop_padding = 6  # shifts of up to 6 pixels
  c.data.augment.flip = True  # faces are nearly symmetric
  c.data.augment.brightness = 0.1
  c.model.name = "face_cnn"
  c.model.embedding_dim = 128
  c.model.widths = (16, 32, 64, 128)
  c.model.input_pool = 2  # 56x46 faces
  c.loss.name = "triplet"
  c.loss.contrastive_margin = 1.0  # on unit vectors: different people at least 60 degrees apart
  c.loss.triplet_margin = 0.2
  c.loss.arcface_scale = 30.0
  c.loss.arcface_margin = 0.3
  c.optim.name = "adamw"
  c.optim.learning_rate = 2e-3
  c.optim.weight_decay = 5e-4
  c.optim.schedule = "cosine"
  c.optim.warmup_steps = 30
  # Random batches of 64 of ORL's 200 (or 300) training faces hold about 1.3 (or 1.9) other
  # images of each anchor's person: positives for the pair and triplet losses. The schedule is
  # sized for a shared 2-core CPU (about 0.4 s a step); longer runs are better on a GPU.
  c.train.batch_size = 64
  c.train.steps = 400
  c.train.log_every = 100
  c.train.eval_every = 400
  c.train.checkpoint_every = 400
  c.train.eval_batch_size = (
    400  # a whole ORL split per batch: in-batch nearest neighbour = whole split
  )
  c.wandb.group = "face_embedding_orl"

  c.face = ml_collections.ConfigDict()
  c.face.losses = LOSSES
  c.face.protocols = ("identification", "verification")
  c.face.far = 0.01  # report the true accept rate at this false accept rate
  c.face.eigenfaces_components = 50  # the eigenfaces baseline row
  if arg.loss:
    if arg.loss not in LOSSES:
      raise ValueError(f"loss={arg.loss!r}: valid losses are {', '.join(LOSSES)}")
    c.face.losses = (arg.loss,)
  if arg.smoke:
    c.face.losses = c.face.losses if arg.loss else ("triplet",)
    c.model.widths = (8, 8, 16, 16)
    c.model.embedding_dim = 16
    c.train.batch_size = 40
    c.train.steps = 4
    c.train.log_every = 2
    c.train.eval_every = 4
    c.train.checkpoint_every = 4
    c.optim.warmup_steps = 0
    c.wandb.mode = "disabled"
  return c


def get_sweeps():
  """`python -m scripts.sweep face_embedding_orl --sweep NAME`."""
  return {
    "triplet_margin": [
      {"face.losses": ("triplet",), "loss.triplet_margin": m} for m in (0.1, 0.2, 0.4)
    ],
    "arcface_margin": [
      {"face.losses": ("arcface",), "loss.arcface_margin": m} for m in (0.1, 0.3, 0.5)
    ],
  }
