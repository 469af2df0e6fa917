"""GoogLeNet (Inception v1; Szegedy et al. 2015, "Going deeper with convolutions") on CIFAR-10,
and its auxiliary-classifier ablation.

Model: `googlenet_cifar`, torchvision's GoogLeNet (BatchNorm, two auxiliary classifiers after
inception4a and 4d, their losses weighted 0.3 in training only, as the paper's section 5) with
the usual CIFAR stem (kuangliu/pytorch-cifar): one stride-1 3x3 convolution to 192 channels
instead of the ImageNet stem's 8x downsampling, so inception3 runs at 32x32, 4 at 16x16 and 5 at
8x8 (5,490,986 parameters without the auxiliary heads, 9,841,470 with them; 1.35 G
multiply-adds per image, 33x ResNet-20).
Recipe: SGD momentum 0.9, learning rate 0.1 with a cosine decay to 0 over 39k steps at batch 128
(100 epochs), weight decay 5e-4 on every parameter, dropout 0.2 before the classifier and 0.7
in the auxiliary ones (torchvision's); 4-pixel padding, random 32x32 crop, horizontal flip; all
50k training images. bfloat16 computation with float32 parameters, to halve the GPU time of
this costly network (`--config.model.dtype=float32` for full precision).
The paper has no CIFAR number. kuangliu/pytorch-cifar lists about 95% accuracy for its CIFAR
GoogLeNet (not checked here; 200 epochs, and its "5x5" branch is two 3x3 convolutions). On
ImageNet the paper found the auxiliary heads' effect "relatively minor (around 0.5%)".
Data: CIFAR-10 from the JPEG copy (quality 75, 4:2:0 chroma) at $VISION_JAX_DATASETS/cifar10
(`image_folder:cifar10`), not the original pixels: expect errors above the published ones.
Expect: about 5-6% test error on the original CIFAR-10; more on this copy. Not run yet.

Commands:
    python -m experiments.googlenet_cifar10 --workdir runs/googlenet_cifar10
    python -m scripts.sweep googlenet_cifar10 --sweep aux     # with against without the aux heads
Needs a GPU. Variants: smoke (2 steps on 64 images, evaluated on 32 held-out training images).
"""

from configs.common import base_config
from configs.resnet_cifar10 import CIFAR10_MEAN, CIFAR10_STD
from vision_jax.config import parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, smoke=False)
  c = base_config()
  c.name = "googlenet_cifar10"
  c.data.dataset = "image_folder:cifar10"
  c.data.mean = CIFAR10_MEAN
  c.data.std = CIFAR10_STD
  c.data.augment.crop_padding = 4
  c.data.augment.flip = True
  c.model.name = "googlenet_cifar"
  c.model.aux_logits = True
  c.model.dropout = 0.2
  c.model.aux_dropout = 0.7
  c.model.dtype = "bfloat16"
  c.loss.aux_weight = 0.3
  c.optim.name = "momentum"
  c.optim.learning_rate = 0.1
  c.optim.momentum = 0.9
  c.optim.weight_decay = 5e-4
  c.optim.schedule = "cosine"
  c.train.batch_size = 128
  c.train.steps = 39000
  c.train.log_every = 100  # 100 steps scanned per call
  c.train.eval_every = 3000
  c.train.checkpoint_every = 6000
  c.train.eval_batch_size = 2000
  c.wandb.group = "googlenet_cifar10"
  if arg.smoke:
    # A test-set evaluation of this network takes many minutes on a CPU: 32 held-out images.
    c.data.validation_size = 32
    c.data.eval_splits = ("validation",)
    c.data.train_size = 64
    c.model.dtype = "float32"  # bfloat16 is slow on CPUs
    c.train.batch_size = 8
    c.train.steps = 2
    c.train.log_every = 2
    c.train.eval_every = 2
    c.train.checkpoint_every = 2
    c.train.eval_batch_size = 32
    c.wandb.mode = "disabled"
  return c


def get_sweeps():
  """The auxiliary-classifier ablation: `python -m scripts.sweep googlenet_cifar10 --sweep aux`."""
  return {"aux": [{"model.aux_logits": True}, {"model.aux_logits": False}]}
