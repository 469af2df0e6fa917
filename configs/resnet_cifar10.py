"""ResNets on CIFAR-10 (He, Zhang, Ren & Sun 2015, "Deep Residual Learning for Image Recognition",
Section 4.2, Table 6): ResNet-20/32/44/56/110, and their plain counterparts for Figure 6.

Paper's test error (%): ResNet-20 8.75, -32 7.51, -44 7.17, -56 6.97, -110 6.43.
Recipe: SGD 0.1, momentum 0.9, weight decay 1e-4, batch 128, learning rate /10 at 32k and 48k
iterations, stop at 64k (ResNet-110 first runs 400 iterations at 0.01, the paper's warm-up "until
the training error is below 80%", as a fixed count); 4-pixel padding, random 32x32 crop,
horizontal flip; trained on all 50k training images for the test numbers (variant `val` holds
out 5k for validation, 45k/5k).
Data: CIFAR-10 re-encoded as JPEG (quality 75) from $VISION_JAX_DATASETS/cifar10: expect
accuracies slightly off the paper's.

Command: python -m experiments.resnet_cifar10 --workdir runs/resnet20_cifar10 --variant model=resnet20
Needs a GPU for the full 64k steps (about 2 minutes on an H200; many hours on a 2-core CPU).
Variants: model=<resnet20|resnet32|resnet44|resnet56|resnet110|plain20|...>, val, smoke.
"""

from configs.common import base_config
from vision_jax.config import parse_arg

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def get_config(arg=None):
  arg = parse_arg(arg, model="resnet20", val=False, smoke=False)
  c = base_config()
  c.name = f"{arg.model}_cifar10"
  c.data.dataset = "image_folder:cifar10"
  c.data.mean = CIFAR10_MEAN
  c.data.std = CIFAR10_STD
  c.data.augment.crop_padding = 4
  c.data.augment.flip = True
  if arg.val:
    c.data.validation_size = 5000
    c.data.eval_splits = ("validation", "test")
    c.train.best_metric = "validation/error"
  c.model.name = arg.model
  c.model.dtype = "float32"
  c.model.dropout = 0.0
  c.optim.name = "momentum"
  c.optim.learning_rate = 0.1
  c.optim.momentum = 0.9
  c.optim.weight_decay = 1e-4
  c.optim.schedule = "step"
  c.optim.boundaries = (32000, 48000)
  c.optim.decay_factor = 0.1
  if arg.model == "resnet110":
    # "0.1 is slightly too large to start converging. So we use 0.01 to warm up the training until
    # the training error is below 80% (about 400 iterations), and then go back to 0.1": 400 steps.
    c.optim.warmup_steps = 400
    c.optim.warmup_shape = "constant"
    c.optim.warmup_factor = 0.1
  c.train.batch_size = 128
  c.train.steps = 64000
  c.train.log_every = 100  # 100 steps scanned per call
  c.train.eval_every = 4000
  c.train.checkpoint_every = 8000
  c.train.eval_batch_size = 2000
  c.wandb.group = "resnet_cifar10"
  if arg.smoke:
    c.data.train_size = 512
    c.train.batch_size = 32
    c.train.steps = 4
    c.optim.boundaries = (2, 3)  # the drops at half and three quarters of the run, as in full
    c.optim.warmup_steps = min(c.optim.warmup_steps, 1)
    c.train.log_every = 2
    c.train.eval_every = 4
    c.train.checkpoint_every = 4
    c.train.eval_batch_size = 500
    c.wandb.mode = "disabled"
  return c


def get_sweeps():
  """ResNet paper's Figure 6 (degradation), and the lecture's ablations on ResNet-20."""
  return {
    "degradation": [{"model.name": m} for m in ("plain20", "plain56", "resnet20", "resnet56")],
    "optimizers": [
      {"optim.name": "sgd", "optim.learning_rate": 0.1},
      {"optim.name": "momentum", "optim.learning_rate": 0.1},
      {"optim.name": "nesterov", "optim.learning_rate": 0.1},
      {"optim.name": "adam", "optim.learning_rate": 1e-3},
      {"optim.name": "adagrad", "optim.learning_rate": 0.05},
      {"optim.name": "rmsprop", "optim.learning_rate": 1e-3},
    ],
    "losses": [{"loss.name": "cross_entropy"}, {"loss.name": "mse"}, {"loss.name": "focal"}],
    # Every point holds out the same 5k validation images (45k/5k), early stopping's or not.
    "regularisation": {
      "common": {"data.validation_size": 5000, "data.eval_splits": ("validation", "test")},
      "points": [
        {},
        {"data.augment.crop_padding": 0, "data.augment.flip": False},
        {"model.dropout": 0.3},
        {"optim.weight_decay": 0.0},
        {"train.early_stopping.metric": "validation/error", "train.early_stopping.patience": 3},
      ],
    },
  }


def get_sweep_plots():
  """Figure 6 of the paper for `degradation` (drawn by `python -m scripts.report <sweep dir>`):
  training error (thin dashed; the mean over each logged chunk of augmented training batches)
  and test error (bold) against the iteration, plain networks left, ResNets right."""
  return {
    "degradation": [
      {
        "file": "figure6.png",
        "title": "He et al. 2015, Figure 6 on CIFAR-10 (JPEG copy)",
        "panels": {
          "plain": {"model.name": ["plain20", "plain32", "plain44", "plain56", "plain110"]},
          "ResNet": {"model.name": ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110"]},
        },
        "curves": [
          {
            "key": "train/accuracy",
            "complement": True,
            "style": "dashed",
            "label": "training error",
          },
          {"key": "test/error", "style": "bold", "label": "test error"},
        ],
        "label_key": "model.name",
        "scale": 100.0,
        "ylabel": "error (%)",
        "xlabel": "iterations",
        "ylim": (0, 20),
      }
    ],
  }
