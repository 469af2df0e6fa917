"""Transfer learning (the lecture's 전이 학습): a backbone pretrained on CIFAR-10, then trained on
three breeds of the Oxford-IIIT Pet dataset (Abyssinian, american_bulldog, Bengal; the paper's
trainval/test lists: 300 / 298 images) in three arms, each its own run:

- scratch: the same network from a random initialisation;
- linear_probe: the pretrained backbone frozen (optax.set_to_zero, BatchNorm in inference mode
  so its statistics stay the pretrained ones), a new 3-class head trained;
- finetune: everything trained from the pretrained weights, the backbone at
  `finetune_backbone_lr_scale` (0.1) times the head's learning rate.

Backbone and input size. The default is He et al.'s CIFAR ResNet-20 (0.27M parameters),
pretrained by configs/resnet_cifar10.py's recipe (SGD 0.1, momentum 0.9, weight decay 1e-4,
/10 at half and three quarters of the steps) for `pretrain.steps` steps, with pets prepared at
64x64 (the central square of each picture): four times CIFAR's pixels, enough for the coat
patterns that tell the two cat breeds apart, while a ResNet-20 step stays cheap. Global average
pooling makes the network indifferent to the input size; the pets are seen at twice the scale
of CIFAR's objects, which the fine-tuned arm can adapt to and the probe cannot. Inputs are
standardised with CIFAR-10's statistics, the ones the backbone learnt on. With ImageNet weights
(variant `imagenet`: torchvision's ResNet-18 at 224x224, ImageNet statistics), no pretraining
runs:

    python -m scripts.import_torchvision resnet18 resnet18-f37072fd.pth runs/resnet18_imagenet
    python -m experiments.transfer_pets --workdir runs/transfer_pets_in --variant imagenet --config.init_from=runs/resnet18_imagenet

Commands:
    python -m experiments.transfer_pets --workdir runs/transfer_pets              # GPU: the full 64k-step pretraining
    python -m experiments.transfer_pets --workdir runs/transfer_pets_cpu --variant cpu
    python -m experiments.transfer_pets --workdir runs/x --config.init_from=runs/resnet20_cifar10   # an existing run

Variants: cpu (minutes on a 2-core CPU: 300 pretraining steps, 150 steps per arm and 5 seeds, 32x32 pets),
imagenet, smoke (tests).
Keys beyond base_config(): pretrain.{steps, batch_size, variant, validation_size}, arms, seeds
(runs per arm: train.seed, train.seed + 1, ...; one pretraining serves them all) and
finetune_backbone_lr_scale. The experiment sets base_config()'s optim.{head, backbone_lr_scale,
frozen} and train.frozen_batch_stats per arm (see vision_jax/train/optimizers.py and
ClassificationTask.losses).
"""

import ml_collections

from configs.common import base_config
from configs.resnet_cifar10 import CIFAR10_MEAN, CIFAR10_STD
from vision_jax.config import parse_arg

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def get_config(arg=None):
  arg = parse_arg(arg, cpu=False, imagenet=False, smoke=False)
  c = base_config()
  c.name = "transfer_pets"
  c.init_from = (
    ""  # pretrained variables or a run; empty: pretrain on CIFAR-10 in <workdir>/pretrain_cifar10
  )
  c.data.dataset = "oxford_pets:oxford_pets_3breeds"
  c.data.format_options = ml_collections.ConfigDict(
    {"image_size": 64, "resize": "center_crop", "label": "breed"}
  )
  c.data.train_split = "trainval"
  c.data.eval_splits = ("test",)
  c.data.mean = CIFAR10_MEAN
  c.data.std = CIFAR10_STD
  c.data.augment.crop_padding = 8  # an eighth of the side, as CIFAR's 4 pixels of 32
  c.data.augment.flip = True
  c.model.name = "resnet20"
  c.model.dtype = "float32"
  c.loss.name = "cross_entropy"
  c.optim.name = "momentum"
  c.optim.learning_rate = 0.05  # the head's; the backbone's is scaled per arm
  c.optim.momentum = 0.9
  c.optim.weight_decay = 5e-4
  c.optim.schedule = "cosine"
  c.optim.head = "head/"
  c.optim.backbone_lr_scale = 1.0
  c.optim.frozen = ()
  c.train.frozen_batch_stats = False
  c.train.batch_size = 32
  c.train.steps = 2000  # about 210 epochs of the 300 trainval images
  c.train.log_every = 100
  c.train.eval_every = 500
  c.train.checkpoint_every = 1000
  c.train.eval_batch_size = 300  # the 298 test images in one batch
  c.wandb.group = "transfer_pets"

  c.arms = ("scratch", "linear_probe", "finetune")
  c.seeds = 1  # runs per arm, with train.seed, train.seed + 1, ...: mean and spread in the table
  c.finetune_backbone_lr_scale = 0.1
  c.pretrain = ml_collections.ConfigDict()
  c.pretrain.steps = (
    64000  # of configs/resnet_cifar10.py's recipe, its learning-rate drops scaled to them
  )
  c.pretrain.batch_size = 128
  c.pretrain.variant = ""  # of configs/resnet_cifar10.py ("smoke": its 512 training images)
  c.pretrain.validation_size = (
    0  # N: evaluate on N held-out training images, not the 10,000 test images
  )

  if arg.imagenet:
    c.model.name = "resnet18"
    c.data.format_options.image_size = 224
    c.data.mean, c.data.std = IMAGENET_MEAN, IMAGENET_STD
    c.data.augment.crop_padding = 28
    c.optim.learning_rate = 0.01
    c.train.batch_size = 64
    c.train.steps = 1000
    c.train.eval_batch_size = 100
  if arg.cpu:
    c.data.format_options.image_size = 32
    c.data.augment.crop_padding = 4
    c.pretrain.steps = 300
    c.seeds = 5  # an arm's run is ~40 s here, and one seed cannot tell the arms apart
    c.train.steps = 150  # 16 epochs
    c.train.log_every = 50
    c.train.eval_every = 150
    c.train.checkpoint_every = 150
  if arg.smoke:
    if not arg.imagenet:
      c.model.depth = 8  # a CIFAR ResNet-8: the plumbing, at less of ResNet-20's compile time
    c.data.format_options.image_size = 16
    c.data.augment.crop_padding = 2
    c.pretrain.steps = 4
    c.pretrain.batch_size = 32
    c.pretrain.variant = "smoke"
    c.pretrain.validation_size = 256
    c.train.steps = 4
    c.train.log_every = 2
    c.train.eval_every = 4
    c.train.checkpoint_every = 4
    c.wandb.mode = "disabled"
  return c
