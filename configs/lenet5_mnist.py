"""LeNet-5 on MNIST (LeCun et al. 1998, "Gradient-based learning applied to document recognition").

Paper: 0.95% test error without distortions (Section III.C, Fig. 14).
Command: python -m experiments.lenet5_mnist --workdir runs/lenet5_mnist
Expect: at most 1.0% test error in a few minutes on a 2-core CPU (see README's results table).
Variants: smoke (a few steps on a subset, for tests), paper (the paper's tanh, trainable
subsampling; everything else as default).
"""

from configs.common import base_config
from vision_jax.config import parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, smoke=False, paper=False)
  c = base_config()
  c.name = "lenet5_mnist"
  c.data.dataset = "idx:mnist"
  c.data.pad_to = 32  # the paper's 28x28 digits centred in a 32x32 field
  c.data.mean = (0.1307,)
  c.data.std = (0.3081,)
  c.model.name = "lenet5"
  c.model.pooling = "max"
  c.model.activation = "relu"
  c.model.partial_c3 = True
  c.model.dropout = 0.0
  c.model.dtype = "float32"
  c.optim.name = "adam"
  c.optim.learning_rate = 2e-3
  c.optim.schedule = "cosine"
  c.train.batch_size = 128
  c.train.steps = 4000  # ~8.5 epochs of 60,000
  c.train.log_every = 100
  c.train.eval_every = 1000
  c.train.checkpoint_every = 1000
  c.wandb.group = "lenet5_mnist"
  if arg.paper:
    c.model.pooling = "subsample"
    c.model.activation = "scaled_tanh"
  if arg.smoke:
    c.data.train_size = 1024
    c.train.steps = 20
    c.train.log_every = 10
    c.train.eval_every = 20
    c.train.checkpoint_every = 10
    c.wandb.mode = "disabled"
  return c


# Regularisation only matters where a model can overfit: 1,000 training digits, 256 epochs.
# Every point holds out the same 5,000 validation digits, so all train on the same 1,000.
_SMALL_DATA = {
  "data.validation_size": 5000,
  "data.train_size": 1000,
  "data.eval_splits": ("validation", "test"),
  "train.steps": 2000,
  "train.log_every": 100,
  "train.eval_every": 100,
  "train.checkpoint_every": 500,
}


def get_sweeps():
  """The lecture's optimizer, loss and regularisation ablations on LeNet-5/MNIST:
  `python -m scripts.sweep lenet5_mnist --sweep NAME`."""
  return {
    "optimizers": [
      {"optim.name": "sgd", "optim.learning_rate": 0.1},
      {"optim.name": "momentum", "optim.learning_rate": 0.02},
      {"optim.name": "nesterov", "optim.learning_rate": 0.02},
      {"optim.name": "adam", "optim.learning_rate": 2e-3},
      {"optim.name": "adagrad", "optim.learning_rate": 0.05},
      # 5e-4 left RMSprop far behind at 400 steps (4.79% vs 1.96% test error at 2e-3).
      {"optim.name": "rmsprop", "optim.learning_rate": 2e-3},
    ],
    "losses": [
      {"loss.name": "cross_entropy"},
      {"loss.name": "mse"},
      {"loss.name": "focal"},
    ],
    "regularisation": {
      "common": _SMALL_DATA,
      "points": [
        {},
        {"data.augment.crop_padding": 2},  # random shifts of up to 2 pixels
        {"model.dropout": 0.5},
        {"optim.weight_decay": 5e-4},
        {"train.early_stopping.metric": "validation/error", "train.early_stopping.patience": 5},
        {"train.early_stopping.metric": "validation/loss", "train.early_stopping.patience": 5},
        {"data.augment.crop_padding": 2, "model.dropout": 0.5, "optim.weight_decay": 5e-4},
      ],
    },
  }
