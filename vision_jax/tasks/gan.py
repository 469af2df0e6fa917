"""GAN training: a generator against a critic in one train state, on the one loop.

    params    = {"gen": generator params, "disc": critic params}
    opt_state = {"gen": ..., "disc": ...}             (two optax optimizers, held by the task)
    model_state = {"gen": {"batch_stats": ...}, "disc": {...}}

One `train_step` (traced inside the loop's jitted scan) makes `gan.n_critic` critic updates and
then one generator update. Each critic update sees its own real images and its own noise: the
loop's batch holds `n_critic * b` real images (`train.batch_size`), split into `n_critic` slices
of `b`; the generator update draws `b` latents. So `train.batch_size` must be a multiple of
`gan.n_critic`, and one loop "step" consumes `train.batch_size` real images.

Losses (`gan.loss`):
- "non_saturating": Goodfellow et al. 2014 (Section 3's practical generator loss): the critic
  minimises softplus(-D(x)) + softplus(D(G(z))) (cross-entropy with the sigmoid inside), the
  generator minimises softplus(-D(G(z))) = -log sigmoid(D(G(z))). GAN and DCGAN.
- "wasserstein": Arjovsky et al. 2017: the critic minimises mean D(G(z)) - mean D(x), the generator
  -mean D(G(z)); `mean D(x) - mean D(G(z))` is reported as the Wasserstein estimate. Keep the
  critic 1-Lipschitz either with weight clipping (`gan.clip` = 0.01, WGAN) or with
  Gulrajani et al. 2017's gradient penalty (`gan.gradient_penalty` = lambda = 10, WGAN-GP):
  lambda E[(|grad_x D(x_hat)| - 1)^2] at random interpolates x_hat of real and generated images.

Evaluation returns, per split, the critic's mean scores and loss on real and generated images
and, when a feature classifier is configured (`gan.classifier.directory`), the Fréchet distance
between the classifier's features of real and generated images and the Inception-style score of
the generated (and, for reference, the real) images; see `vision_jax.metrics.sample_quality`.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vision_jax import plotting
from vision_jax.config import bound, checked_where_used, each
from vision_jax.errors import ConfigError
from vision_jax.metrics import sample_quality
from vision_jax.metrics.feature_classifier import load_feature_classifier
from vision_jax.models.registry import build_model, check_model_config
from vision_jax.tasks.base import Task, masked_mean
from vision_jax.train.optimizers import make_optimizer
from vision_jax.train.state import TrainState

LOSSES = ("non_saturating", "wasserstein")


def gradient_penalty(
  critic_fn, real: jnp.ndarray, fake: jnp.ndarray, rng: jax.Array
) -> jnp.ndarray:
  """Gulrajani et al. 2017, Algorithm 1: E[(|grad_x critic(x_hat)| - 1)^2] at x_hat = e x + (1 - e) x~.

  critic_fn: images [b, ...] -> scores [b], each score depending on its own image only (no
  BatchNorm), so that the gradient of the summed scores is every image's own gradient.
  real, fake: [b, ...]. e ~ U[0, 1] per image.
  """
  eps = jax.random.uniform(rng, (real.shape[0],) + (1,) * (real.ndim - 1))
  interpolates = eps * real + (1.0 - eps) * fake
  grads = jax.grad(lambda x: jnp.sum(critic_fn(x)))(interpolates)
  # The small constant keeps the norm differentiable where a gradient is exactly zero.
  norms = jnp.sqrt(jnp.sum(grads.reshape(grads.shape[0], -1) ** 2, axis=1) + 1e-12)
  return jnp.mean((norms - 1.0) ** 2)


def clip_weights(params, bound: float):
  """WGAN's weight clipping: every parameter into [-bound, bound]."""
  return jax.tree.map(lambda p: jnp.clip(p, -bound, bound), params)


def to_uint8(images: jnp.ndarray) -> np.ndarray:
  """Generated images in [-1, 1] -> uint8 [0, 255] on the host."""
  return np.asarray(jax.device_get(jnp.round((jnp.clip(images, -1, 1) + 1) * 127.5))).astype(
    np.uint8
  )


class GANTask(Task):
  """A generator (`config.model.generator`) against a critic (`config.model.critic`).

  config.gan: loss, n_critic, clip, gradient_penalty, latent_dim, classifier.directory.
  config.optim.generator and config.optim.critic: `make_optimizer` configs.
  Images must be scaled to [-1, 1] (data.mean = data.std = 0.5 per channel), as the tanh makes them.
  """

  RULES = {
    "gan.latent_dim": bound(1, integer=True),
    "gan.classifier.steps": bound(1, integer=True),
    "gan.n_critic": checked_where_used("vision_jax/tasks/gan.py, against train.batch_size"),
    "gan.clip": checked_where_used("vision_jax/tasks/gan.py, against gan.gradient_penalty"),
    "gan.gradient_penalty": checked_where_used(
      "vision_jax/tasks/gan.py, against gan.clip and the critic's norm"
    ),
    **{
      f"model.{player}.hidden": each(bound(1, integer=True), empty_means="no hidden layer")
      for player in ("generator", "critic")
    },
    **{f"model.{player}.width": bound(1, integer=True) for player in ("generator", "critic")},
  }

  @classmethod
  def optimizer_updates(cls, config):
    """The critic updates n_critic times a step: its schedule (boundaries, warm-up) counts
    critic updates."""
    n = config.gan.n_critic
    if not isinstance(n, int) or n < 1:
      return {}  # refused with its own error when the task is built
    return {"optim.critic": (config.train.steps * n, "train.steps x gan.n_critic")}

  @classmethod
  def check_models(cls, config):
    """Both players: `model.generator` and `model.critic`."""
    for player in ("generator", "critic"):
      check_model_config(config.model[player])

  def __init__(self, config, spec):
    super().__init__(config, spec)
    gc = config.gan
    if gc.loss not in LOSSES:
      raise ConfigError(f"gan.loss must be one of {LOSSES}, got {gc.loss!r}")
    if not isinstance(gc.n_critic, int) or gc.n_critic < 1:
      raise ConfigError(
        f"gan.n_critic must be an integer of at least 1 (critic updates per generator "
        f"update), got {gc.n_critic!r}"
      )
    if gc.clip < 0 or gc.gradient_penalty < 0:
      raise ConfigError(
        f"gan.clip and gan.gradient_penalty must be >= 0, got {gc.clip}, {gc.gradient_penalty}"
      )
    if gc.clip and gc.gradient_penalty:
      raise ConfigError(
        "gan.clip (WGAN's weight clipping) and gan.gradient_penalty (WGAN-GP) are two ways "
        "to keep the critic Lipschitz; Gulrajani et al. replace one by the other. Set one to 0."
      )
    if gc.gradient_penalty and config.model.critic.get("norm", "none") == "batch":
      raise ConfigError(
        "a gradient penalty needs each critic score to depend on its own image only; "
        "BatchNorm mixes the batch (WGAN-GP, Section 4). Set model.critic.norm to 'layer' or 'none'."
      )
    if config.train.batch_size % gc.n_critic:
      raise ConfigError(
        f"train.batch_size {config.train.batch_size} must be a multiple of gan.n_critic "
        f"{gc.n_critic}: each of the n critic updates takes its own slice of real images"
      )
    if config.get("init_from", ""):
      raise ConfigError(
        "init_from loads one classifier's variables; a GAN has two players. Resume a GAN "
        "from its workdir's checkpoints instead (run the same command again)."
      )
    if any(d is None for d in spec.image_shape):
      raise ConfigError(
        f"a GAN needs images of one size; {config.data.dataset} has {spec.image_shape}"
      )
    size = config.data.get("pad_to", 0)
    self.image_shape = (size, size, spec.image_shape[2]) if size else tuple(spec.image_shape)
    self.n_critic, self.latent_dim = gc.n_critic, gc.latent_dim
    self.generator = build_model(config.model.generator, image_shape=self.image_shape)
    self.critic = build_model(config.model.critic)
    self.classifier = None
    if gc.get("classifier") and gc.classifier.get("directory", ""):
      self.classifier = load_feature_classifier(gc.classifier.directory)
    self.visual_rng = jax.random.key(
      config.train.seed + 7919
    )  # fixed: grids are comparable across evals

  # --- the two players ---------------------------------------------------------------------
  def generate(self, gen_params, gen_state, z, train: bool):
    """(images [b, h, w, c], new generator model state)."""
    if train:
      (images, _), new_state = self.generator.apply(
        {"params": gen_params, **gen_state}, z, train=True, mutable=list(gen_state)
      )
      return images, dict(new_state)
    images, _ = self.generator.apply({"params": gen_params, **gen_state}, z, train=False)
    return images, gen_state

  def score(self, disc_params, disc_state, images, train: bool):
    """(critic scores [b], new critic model state)."""
    if train:
      (scores, _), new_state = self.critic.apply(
        {"params": disc_params, **disc_state}, images, train=True, mutable=list(disc_state)
      )
      return scores, dict(new_state)
    scores, _ = self.critic.apply({"params": disc_params, **disc_state}, images, train=False)
    return scores, disc_state

  def critic_loss(self, d_real, d_fake):
    if self.config.gan.loss == "non_saturating":
      return jnp.mean(jax.nn.softplus(-d_real)) + jnp.mean(jax.nn.softplus(d_fake))
    return jnp.mean(d_fake) - jnp.mean(d_real)

  def generator_loss(self, d_fake):
    if self.config.gan.loss == "non_saturating":
      return jnp.mean(jax.nn.softplus(-d_fake))
    return -jnp.mean(d_fake)

  def sample_latents(self, rng, n: int):
    return jax.random.normal(rng, (n, self.latent_dim))

  # --- the loop's interface ------------------------------------------------------------------
  def _check_images(self, images, what: str) -> None:
    if tuple(images.shape[1:]) != self.image_shape:
      raise ValueError(
        f"{what}: expected images [batch, {', '.join(map(str, self.image_shape))}] (the generator's "
        f"output), got {tuple(images.shape)}; check data.pad_to and the dataset"
      )

  def init_state(self, rng, batch, total_steps):
    self._check_images(batch["image"], "init_state")
    self.tx = {
      "gen": make_optimizer(self.config.optim.generator, total_steps, "optim.generator"),
      "disc": make_optimizer(self.config.optim.critic, total_steps * self.n_critic, "optim.critic"),
    }
    gen_rng, disc_rng = jax.random.split(rng)
    gen_vars = dict(self.generator.init(gen_rng, jnp.zeros((2, self.latent_dim)), train=False))
    images, _ = self.generator.apply(gen_vars, jnp.zeros((2, self.latent_dim)), train=False)
    self._check_images(images, f"generator {self.config.model.generator.name}")
    disc_vars = dict(self.critic.init(disc_rng, batch["image"], train=False))
    params = {"gen": gen_vars.pop("params"), "disc": disc_vars.pop("params")}
    return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state={k: self.tx[k].init(params[k]) for k in params},
      model_state={"gen": gen_vars, "disc": disc_vars},
    )

  def train_step(self, state, batch, rng):
    gc = self.config.gan
    real = batch["image"]
    self._check_images(real, "train batch")
    b = real.shape[0] // self.n_critic
    critic_rngs = jax.random.split(rng, self.n_critic + 1)
    gen_rng = critic_rngs[-1]
    real_slices = real.reshape((self.n_critic, b) + real.shape[1:])

    def critic_update(carry, images, step_rng):
      disc_params, disc_opt, disc_state, gen_state = carry
      noise_rng, gp_rng = jax.random.split(step_rng)
      fake, gen_state = self.generate(
        state.params["gen"], gen_state, self.sample_latents(noise_rng, b), train=True
      )
      fake = jax.lax.stop_gradient(fake)

      def loss_fn(disc_params):
        d_real, new_state = self.score(disc_params, disc_state, images, train=True)
        d_fake, new_state = self.score(disc_params, new_state, fake, train=True)
        loss = self.critic_loss(d_real, d_fake)
        metrics = {"critic_real": jnp.mean(d_real), "critic_fake": jnp.mean(d_fake)}
        if gc.gradient_penalty:
          penalty = gradient_penalty(
            lambda x: self.score(disc_params, disc_state, x, train=True)[0], images, fake, gp_rng
          )
          loss = loss + gc.gradient_penalty * penalty
          metrics["gradient_penalty"] = penalty
        return loss, (metrics, new_state)

      (loss, (metrics, disc_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(disc_params)
      updates, disc_opt = self.tx["disc"].update(grads, disc_opt, disc_params)
      disc_params = optax.apply_updates(disc_params, updates)
      if gc.clip:
        disc_params = clip_weights(disc_params, gc.clip)
      return (disc_params, disc_opt, disc_state, gen_state), {"loss": loss, **metrics}

    carry = (
      state.params["disc"],
      state.opt_state["disc"],
      state.model_state["disc"],
      state.model_state["gen"],
    )
    # Unrolled in Python, not a scan: n_critic is small, and XLA:CPU runs convolutions inside a
    # loop several times slower (a scan of one update, even with unroll=True, made DCGAN's step
    # 2.4x slower than WGAN's five updates: 853 against 321 ms on CIFAR-10 at width 32).
    critic_metrics = []
    for i in range(self.n_critic):
      carry, metrics = critic_update(carry, real_slices[i], critic_rngs[i])
      critic_metrics.append(metrics)
    disc_params, disc_opt, disc_state, gen_state = carry
    critic_metrics = jax.tree.map(lambda *m: jnp.stack(m), *critic_metrics)

    z = self.sample_latents(gen_rng, b)

    def gen_loss_fn(gen_params):
      fake, new_gen_state = self.generate(gen_params, gen_state, z, train=True)
      # The critic's own statistics come from its updates; its batch statistics here are not kept.
      d_fake, _ = self.score(disc_params, disc_state, fake, train=True)
      return self.generator_loss(d_fake), new_gen_state

    (gen_loss, gen_state), grads = jax.value_and_grad(gen_loss_fn, has_aux=True)(
      state.params["gen"]
    )
    updates, gen_opt = self.tx["gen"].update(grads, state.opt_state["gen"], state.params["gen"])
    gen_params = optax.apply_updates(state.params["gen"], updates)

    metrics = {k: jnp.mean(v) for k, v in critic_metrics.items()}
    metrics["generator_loss"] = gen_loss
    if gc.loss == "wasserstein":
      metrics["wasserstein_estimate"] = metrics["critic_real"] - metrics["critic_fake"]
    state = state.replace(
      params={"gen": gen_params, "disc": disc_params},
      opt_state={"gen": gen_opt, "disc": disc_opt},
      model_state={"gen": gen_state, "disc": disc_state},
    )
    return state, metrics

  def eval_step(self, state, batch):
    real, mask = batch["image"], batch["mask"]
    self._check_images(real, "eval batch")
    # Each eval batch draws its own latents, as a function of its content: evaluation is
    # deterministic, and batches of a split do not repeat the same samples.
    batch_key = jax.lax.bitcast_convert_type(jnp.sum(real), jnp.int32)
    z = self.sample_latents(
      jax.random.fold_in(jax.random.key(self.config.train.seed), batch_key), real.shape[0]
    )
    fake, _ = self.generate(state.params["gen"], state.model_state["gen"], z, train=False)
    d_real, _ = self.score(state.params["disc"], state.model_state["disc"], real, train=False)
    d_fake, _ = self.score(state.params["disc"], state.model_state["disc"], fake, train=False)
    out = {
      "critic_real": masked_mean(d_real, mask),
      "critic_fake": masked_mean(d_fake, mask),
      "wasserstein_estimate": masked_mean(d_real - d_fake, mask),
    }
    if self.config.gan.loss == "non_saturating":
      out["loss"] = masked_mean(jax.nn.softplus(-d_real) + jax.nn.softplus(d_fake), mask)
    else:
      out["loss"] = masked_mean(d_fake - d_real, mask)
    if self.classifier is not None:
      for name, images in (("real", real), ("fake", fake)):
        probs, features = self.classifier(images)
        for k, v in {
          **sample_quality.feature_sums(features, mask),
          **sample_quality.prediction_sums(probs, mask),
        }.items():
          out[f"{name}_{k}"] = v
    return out

  def eval_metrics(self, sums):
    """Means of the critic's numbers; the Fréchet distance and scores from the summed statistics."""
    sums = dict(sums)
    stats = {k: sums.pop(k) for k in list(sums) if k.startswith(("real_", "fake_"))}
    results = super().eval_metrics(sums)
    if stats:
      gaussians = {}
      for name in ("real", "fake"):
        count = float(stats[f"{name}_feature_sum"][1])
        gaussians[name] = sample_quality.gaussian_from_sums(
          stats[f"{name}_feature_sum"][0], stats[f"{name}_outer_sum"][0], count
        )
        results[f"classifier_score_{name}"] = sample_quality.classifier_score_from_sums(
          stats[f"{name}_plogp_sum"][0], stats[f"{name}_probs_sum"][0], count
        )
      results["frechet_distance"] = sample_quality.frechet_distance(
        *gaussians["real"], *gaussians["fake"]
      )
    return results

  def eval_metric_names(self, state, batch):
    """The critic's numbers, and with a feature classifier the scores `eval_metrics` derives."""
    names = [
      k for k in super().eval_metric_names(state, batch) if not k.startswith(("real_", "fake_"))
    ]
    if self.classifier is not None:
      names += ["classifier_score_fake", "classifier_score_real", "frechet_distance"]
    return sorted(names)

  @property
  def primary_metric(self) -> str:
    return "frechet_distance" if self.classifier is not None else "loss"

  def visuals(self, state, batch, directory, prefix):
    """A grid of 64 samples from fixed latents; at the end also real images and a latent walk."""
    z = self.sample_latents(self.visual_rng, 64)
    samples, _ = self.generate(state.params["gen"], state.model_state["gen"], z, train=False)
    paths = {
      f"{prefix}samples": plotting.image_grid(
        to_uint8(samples), os.path.join(directory, f"{prefix}samples.png")
      )
    }
    if prefix.startswith("final"):
      real = np.asarray(jax.device_get(batch["raw_image"]))[:64]
      paths["real"] = plotting.image_grid(real, os.path.join(directory, "real.png"))
      paths[f"{prefix}interpolation"] = self.interpolation(
        state, os.path.join(directory, f"{prefix}interpolation.png")
      )
    return paths

  def interpolation(self, state, path: str, rows: int = 6, steps: int = 10) -> str:
    """Rows of generated images along straight lines between pairs of random latents (DCGAN, Fig. 4)."""
    ends = self.sample_latents(jax.random.fold_in(self.visual_rng, 1), 2 * rows).reshape(
      rows, 2, -1
    )
    t = jnp.linspace(0.0, 1.0, steps)[None, :, None]
    z = ((1 - t) * ends[:, :1] + t * ends[:, 1:]).reshape(rows * steps, -1)
    images, _ = self.generate(state.params["gen"], state.model_state["gen"], z, train=False)
    return plotting.image_grid(to_uint8(images), path, cols=steps)
