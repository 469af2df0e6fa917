"""The keys every experiment config has, with their defaults. Configs start from `base_config()`."""

from __future__ import annotations

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.name = ""
  c.init_from = ""  # saved variables to start from (scripts.import_torchvision, save_variables)
  c.init_from_prefix = (
    ""  # the module they go under, e.g. "backbone" (a classifier's, in a detector)
  )

  c.data = ml_collections.ConfigDict()
  c.data.dataset = "idx:mnist"  # tfds:<name> or <format>:<path or name under $VISION_JAX_DATASETS>
  c.data.train_split = "train"
  c.data.eval_splits = ("test",)
  c.data.validation_size = 0  # hold out this many training examples as split "validation"
  c.data.train_size = 0  # use only the first N training examples (0 = all)
  c.data.on_device = "auto"  # keep the training split on the devices: auto | yes | no
  c.data.pad_to = 0  # zero-pad images to this size (MNIST 28 -> 32 for LeNet-5)
  c.data.mean = (0.0,)
  c.data.std = (1.0,)
  c.data.augment = ml_collections.ConfigDict()
  c.data.augment.crop_padding = 0  # random crop after padding by this many pixels
  c.data.augment.flip = False  # random horizontal flip
  c.data.augment.noise_std = 0.0  # Gaussian noise on the standardised input

  c.model = ml_collections.ConfigDict()
  c.model.name = "lenet5"

  c.loss = ml_collections.ConfigDict()
  c.loss.name = "cross_entropy"  # cross_entropy | mse | focal
  c.loss.label_smoothing = 0.0
  c.loss.focal_gamma = 2.0
  c.loss.aux_weight = 0.3  # weight of auxiliary classifiers' losses (GoogLeNet)

  c.optim = ml_collections.ConfigDict()
  c.optim.name = "adam"  # sgd | momentum | nesterov | adam | adamw | adagrad | rmsprop
  c.optim.learning_rate = 1e-3
  c.optim.momentum = 0.9
  c.optim.b1 = 0.9
  c.optim.b2 = 0.999
  c.optim.decay = 0.9  # rmsprop's squared-gradient decay
  c.optim.schedule = "constant"  # constant | step | cosine
  c.optim.boundaries = ()  # steps at which the step schedule multiplies by decay_factor
  c.optim.decay_factor = 0.1
  c.optim.warmup_steps = 0
  c.optim.warmup_shape = (
    "linear"  # linear (from warmup_factor x the rate) | constant (at warmup_factor x the rate)
  )
  c.optim.warmup_factor = 0.0
  c.optim.weight_decay = 0.0
  c.optim.decay_kernels_only = False
  c.optim.grad_clip_norm = 0.0
  c.optim.eps = None  # Adam's, AdamW's and RMSprop's epsilon; None = 1e-8
  c.optim.rmsprop_momentum = 0.0
  # Transfer learning (vision_jax/train/optimizers.py): parameters whose path ("module/.../name")
  # matches the regex `head` are the new head; the rest train at backbone_lr_scale times the
  # learning rate (0 = frozen), except those matching a regex of `frozen`, which do not train.
  c.optim.head = "head/"
  c.optim.backbone_lr_scale = 1.0
  c.optim.frozen = ()

  c.train = ml_collections.ConfigDict()
  c.train.seed = 0
  c.train.steps = 1000
  c.train.batch_size = 128
  c.train.eval_batch_size = 1000
  c.train.log_every = 100  # also the number of steps scanned per jitted call
  c.train.scan_steps = (
    "auto"  # one scanned call per log_every steps: auto (not on CPUs) | true | false
  )
  c.train.eval_every = 1000
  c.train.checkpoint_every = 1000
  c.train.keep_checkpoints = 3
  c.train.best_metric = ""  # e.g. "validation/error": keep the best checkpoint by it
  c.train.best_mode = "min"
  c.train.visuals_every = 0
  c.train.frozen_batch_stats = False  # BatchNorm in inference mode while training (a linear probe)
  c.train.early_stopping = ml_collections.ConfigDict()
  c.train.early_stopping.metric = ""  # e.g. "validation/error"; "" = off
  c.train.early_stopping.mode = "min"
  c.train.early_stopping.patience = 0  # evaluations without improvement before stopping
  c.train.early_stopping.min_delta = 0.0
  c.train.early_stopping.restore_best = (
    True  # end on the best evaluation's parameters, not the last
  )

  c.wandb = ml_collections.ConfigDict()
  c.wandb.mode = "auto"  # auto (online when logged in, else offline) | online | offline | disabled
  c.wandb.project = "vision_jax"
  c.wandb.entity = ""
  c.wandb.group = ""
  c.wandb.name = ""
  return c
