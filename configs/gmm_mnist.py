"""Gaussian mixtures by EM on PCA-reduced MNIST: how far a mixture of Gaussians gets as a model of
digits, measured as held-out log-likelihood against the number of components, and seen in samples.

Command: python -m experiments.gmm_mnist --workdir runs/gmm_mnist
Variants: smoke (a small subset, two mixture sizes, few iterations: for tests), diag (diagonal
covariances).
"""

import ml_collections

from configs.common import base_config
from vision_jax.config import parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, smoke=False, diag=False)
  c = base_config()
  c.name = "gmm_mnist"
  c.data.dataset = "idx:mnist"
  c.data.train_size = 10000  # EM's [components, examples, dim] responsibilities stay ~100 MB
  c.data.eval_splits = ("test",)
  c.train.seed = 0
  c.gmm = ml_collections.ConfigDict()
  c.gmm.pca_dims = 50  # PCA keeps ~82% of MNIST's pixel variance in 50 dimensions
  c.gmm.components = (1, 2, 5, 10, 20, 50)  # one mixture per size; the held-out curve is over these
  c.gmm.covariance_type = "diag" if arg.diag else "full"
  c.gmm.reg = 1e-3  # covariance floor, in squared PCA units (pixels in [0, 1])
  c.gmm.max_iter = 100
  c.gmm.tol = 1e-3  # stop when the mean log-likelihood per image improves by less than this
  c.gmm.num_samples = 32
  c.wandb.mode = "disabled"
  if arg.smoke:
    c.data.train_size = 1000
    c.gmm.pca_dims = 10
    c.gmm.components = (1, 4)
    c.gmm.max_iter = 10
    c.gmm.num_samples = 8
  return c


def get_sweeps():
  return {"covariance": [{"gmm.covariance_type": "full"}, {"gmm.covariance_type": "diag"}]}
