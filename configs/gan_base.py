"""What the GAN configs share: `gan_config(method, dataset, smoke)`, used by dcgan_mnist,
dcgan_cifar10, wgan_cifar10, wgan_gp_cifar10 and gan_stability.

Methods, with their papers' optimizers and critic settings:
  gan      Goodfellow et al. 2014: MLPs, non-saturating loss, one critic step (Adam 2e-4, b1 0.5).
  dcgan    Radford et al. 2015: DCGAN generator and critic (BatchNorm), non-saturating loss,
           Adam 2e-4, b1 0.5, one critic step.
  wgan     Arjovsky et al. 2017: DCGAN networks, critic without sigmoid, weight clipping 0.01,
           RMSprop 5e-5, 5 critic steps.
  wgan_gp  Gulrajani et al. 2017: DCGAN networks, critic with LayerNorm instead of BatchNorm,
           gradient penalty 10, Adam 1e-4 with betas (0, 0.9), 5 critic steps.

`train.batch_size` is `gan.n_critic` times the 64 images of one update: each critic update
takes its own slice of real images (see vision_jax/tasks/gan.py).
"""

import ml_collections

from configs.common import base_config

METHODS = ("gan", "dcgan", "wgan", "wgan_gp")
DATASETS = {
  "mnist": dict(
    dataset="idx:mnist",
    channels=1,
    classifier="lenet5_mnist",
    classifier_steps=2000,
    classifier_overrides=(),
  ),
  # A small CNN for CIFAR-10's feature statistics: LeNet-5's layout with full C3 connections.
  "cifar10": dict(
    dataset="image_folder:cifar10",
    channels=3,
    classifier="lenet5_mnist",
    classifier_steps=3000,
    classifier_overrides=(
      "data.dataset=image_folder:cifar10",
      "data.pad_to=0",
      "data.mean=(0.4914, 0.4822, 0.4465)",
      "data.std=(0.2470, 0.2435, 0.2616)",
      "model.partial_c3=False",
      "data.augment.flip=True",
      "data.augment.crop_padding=2",
    ),
  ),
}


def _optim(name, learning_rate, **kwargs) -> ml_collections.ConfigDict:
  c = base_config().optim
  c.name, c.learning_rate = name, learning_rate
  for k, v in kwargs.items():
    c[k] = v
  return c


def gan_config(method: str, dataset: str, smoke: bool = False) -> ml_collections.ConfigDict:
  if method not in METHODS:
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")
  d = DATASETS[dataset]
  c = base_config()
  c.name = f"{method}_{dataset}"
  c.data.dataset = d["dataset"]
  c.data.mean = (0.5,) * d["channels"]  # images in [-1, 1], as the generator's tanh makes them
  c.data.std = (0.5,) * d["channels"]
  c.data.eval_splits = ("test",)

  c.model = ml_collections.ConfigDict()
  if method == "gan":
    c.model.generator = ml_collections.ConfigDict(
      {"name": "mlp_generator", "hidden": (256, 512, 1024)}
    )
    c.model.critic = ml_collections.ConfigDict({"name": "mlp_critic", "hidden": (512, 256)})
  else:
    c.model.generator = ml_collections.ConfigDict({"name": "dcgan_generator", "width": 64})
    c.model.critic = ml_collections.ConfigDict(
      {"name": "dcgan_critic", "width": 64, "norm": "layer" if method == "wgan_gp" else "batch"}
    )

  c.gan = ml_collections.ConfigDict()
  c.gan.loss = "wasserstein" if method.startswith("wgan") else "non_saturating"
  c.gan.n_critic = 5 if method.startswith("wgan") else 1
  c.gan.clip = 0.01 if method == "wgan" else 0.0
  c.gan.gradient_penalty = 10.0 if method == "wgan_gp" else 0.0
  c.gan.latent_dim = 100
  c.gan.classifier = ml_collections.ConfigDict()
  c.gan.classifier.config = d["classifier"]  # "" = no Fréchet distance or score
  c.gan.classifier.steps = d["classifier_steps"]
  c.gan.classifier.overrides = d["classifier_overrides"]
  c.gan.classifier.directory = (
    ""  # "" = $VISION_JAX_CACHE/feature_classifiers/..., trained on first use
  )

  c.optim = ml_collections.ConfigDict()
  if method == "wgan":
    c.optim.generator = _optim("rmsprop", 5e-5)
    c.optim.critic = _optim("rmsprop", 5e-5)
  elif method == "wgan_gp":
    c.optim.generator = _optim("adam", 1e-4, b1=0.0, b2=0.9)
    c.optim.critic = _optim("adam", 1e-4, b1=0.0, b2=0.9)
  else:
    c.optim.generator = _optim("adam", 2e-4, b1=0.5)
    c.optim.critic = _optim("adam", 2e-4, b1=0.5)

  c.train.batch_size = 64 * c.gan.n_critic
  c.train.steps = 5000  # generator updates
  c.train.log_every = 100
  c.train.eval_every = 1000
  c.train.visuals_every = 1000
  c.train.checkpoint_every = 1000
  c.train.eval_batch_size = 1000
  c.wandb.group = c.name
  if smoke:
    c.data.train_size = 640
    c.data.validation_size = 200
    c.data.eval_splits = ("validation",)
    if method == "gan":
      c.model.generator.hidden = (32,)
      c.model.critic.hidden = (32,)
    else:
      c.model.generator.width = 8
      c.model.critic.width = 8
    c.gan.latent_dim = 16
    c.gan.classifier.config = ""
    c.train.batch_size = 16 * c.gan.n_critic
    c.train.steps = 4
    c.train.log_every = 2
    c.train.eval_every = 4
    c.train.visuals_every = 4
    c.train.checkpoint_every = 2
    c.train.eval_batch_size = 100
    c.wandb.mode = "disabled"
  return c
