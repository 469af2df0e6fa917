"""The lecture's case against flattening: an MLP and LeNet-5 on MNIST at about the same number of
parameters (60,040 against 60,806), trained with the same recipe, then tested on the test set and
on the test set shifted by 2 pixels (right, left, down, up; the mean of the four).

Command: python -m experiments.mlp_vs_cnn --workdir runs/mlp_vs_cnn
Keys beyond base_config(): mlp_hidden (the MLP's hidden widths), shift (pixels).
The shared recipe lives in this config; model.* is set per arm by the experiment.
"""

from configs.common import base_config
from vision_jax.config import parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, smoke=False)
  c = base_config()
  c.name = "mlp_vs_cnn"
  c.data.dataset = "idx:mnist"
  c.data.pad_to = 32  # both models see the same 32x32 input: 1,024 pixels for the MLP
  c.data.mean = (0.1307,)
  c.data.std = (0.3081,)
  c.model.name = "lenet5"
  c.model.dtype = "float32"
  c.mlp_hidden = (58,)  # 1024*58 + 58 + 58*10 + 10 = 60,040 parameters
  c.shift = 2
  c.optim.name = "adam"
  c.optim.learning_rate = 2e-3
  c.optim.schedule = "cosine"
  c.train.batch_size = 128
  c.train.steps = 3000
  c.train.log_every = 100
  c.train.eval_every = 1000
  c.train.checkpoint_every = 1000
  c.wandb.group = "mlp_vs_cnn"
  if arg.smoke:
    c.data.train_size = 1024
    c.train.steps = 20
    c.train.log_every = 10
    c.train.eval_every = 20
    c.train.checkpoint_every = 20
    c.wandb.mode = "disabled"
  return c
