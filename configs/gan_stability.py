"""DCGAN, WGAN and WGAN-GP with the same generator and critic, the same number of generator
updates and the same evaluation, for experiments/gan_stability.py.

Each method keeps its paper's loss, optimizer, critic steps and Lipschitz constraint
(configs/gan_base.py); the networks are shared: DCGAN's, with `stability.critic_norm` in the critic
for all three (LayerNorm by default, since WGAN-GP's penalty forbids BatchNorm there).
`model.*.width`, `train.steps`, `train.eval_every`, `data.*` and `gan.classifier.*` here apply to
all three runs.

Variants: mnist (MNIST instead of CIFAR-10), smoke (tiny, for tests).
"""

import ml_collections

from configs.gan_base import gan_config
from vision_jax.config import parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, smoke=False, mnist=False)
  c = gan_config("dcgan", "mnist" if arg.mnist else "cifar10", smoke=arg.smoke)
  c.name = "gan_stability"
  c.stability = ml_collections.ConfigDict()
  c.stability.methods = ("dcgan", "wgan", "wgan_gp")
  c.stability.critic_norm = "layer"
  c.stability.images_per_update = 16 if arg.smoke else 64  # train.batch_size = this x n_critic
  # Evaluate often, on a held-out part of the training split (cheaper than the 10,000 test images).
  if not arg.smoke:
    c.data.validation_size = 2000
    c.data.eval_splits = ("validation",)
    c.train.eval_every = 250
    c.train.visuals_every = 1000
  return c
