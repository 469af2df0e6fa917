"""LeNet-5 on scikit-learn's handwritten digits: the `make demo` job.

1,797 real 8x8 digits (UCI's optical recognition set, bundled with scikit-learn, so it needs no
download and no files) brought to 32x32, 1,438 for training and 359 held out for the test.
Command: python -m experiments.lenet5_digits --workdir runs/demo
Expect: about 1-3% test error in about a minute on a 2-core CPU.
"""

from configs.common import base_config
from vision_jax.config import parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, smoke=False)
  c = base_config()
  c.name = "lenet5_digits"
  c.data.dataset = "sklearn:digits"
  c.data.mean = (0.25,)
  c.data.std = (0.35,)
  c.data.augment.crop_padding = 2  # small shifts: 1,437 images are few
  c.model.name = "lenet5"
  c.model.pooling = "max"
  c.model.activation = "relu"
  c.model.partial_c3 = True
  c.model.dtype = "float32"
  c.optim.name = "adam"
  c.optim.learning_rate = 2e-3
  c.optim.schedule = "cosine"
  c.train.batch_size = 64
  c.train.steps = 600  # ~27 epochs
  c.train.log_every = 50
  c.train.eval_every = 150
  c.train.checkpoint_every = 150
  c.train.eval_batch_size = 360
  c.train.visuals_every = 300
  c.wandb.group = "lenet5_digits"
  if arg.smoke:
    c.train.steps = 20
    c.train.log_every = 10
    c.train.eval_every = 10
    c.train.checkpoint_every = 10
    c.train.visuals_every = 0
    c.wandb.mode = "disabled"
  return c
