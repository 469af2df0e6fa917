"""AE, denoising AE, sparse AE and VAE on MNIST at the same latent size, compared in one table.

The lecture's claim: the denoising AE (Vincent et al. 2008) and the sparse AE extract more
useful representations than the plain AE. Each model trains with the same encoder/decoder
(784 -> 256 -> 128 -> 32 -> 128 -> 256 -> 784, ReLU; or the convolutional pair), Bernoulli
cross-entropy on grey levels, Adam; then the table gives clean and noisy test reconstruction
error, the codes' sparsity (Hoyer) and mean |code|, and the test accuracy of a logistic
regression trained on frozen codes of `probe_train_size` training images.

Command: python -m experiments.autoencoders_mnist --workdir runs/autoencoders_mnist
Variants: smoke; conv (the convolutional models); kinds=dae (one model only, e.g. in a sweep).
Sweeps: `python -m scripts.sweep autoencoders_mnist --sweep dae_noise` (or sae_penalty).
"""

import copy

from configs.common import base_config
from vision_jax.config import parse_arg
from vision_jax.errors import ConfigError
from vision_jax.tasks.autoencoding import default_options

KINDS = ("ae", "dae", "sae", "vae")


def get_config(arg=None):
  arg = parse_arg(arg, smoke=False, conv=False, kinds="ae+dae+sae+vae")
  c = base_config()
  c.name = "autoencoders_mnist"
  c.data.dataset = "idx:mnist"
  c.model.name = "ae_mlp"  # set per kind by kind_config
  c.model.latent_dim = 32
  c.model.hidden = (32, 64) if arg.conv else (256, 128)
  c.model.activation = "relu"
  c.model.dtype = "float32"
  c.loss.name = "bernoulli"
  c.autoencoder = default_options()
  c.autoencoder.eval_noise_std = 0.5
  c.compare = dict(
    kinds=arg.kinds,  # "+"-separated, in the table's order; the result's value is the first's probe accuracy
    architecture="conv" if arg.conv else "mlp",
    dae_corruption="gaussian",
    dae_noise_level=0.5,
    sae_sparsity_weight=1.0,
    sae_sparsity_target=0.0,
    probe_train_size=10_000,
  )
  c.optim.name = "adam"
  c.optim.learning_rate = 1e-3
  c.optim.schedule = "cosine"
  c.train.batch_size = 128
  c.train.steps = 2000  # 4.3 epochs
  c.train.log_every = 250
  c.train.eval_every = 2000
  c.train.checkpoint_every = 2000
  c.wandb.group = "autoencoders_mnist"
  if arg.smoke:
    c.data.train_size = 1024
    c.train.batch_size = 64
    c.train.steps = 20
    c.train.log_every = 10
    c.train.eval_every = 20
    c.train.checkpoint_every = 20
    c.compare.probe_train_size = 500
    c.wandb.mode = "disabled"
  kinds_of(c)  # an unknown kind fails here, before any training
  return c


def kinds_of(config) -> list[str]:
  kinds = [k for k in config.compare.kinds.split("+") if k]
  bad = [k for k in kinds if k not in KINDS]
  if bad or not kinds:
    raise ConfigError(
      f"compare.kinds must be '+'-separated names from {', '.join(KINDS)}; got {config.compare.kinds!r}"
    )
  return kinds


def kind_config(config, kind: str):
  """The config that trains one kind: its model and its task options on top of `config`."""
  c = copy.deepcopy(config)
  arch = c.compare.architecture
  c.model.name = {"ae": "ae", "dae": "ae", "sae": "sae", "vae": "vae"}[kind] + "_" + arch
  if kind == "dae":
    c.autoencoder.corruption = c.compare.dae_corruption
    c.autoencoder.noise_level = c.compare.dae_noise_level
  if kind == "sae":
    c.autoencoder.sparsity_weight = c.compare.sae_sparsity_weight
    c.autoencoder.sparsity_target = c.compare.sae_sparsity_target
  c.wandb.name = f"{c.wandb.name or c.name}_{kind}"
  return c


def get_sweeps():
  """The DAE's noise level and the SAE's penalty, each model alone."""
  return {
    "dae_noise": [
      {"compare.kinds": "dae", "compare.dae_noise_level": s} for s in (0.1, 0.3, 0.5, 0.8)
    ]
    + [
      {"compare.kinds": "dae", "compare.dae_corruption": "masking", "compare.dae_noise_level": p}
      for p in (0.25, 0.5)
    ],
    "sae_penalty": [
      {"compare.kinds": "sae", "compare.sae_sparsity_weight": w} for w in (0.1, 0.3, 1.0, 3.0)
    ]
    + [
      {
        "compare.kinds": "sae",
        "compare.sae_sparsity_weight": 3.0,
        "compare.sae_sparsity_target": 0.05,
      }
    ],
  }
