"""VGG-16 with BatchNorm on CIFAR-10 (Simonyan & Zisserman 2015, configuration D, with BatchNorm
and a CIFAR-sized classifier); the number to compare with is Liu & Deng 2015's, "Very deep
convolutional neural network based image classification using small training sample size",
ACPR, doi:10.1109/ACPR.2015.7486599.

Liu & Deng report 8.45% test error for their VGG-16 with BatchNorm and "stronger regularizer"
(their abstract; their exact head and schedule are not checked here). kuangliu/pytorch-cifar's
VGG16 (BatchNorm, head 512-10) lists 92.64% accuracy (7.36% error) with SGD 0.1, /10 at epochs
150 and 250, 350 epochs (its README; its weight decay not checked here).

Model: `vgg16_bn_cifar`, torchvision's VGG-16-BN convolutions with the CIFAR classifier
(global pool to 512, dropout, FC 512, BatchNorm, ReLU, dropout, FC 10, as Zagoruyko's
cifar.torch `vgg_bn_drop`; 14,991,946 parameters).
Recipe: SGD momentum 0.9, learning rate 0.1 (kuangliu's) with a cosine decay to 0 over 64k steps
at batch 128 (164 epochs), weight decay 5e-4 on every parameter, dropout 0.5 in the classifier;
4-pixel padding, random 32x32 crop, horizontal flip; all 50k training images.
Data: CIFAR-10 from the JPEG copy (quality 75, 4:2:0 chroma) at $VISION_JAX_DATASETS/cifar10
(`image_folder:cifar10`), not the original pixels: expect errors above the published ones
(how much the JPEG costs is not measured; ResNet-20 ended 3.7 points above its paper on it).
Expect: 7-8% test error on the original CIFAR-10, going by the two numbers above; more on this
copy. Not run yet.

Command: python -m experiments.vgg_cifar10 --workdir runs/vgg16_bn_cifar10
Needs a GPU (0.31 G multiply-adds per image, 7.7x ResNet-20: minutes on an H200, days on a
2-core CPU).
Variants: smoke (2 steps on 64 images, evaluated on 32 held-out training images, for tests).
"""

from configs.common import base_config
from configs.resnet_cifar10 import CIFAR10_MEAN, CIFAR10_STD
from vision_jax.config import parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, smoke=False)
  c = base_config()
  c.name = "vgg16_bn_cifar10"
  c.data.dataset = "image_folder:cifar10"
  c.data.mean = CIFAR10_MEAN
  c.data.std = CIFAR10_STD
  c.data.augment.crop_padding = 4
  c.data.augment.flip = True
  c.model.name = "vgg16_bn_cifar"
  c.model.dropout = 0.5
  c.model.dtype = "float32"
  c.optim.name = "momentum"
  c.optim.learning_rate = 0.1
  c.optim.momentum = 0.9
  c.optim.weight_decay = 5e-4
  c.optim.schedule = "cosine"
  c.train.batch_size = 128
  c.train.steps = 64000
  c.train.log_every = 100  # 100 steps scanned per call
  c.train.eval_every = 4000
  c.train.checkpoint_every = 8000
  c.train.eval_batch_size = 2000
  c.wandb.group = "vgg_cifar10"
  if arg.smoke:
    # A test-set evaluation of VGG-16 takes minutes on a CPU: evaluate on 32 held-out images.
    c.data.validation_size = 32
    c.data.eval_splits = ("validation",)
    c.data.train_size = 64
    c.train.batch_size = 8
    c.train.steps = 2
    c.train.log_every = 2
    c.train.eval_every = 2
    c.train.checkpoint_every = 2
    c.train.eval_batch_size = 32
    c.wandb.mode = "disabled"
  return c
