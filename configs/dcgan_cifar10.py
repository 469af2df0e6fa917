"""DCGAN on CIFAR-10: see configs/gan_base.py for the method's settings and experiments/dcgan_cifar10.py
for the paper, the command and what to expect.

Variants: smoke (tiny networks, a few steps, no feature classifier: for tests).
"""

from configs.gan_base import gan_config
from vision_jax.config import parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, smoke=False)
  return gan_config("dcgan", "cifar10", smoke=arg.smoke)
