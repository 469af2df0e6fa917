"""Autoencoding: AE, denoising AE, sparse AE and VAE, one task with options in `config.autoencoder`.

    config.model        ae_mlp | ae_conv | sae_mlp | sae_conv | vae_mlp | vae_conv (models/autoencoders.py)
    config.loss.name    bernoulli: log p(x|z) of Bernoulli pixels (cross-entropy; for binarised images)
                        mse: squared error (AE); a Gaussian decoder of std `decoder_std` (VAE)
    config.autoencoder
      binarize          "none" | "dynamic": every training step draws x ~ Bernoulli(pixel intensity)
                        afresh from the step's rng; test images are binarised once, each with its
                        own fixed draw (keyed by `eval_seed` and its pixels)
      corruption        "none" | "gaussian" | "masking": the denoising AE's noise on the input only;
                        the clean image stays the target (Vincent et al. 2008)
      noise_level       the Gaussian noise's std, or the fraction of pixels masking sets to 0
      sparsity_weight   the sparse AE's penalty weight on its code (0 = off):
      sparsity_target   0: an L1 penalty, weight * sum_j |h_j|;  rho in (0, 1): the KL sparsity
                        penalty weight * sum_j KL(rho || mean_batch(h_j)), needing a sigmoid code
      kl_weight         the VAE's weight on KL(q(z|x) || p(z)) (1 = the ELBO)
      decoder_std       the Gaussian decoder's std (VAE with loss "mse")
      eval_noise_std    Gaussian noise of the "noisy reconstruction" test metric
      iw_samples        k of the importance-weighted bound computed in every evaluation (0 = off)
      iw_chunk          importance samples decoded at once
      eval_seed         the fixed randomness of evaluation (binarisation, noise, the VAE's samples)

Images must be in [0, 1] (data.mean 0, data.std 1): sigmoid(logits) is the reconstruction.
Losses are per image, summed over pixels (nats for "bernoulli"), averaged over the batch; the
metrics "reconstruction_mse" and "noisy_reconstruction_mse" are per-pixel mean squared errors.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import scipy.stats

from vision_jax import plotting
from vision_jax.config import checked_where_used
from vision_jax.data.augment import make_preprocess
from vision_jax.errors import ConfigError
from vision_jax.metrics import likelihood
from vision_jax.models import get_model
from vision_jax.models.autoencoders import VariationalAutoencoder
from vision_jax.models.registry import model_kwargs
from vision_jax.tasks.base import Task, masked_mean
from vision_jax.train.optimizers import make_optimizer
from vision_jax.train.state import TrainState

RECONSTRUCTION_LOSSES = ("bernoulli", "mse")
BINARIZATIONS = ("none", "dynamic")
CORRUPTIONS = ("none", "gaussian", "masking")


def default_options() -> ml_collections.ConfigDict:
  """`config.autoencoder` with every key the task reads, at its default."""
  o = ml_collections.ConfigDict()
  o.binarize = "none"
  o.corruption = "none"
  o.noise_level = 0.0
  o.sparsity_weight = 0.0
  o.sparsity_target = 0.0
  o.kl_weight = 1.0
  o.decoder_std = 0.1
  o.eval_noise_std = 0.3
  o.iw_samples = 0
  o.iw_chunk = 100
  o.eval_seed = 0
  return o


def check_options(options: ml_collections.ConfigDict, loss_name: str) -> None:
  """One clear error for an impossible setting."""
  if loss_name not in RECONSTRUCTION_LOSSES:
    raise ConfigError(
      f"unknown reconstruction loss (loss.name) {loss_name!r}; valid: {', '.join(RECONSTRUCTION_LOSSES)}"
    )
  if options.binarize not in BINARIZATIONS:
    raise ConfigError(
      f"unknown autoencoder.binarize {options.binarize!r}; valid: {', '.join(BINARIZATIONS)}"
    )
  if options.corruption not in CORRUPTIONS:
    raise ConfigError(
      f"unknown autoencoder.corruption {options.corruption!r}; valid: {', '.join(CORRUPTIONS)}"
    )
  if options.noise_level < 0:
    raise ConfigError(
      f"autoencoder.noise_level must be >= 0 (a noise std or a masked fraction), got {options.noise_level}"
    )
  if options.corruption == "masking" and options.noise_level > 1:
    raise ConfigError(
      f"masking noise sets a fraction of pixels to 0: autoencoder.noise_level must be in [0, 1], "
      f"got {options.noise_level}"
    )
  if options.eval_noise_std < 0:
    raise ConfigError(f"autoencoder.eval_noise_std must be >= 0, got {options.eval_noise_std}")
  if options.sparsity_weight < 0:
    raise ConfigError(f"autoencoder.sparsity_weight must be >= 0, got {options.sparsity_weight}")
  if not 0 <= options.sparsity_target < 1:
    raise ConfigError(
      f"autoencoder.sparsity_target must be 0 (L1 penalty) or a target activation rho in (0, 1), "
      f"got {options.sparsity_target}"
    )
  if options.kl_weight < 0:
    raise ConfigError(f"autoencoder.kl_weight must be >= 0, got {options.kl_weight}")
  if options.decoder_std <= 0:
    raise ConfigError(f"autoencoder.decoder_std must be > 0, got {options.decoder_std}")
  if not isinstance(options.iw_samples, int) or options.iw_samples < 0:
    raise ConfigError(
      f"autoencoder.iw_samples is the k of the importance-weighted bound: an integer >= 1, "
      f"or 0 for none; got {options.iw_samples!r}"
    )
  if options.iw_chunk < 1:
    raise ConfigError(f"autoencoder.iw_chunk must be >= 1, got {options.iw_chunk}")


def corrupt(rng: jax.Array, images: jnp.ndarray, kind: str, level: float) -> jnp.ndarray:
  """The denoising AE's corrupted input: [batch, h, w, c] -> the same shape.

  gaussian: images + level * N(0, 1); masking: each pixel set to 0 with probability `level`.
  """
  if level < 0:
    raise ValueError(f"the noise level must be >= 0, got {level}")
  if kind == "none" or level == 0:
    return images
  if kind == "gaussian":
    return images + level * jax.random.normal(rng, images.shape, images.dtype)
  if kind == "masking":
    return jnp.where(jax.random.bernoulli(rng, level, images.shape), jnp.zeros_like(images), images)
  raise ValueError(f"unknown corruption {kind!r}; valid: {', '.join(CORRUPTIONS)}")


def binarize(rng: jax.Array, images: jnp.ndarray) -> jnp.ndarray:
  """Dynamic binarisation: each pixel 1 with probability its intensity in [0, 1], else 0."""
  return jax.random.bernoulli(rng, jnp.clip(images, 0.0, 1.0)).astype(images.dtype)


def example_keys(seed: int, images: jnp.ndarray) -> jax.Array:
  """One rng per image, a function of the seed and the image's pixels alone: [batch] keys.

  Evaluation has no step rng, and must not depend on how the test set is batched or padded:
  keying each image's randomness by its own pixels gives every test image the same binarisation
  and the same noise in every evaluation.
  """
  pixels = jnp.round(images.reshape(images.shape[0], -1) * 255.0).astype(jnp.uint32)
  position = jnp.arange(pixels.shape[1], dtype=jnp.uint32) * jnp.uint32(2654435761) + jnp.uint32(1)
  checksum = jnp.sum((pixels + jnp.uint32(1)) * position, axis=1, dtype=jnp.uint32)
  return jax.vmap(lambda c: jax.random.fold_in(jax.random.key(seed), c))(checksum)


def per_example(keys: jax.Array, fn, *args):
  """fn(key, *example_args) over the batch: randomness that is each example's own."""
  return jax.vmap(fn)(keys, *args)


def hoyer_sparsity(codes: jnp.ndarray) -> jnp.ndarray:
  """Hoyer's (2004) sparsity of each code: (sqrt(n) - |h|_1 / |h|_2) / (sqrt(n) - 1), [batch, n] -> [batch].

  1 for a code with one non-zero unit, 0 when all units are equal in magnitude; invariant to the
  code's scale, so codes of different models compare.
  """
  n = codes.shape[-1]
  if n == 1:
    return jnp.zeros(codes.shape[:1])
  l1 = jnp.sum(jnp.abs(codes), -1)
  l2 = jnp.sqrt(jnp.sum(codes**2, -1)) + 1e-12
  return (jnp.sqrt(n) - l1 / l2) / (jnp.sqrt(n) - 1.0)


def sparsity_penalty(codes: jnp.ndarray, target: float) -> jnp.ndarray:
  """The sparse AE's penalty (before its weight), a scalar for the batch.

  target 0: the L1 norm of the code, sum_j |h_j|, averaged over the batch.
  target rho in (0, 1): sum_j KL(rho || rho_j) between Bernoulli means, rho_j = the batch's mean
  activation of unit j (Ng's sparse autoencoder); codes must be in (0, 1).
  """
  if target == 0:
    return jnp.mean(jnp.sum(jnp.abs(codes), axis=-1))
  rho_hat = jnp.clip(jnp.mean(codes, axis=0), 1e-6, 1 - 1e-6)
  return jnp.sum(
    target * jnp.log(target / rho_hat) + (1 - target) * jnp.log((1 - target) / (1 - rho_hat))
  )


class AutoencodingTask(Task):
  """Trains `config.model` (an autoencoder or VAE) to reconstruct its clean input."""

  RULES = {
    "autoencoder.eval_seed": checked_where_used("any integer"),
    **{
      f"autoencoder.{k}": checked_where_used(
        "vision_jax/tasks/autoencoding.py, against autoencoder.corruption and the model"
      )
      for k in (
        "decoder_std",
        "eval_noise_std",
        "iw_chunk",
        "iw_samples",
        "kl_weight",
        "noise_level",
        "sparsity_target",
        "sparsity_weight",
      )
    },
  }

  def __init__(self, config, spec):
    super().__init__(config, spec)
    data = config.data
    if tuple(data.mean) != (0.0,) * len(data.mean) or tuple(data.std) != (1.0,) * len(data.std):
      raise ConfigError(
        f"autoencoders reconstruct images in [0, 1]: set data.mean to 0 and data.std to 1 "
        f"(got mean {tuple(data.mean)}, std {tuple(data.std)})"
      )
    self.options = default_options()
    given = dict(config.get("autoencoder", {}))
    unknown = sorted(set(given) - set(self.options))
    if unknown:
      raise ConfigError(
        f"unknown autoencoder option(s) {', '.join(unknown)}; valid: {', '.join(sorted(self.options))}"
      )
    self.options.update(given)
    self.loss_name = config.loss.name
    check_options(self.options, self.loss_name)
    self.model_config = config.model
    self.model = None
    # Build now where the image shape is known, so that bad model settings fail before any data
    # is read; init_state builds again if the batch's shape differs.
    shape = tuple(spec.image_shape)
    if data.pad_to and len(shape) == 3:
      shape = (data.pad_to, data.pad_to, shape[2])
    if len(shape) == 3 and all(isinstance(d, int) for d in shape):
      self.build(shape)

  # -- model --------------------------------------------------------------------------------------

  def build(self, image_shape: tuple[int, int, int]):
    """The model for images of `image_shape` (height, width, channels); checks it against the options."""
    self.model = get_model(
      self.model_config.name,
      image_shape=tuple(int(d) for d in image_shape),
      **model_kwargs(self.model_config),
    )
    self.is_vae = isinstance(self.model, VariationalAutoencoder)
    o = self.options
    if (
      o.sparsity_weight
      and o.sparsity_target
      and getattr(self.model, "latent_activation", "") != "sigmoid"
    ):
      raise ConfigError(
        "the KL sparsity target (autoencoder.sparsity_target > 0) needs codes in (0, 1): "
        "use a sae_* model or model.latent_activation='sigmoid'"
      )
    if self.is_vae and o.sparsity_weight:
      raise ConfigError(
        "autoencoder.sparsity_weight applies to deterministic codes; the VAE's code is regularised by its KL term"
      )
    return self.model

  def init_state(self, rng, batch, total_steps):
    shape = tuple(int(d) for d in batch["image"].shape[1:])
    if self.model is None or tuple(self.model.image_shape) != shape:
      self.build(shape)
    self.tx = make_optimizer(self.config.optim, total_steps)
    variables = self.model.init({"params": rng, "latent": rng}, batch["image"], train=False)
    params = variables.pop("params")
    return TrainState.create(params, self.tx, dict(variables))

  def _apply(self, params, x, **kwargs):
    return self.model.apply({"params": params}, x, **kwargs)

  def encode(self, params, x):
    """Codes (the VAE's means): [batch, h, w, c] -> [batch, latent]."""
    out = self._apply(params, x, method="encode")
    return out[0] if self.is_vae else out

  def decode(self, params, z):
    """Logits of codes: [batch, latent] -> [batch, h, w, c]."""
    return self._apply(params, z, method="decode")

  # -- losses -------------------------------------------------------------------------------------

  def log_likelihood(self, logits: jnp.ndarray, targets: jnp.ndarray) -> jnp.ndarray:
    """log p(targets | decoder logits) per image: [batch, ...] -> [batch] (the VAE's decoder)."""
    if self.loss_name == "bernoulli":
      return likelihood.bernoulli_log_likelihood(logits, targets)
    return likelihood.gaussian_log_likelihood(
      jax.nn.sigmoid(logits), targets, self.options.decoder_std
    )

  def reconstruction_loss(self, logits: jnp.ndarray, targets: jnp.ndarray) -> jnp.ndarray:
    """The AE's loss per image, summed over pixels: [batch, ...] -> [batch]."""
    if self.loss_name == "bernoulli":
      return -likelihood.bernoulli_log_likelihood(logits, targets)
    diff = (jax.nn.sigmoid(logits.astype(jnp.float32)) - targets) ** 2
    return diff.reshape(diff.shape[0], -1).sum(-1)

  def losses(self, params, inputs, targets, latent_rng) -> tuple[dict[str, jnp.ndarray], dict]:
    """Named mean losses of a batch (their sum is trained) and the model's intermediates."""
    o = self.options
    if self.is_vae:
      logits, out = self._apply(params, inputs, train=True, rngs={"latent": latent_rng})
      kl = likelihood.gaussian_kl(out["mean"], out["logvar"])
      named = {
        "reconstruction": -jnp.mean(self.log_likelihood(logits, targets)),
        "kl": o.kl_weight * jnp.mean(kl),
      }
    else:
      logits, out = self._apply(params, inputs, train=True)
      named = {"reconstruction": jnp.mean(self.reconstruction_loss(logits, targets))}
      if o.sparsity_weight:
        named["sparsity"] = o.sparsity_weight * sparsity_penalty(
          out["code"].astype(jnp.float32), o.sparsity_target
        )
    return named, out

  def prepare(self, rng: jax.Array, images: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(model input, target) of training images: binarised, then the input corrupted."""
    bin_rng, noise_rng = jax.random.split(rng)
    targets = binarize(bin_rng, images) if self.options.binarize == "dynamic" else images
    return corrupt(noise_rng, targets, self.options.corruption, self.options.noise_level), targets

  def train_step(self, state, batch, rng):
    data_rng, latent_rng = jax.random.split(rng)
    inputs, targets = self.prepare(data_rng, batch["image"])

    def total_loss(params):
      named, out = self.losses(params, inputs, targets, latent_rng)
      return sum(named.values()), (named, out)

    (loss, (named, out)), grads = jax.value_and_grad(total_loss, has_aux=True)(state.params)
    state = state.apply_gradients(self.tx, grads)
    code = out["code"].astype(jnp.float32)
    metrics = {
      "loss": loss,
      **{f"loss_{k}": v for k, v in named.items()},
      "code_mean_abs": jnp.mean(jnp.abs(code)),
    }
    return state, metrics

  # -- evaluation ---------------------------------------------------------------------------------

  def eval_targets(self, images: jnp.ndarray) -> tuple[jnp.ndarray, jax.Array]:
    """Test images as the model sees them (each binarised once, if binarising) and their keys."""
    keys = example_keys(self.options.eval_seed, images)
    if self.options.binarize == "dynamic":
      images = per_example(keys, lambda k, x: binarize(jax.random.fold_in(k, 0), x), images)
    return images, keys

  def importance_weighted_bound(
    self, params, x: jnp.ndarray, keys: jax.Array, num_samples: int, chunk_size: int | None = None
  ) -> jnp.ndarray:
    """The VAE's L_k(x) for each image (Burda et al. 2015): [batch, h, w, c] -> [batch] nats.

    Each image's k samples come from its own key, in chunks of `chunk_size` decoded at once.
    """
    if not self.is_vae:
      raise ConfigError(
        f"the importance-weighted bound needs a VAE; model {self.model_config.name!r} is not one"
      )
    mean, logvar = self._apply(params, x, method="encode")
    chunk = chunk_size or self.options.iw_chunk

    def one_image(key, mean, logvar, image):
      def log_weights(rng, n):
        z = likelihood.reparameterize(rng, mean, logvar, n)  # [n, latent]
        log_px = self.log_likelihood(
          self.decode(params, z), jnp.broadcast_to(image, (n, *image.shape))
        )
        log_w = (
          log_px
          + likelihood.standard_normal_log_density(z)
          - likelihood.diagonal_gaussian_log_density(z, mean, logvar)
        )
        return log_w[:, None]

      return likelihood.importance_weighted_bound(
        log_weights, jax.random.fold_in(key, 2), num_samples, chunk
      )[0]

    return per_example(keys, one_image, mean, logvar, x)

  def eval_step(self, state, batch):
    o, mask = self.options, batch["mask"]
    x, keys = self.eval_targets(batch["image"])
    params = state.params
    logits, out = self._apply(params, x, train=False)
    code = out["code"].astype(jnp.float32)
    recon = jax.nn.sigmoid(logits.astype(jnp.float32))
    pixel_mse = lambda r: ((r - x) ** 2).reshape(x.shape[0], -1).mean(-1)
    noisy = x + o.eval_noise_std * per_example(
      keys, lambda k, im: jax.random.normal(jax.random.fold_in(k, 1), im.shape), x
    )
    noisy_logits, _ = self._apply(params, noisy, train=False)
    metrics = {
      "reconstruction_mse": masked_mean(pixel_mse(recon), mask),
      "noisy_reconstruction_mse": masked_mean(
        pixel_mse(jax.nn.sigmoid(noisy_logits.astype(jnp.float32))), mask
      ),
      "code_sparsity": masked_mean(hoyer_sparsity(code), mask),
      "code_mean_abs": masked_mean(jnp.mean(jnp.abs(code), -1), mask),
    }
    if self.is_vae:
      mean, logvar = out["mean"], out["logvar"]
      z = per_example(
        keys,
        lambda k, m, lv: likelihood.reparameterize(jax.random.fold_in(k, 3), m, lv),
        mean,
        logvar,
      )
      log_px = self.log_likelihood(self.decode(params, z), x)
      kl = likelihood.gaussian_kl(mean, logvar)
      metrics["negative_elbo"] = masked_mean(kl - log_px, mask)
      metrics["kl"] = masked_mean(kl, mask)
      metrics["loss"] = masked_mean(o.kl_weight * kl - log_px, mask)
      if o.iw_samples:
        bound = self.importance_weighted_bound(params, x, keys, o.iw_samples)
        metrics[f"nll_iw{o.iw_samples}"] = masked_mean(-bound, mask)
    else:
      inputs = per_example(
        keys, lambda k, im: corrupt(jax.random.fold_in(k, 4), im, o.corruption, o.noise_level), x
      )
      loss_logits, _ = self._apply(params, inputs, train=False)
      loss = self.reconstruction_loss(loss_logits, x)
      if o.sparsity_weight and o.sparsity_target == 0:
        # The L1 penalty is per example; the KL target is a batch statistic, left out of the test loss.
        loss = loss + o.sparsity_weight * jnp.sum(jnp.abs(code), -1)
      metrics["loss"] = masked_mean(loss, mask)
    return metrics

  @property
  def primary_metric(self) -> str:
    return "negative_elbo" if self.is_vae else "reconstruction_mse"

  # -- pictures -----------------------------------------------------------------------------------

  @functools.partial(jax.jit, static_argnums=(0,))
  def _reconstruct(self, params, x, noise_key):
    """(reconstructions of x, the corrupted x, its reconstructions) in [0, 1]."""
    o = self.options
    kind, level = (
      (o.corruption, o.noise_level) if o.corruption != "none" else ("gaussian", o.eval_noise_std)
    )
    noisy = corrupt(noise_key, x, kind, level)
    clean_logits, _ = self._apply(params, x, train=False)
    noisy_logits, _ = self._apply(params, noisy, train=False)
    return jax.nn.sigmoid(clean_logits), jnp.clip(noisy, 0, 1), jax.nn.sigmoid(noisy_logits)

  def visuals(self, state, batch, directory, prefix):
    n = min(16, batch["image"].shape[0])
    x, _ = self.eval_targets(batch["image"][:n])
    recon, noisy, denoised = map(
      np.asarray, jax.device_get(self._reconstruct(state.params, x, jax.random.key(1)))
    )
    x = np.asarray(jax.device_get(x))
    o, name = self.options, self.model_config.name
    kind = (
      f"{o.corruption} {o.noise_level:g}"
      if o.corruption != "none"
      else f"gaussian {o.eval_noise_std:g}"
    )
    paths = {
      f"{prefix}reconstructions": plotting.image_rows(
        [x, recon],
        ["input", "reconstruction"],
        os.path.join(directory, f"{prefix}reconstructions.png"),
        title=name,
      ),
      f"{prefix}denoising": plotting.image_rows(
        [noisy, denoised, x],
        [f"noisy\n({kind})", "denoised", "clean"],
        os.path.join(directory, f"{prefix}denoising.png"),
        title=name,
      ),
    }
    if self.is_vae:
      z = jax.random.normal(jax.random.key(o.eval_seed), (64, self.model.latent_dim))
      samples = np.asarray(jax.device_get(jax.nn.sigmoid(self.decode(state.params, z))))
      paths[f"{prefix}prior_samples"] = plotting.image_grid(
        samples, os.path.join(directory, f"{prefix}prior_samples.png")
      )
      if self.model.latent_dim == 2:
        paths[f"{prefix}manifold"] = self.manifold(
          state, os.path.join(directory, f"{prefix}manifold.png")
        )
    return paths

  def manifold(self, state, path: str, n: int = 20) -> str:
    """A 2-D VAE's decoder over an n x n grid of the prior's quantiles (Kingma & Welling, Fig. 4)."""
    if not self.is_vae or self.model.latent_dim != 2:
      raise ConfigError("the manifold picture needs a VAE with model.latent_dim = 2")
    values = scipy.stats.norm.ppf(np.linspace(0.05, 0.95, n)).astype(np.float32)
    z1, z2 = np.meshgrid(values, values[::-1])  # row i has z2 = values[-1 - i]: z2 grows upwards
    z = np.stack([z1.ravel(), z2.ravel()], -1)
    images = np.asarray(jax.device_get(jax.nn.sigmoid(self.decode(state.params, z))))
    return plotting.manifold_grid(
      images.reshape(n, n, *images.shape[1:]), values, path, title=self.model_config.name
    )

  def latent_scatter(
    self, state, images: np.ndarray, labels: np.ndarray, path: str, batch_size: int = 1000
  ) -> str:
    """Test codes coloured by class: the 2-D code itself, or its first two principal components."""
    codes = self.codes(state, images, batch_size)
    axes = ("z1", "z2")
    if codes.shape[1] != 2:
      centred = codes - codes.mean(0)
      _, _, vt = np.linalg.svd(centred, full_matrices=False)
      codes, axes = centred @ vt[:2].T, ("principal component 1", "principal component 2")
    return plotting.latent_scatter(
      codes,
      labels,
      self.spec.class_names,
      path,
      title=f"{self.model_config.name} codes",
      axis_names=axes,
    )

  def codes(self, state, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Codes of uint8 images (the VAE's means), [n, h, w, c] -> [n, latent], in batches on the device."""
    if not hasattr(self, "_encode_raw"):
      _, eval_fn = make_preprocess(self.config.data)
      self._encode_raw = jax.jit(
        lambda params, raw: self.encode(
          params, self.eval_targets(eval_fn({"image": raw})["image"])[0]
        )
      )
    batch_size = min(batch_size, len(images))
    parts = []
    for start in range(0, len(images), batch_size):
      batch = images[start : start + batch_size]
      pad = batch_size - len(batch)  # one compiled shape: pad the last batch, then drop the padding
      padded = np.concatenate([batch, np.repeat(batch[:1], pad, 0)]) if pad else batch
      parts.append(
        np.asarray(jax.device_get(self._encode_raw(state.params, jnp.asarray(padded))))[
          : len(batch)
        ]
      )
    return np.concatenate(parts).astype(np.float32)
