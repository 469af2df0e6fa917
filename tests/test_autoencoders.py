"""Autoencoders: models, the autoencoding task, the likelihood bounds, and the experiments' smoke runs."""

from __future__ import annotations

import json
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs.common import base_config
from vision_jax.data.formats.base import DatasetSpec
from vision_jax.metrics import likelihood
from vision_jax.models import get_model, list_models
from vision_jax.tasks.autoencoding import AutoencodingTask, default_options, hoyer_sparsity

AE_MODELS = [m for m in list_models() if m.split("_")[0] in ("ae", "sae", "vae")]
SMALL = {"mlp": {"hidden": (32,), "latent_dim": 8}, "conv": {"hidden": (8, 16), "latent_dim": 8}}
SPEC = DatasetSpec(
  image_shape=(8, 8, 1), class_names=tuple(str(i) for i in range(10)), splits=("train", "test")
)


def digits(n: int = 16) -> tuple[np.ndarray, np.ndarray]:
  """sklearn's 8x8 digits in [0, 1], [n, 8, 8, 1], and their labels: real images, no files."""
  import sklearn.datasets  # pylint: disable=g-import-not-at-top

  d = sklearn.datasets.load_digits()
  return (d.images[:n, :, :, None] / 16.0).astype(np.float32), d.target[:n].astype(np.int32)


def small_model(name: str, **kwargs):
  return get_model(name, image_shape=(8, 8, 1), **{**SMALL[name.split("_")[1]], **kwargs})


def make_task(model: str = "ae_mlp", learning_rate: float = 3e-3, **options) -> AutoencodingTask:
  c = base_config()
  c.model = ml_collections.ConfigDict({"name": model, **SMALL[model.split("_")[1]]})
  c.loss.name = "bernoulli"
  c.autoencoder = default_options()
  c.autoencoder.update(options)
  c.optim.learning_rate = learning_rate
  task = AutoencodingTask(c, SPEC)
  return task


def train(task: AutoencodingTask, images: np.ndarray, steps: int, seed: int = 0):
  """`steps` of task.train_step on one batch, as the loop would run them (one scan)."""
  state = task.init_state(jax.random.key(seed), {"image": jnp.asarray(images)}, steps)

  @jax.jit
  def run(state):
    def body(state, _):
      state, metrics = task.train_step(
        state, {"image": jnp.asarray(images)}, jax.random.fold_in(jax.random.key(seed), state.step)
      )
      return state.replace(step=state.step + 1), metrics

    return jax.lax.scan(body, state, None, length=steps)

  return run(state)


@pytest.mark.parametrize("name", AE_MODELS)
def test_every_autoencoder_has_shapes_and_overfits_one_batch(name):
  assert len(AE_MODELS) == 6
  images, _ = digits(8)
  images = (images > 0.5).astype(np.float32)  # binary targets: a perfect fit has zero loss
  task = make_task(name, learning_rate=5e-3)
  state, metrics = train(task, images, 120)
  logits, out = task.model.apply({"params": state.params}, jnp.asarray(images), train=False)
  assert logits.shape == images.shape
  assert out["code"].shape == (8, 8)
  if name.startswith("vae"):
    assert out["mean"].shape == out["logvar"].shape == (8, 8)
  if name.startswith("sae"):
    assert jnp.all((out["code"] >= 0) & (out["code"] <= 1))
  loss = metrics["loss_reconstruction"]
  assert np.all(np.isfinite(metrics["loss"]))
  # Bernoulli cross-entropy of 64 pixels: from ~44 nats (logits near 0) to under half.
  assert loss[-10:].mean() < 0.5 * loss[:3].mean(), (name, loss[:3], loss[-10:])


def test_closed_form_kl_equals_a_monte_carlo_estimate():
  rng = jax.random.key(0)
  mean = jax.random.normal(jax.random.fold_in(rng, 1), (3, 5))
  logvar = jax.random.uniform(jax.random.fold_in(rng, 2), (3, 5), minval=-2.0, maxval=1.0)
  z = likelihood.reparameterize(jax.random.fold_in(rng, 3), mean, logvar, 100_000)
  mc = jnp.mean(
    likelihood.diagonal_gaussian_log_density(z, mean, logvar)
    - likelihood.standard_normal_log_density(z),
    0,
  )
  np.testing.assert_allclose(likelihood.gaussian_kl(mean, logvar), mc, rtol=0.03, atol=0.03)


def toy_log_weights(x: jnp.ndarray, q_mean: float, q_logvar: float):
  """p(z) = N(0, 1), p(x|z) = N(x; z, 1), q(z|x) = N(q_mean, exp(q_logvar)): log p(x) = log N(x; 0, 2)."""

  def log_weights(rng, n):
    z = q_mean + math.exp(0.5 * q_logvar) * jax.random.normal(rng, (n, x.shape[0], 1))
    log_px_z = -0.5 * (math.log(2 * math.pi) + (x[None, :, None] - z) ** 2)[..., 0]
    log_q = likelihood.diagonal_gaussian_log_density(
      z, jnp.full_like(z, q_mean), jnp.full_like(z, q_logvar)
    )
    return log_px_z + likelihood.standard_normal_log_density(z) - log_q

  return log_weights


def test_importance_weighted_bound_grows_with_k_and_is_the_elbo_at_k1():
  x = jnp.linspace(-2.0, 2.0, 64)
  log_weights = toy_log_weights(x, 0.3, -1.0)  # a poor q: a clear gap to log p(x)
  log_px = -0.5 * (math.log(2 * math.pi * 2.0) + x**2 / 2.0)
  bound = jax.jit(likelihood.importance_weighted_bound, static_argnums=(0, 2, 3))
  means = []
  for k in (1, 5, 50, 500):
    bounds = jnp.stack([bound(log_weights, jax.random.key(r), k, 100) for r in range(8)])
    means.append(float(jnp.mean(bounds)))
  assert means == sorted(means), means
  assert means[-1] <= float(jnp.mean(log_px))  # a lower bound, on average
  assert means[-1] > float(jnp.mean(log_px)) - 0.05
  # k = 1: the single-sample ELBO log w(z) of the same sample (the first of chunk 0).
  rng = jax.random.key(3)
  np.testing.assert_allclose(
    bound(log_weights, rng, 1, 100), log_weights(jax.random.fold_in(rng, 0), 100)[0], rtol=1e-5
  )
  # Chunks with a remainder: k = 250 in chunks of 100 is log-mean-exp over the first 250 samples.
  all_w = jnp.concatenate([log_weights(jax.random.fold_in(rng, i), 100) for i in range(3)])[:250]
  np.testing.assert_allclose(
    bound(log_weights, rng, 250, 100), jax.nn.logsumexp(all_w, 0) - math.log(250), rtol=1e-5
  )


def test_vae_iw_bound_on_a_model_is_at_least_the_elbo_on_average():
  images, _ = digits(8)
  task = make_task("vae_mlp")
  state = task.init_state(jax.random.key(0), {"image": jnp.asarray(images)}, 1)
  x, keys = task.eval_targets(jnp.asarray(images))
  bound = jax.jit(task.importance_weighted_bound, static_argnums=(3, 4))
  l1 = bound(state.params, x, keys, 1, 1)
  l16 = bound(state.params, x, keys, 16, 16)
  assert l1.shape == l16.shape == (8,)
  assert float(jnp.mean(l16)) > float(jnp.mean(l1))
  # L_1 is an unbiased estimate of the ELBO: E_q[log p(x|z)] - KL, here from 64 samples.
  mean, logvar = task.model.apply({"params": state.params}, x, method="encode")
  z = likelihood.reparameterize(jax.random.key(5), mean, logvar, 64).reshape(-1, mean.shape[1])
  log_px = task.log_likelihood(task.decode(state.params, z), jnp.tile(x, (64, 1, 1, 1))).reshape(
    64, 8
  )
  elbo = jnp.mean(log_px, 0) - likelihood.gaussian_kl(mean, logvar)
  assert abs(float(jnp.mean(l1 - elbo))) < 3.0


def test_dynamic_binarisation_differs_between_steps_and_is_fixed_per_seed_and_step():
  images, _ = digits(64)
  task = make_task(binarize="dynamic")
  step_rng = lambda seed, step: jax.random.fold_in(jax.random.key(seed), step)
  a, target_a = task.prepare(step_rng(0, 7), jnp.asarray(images))
  _, target_a2 = task.prepare(step_rng(0, 7), jnp.asarray(images))
  _, target_b = task.prepare(step_rng(0, 8), jnp.asarray(images))
  _, target_c = task.prepare(step_rng(1, 7), jnp.asarray(images))
  assert set(np.unique(target_a)) <= {0.0, 1.0}
  np.testing.assert_array_equal(target_a, target_a2)
  assert np.mean(target_a != target_b) > 0.05 and np.mean(target_a != target_c) > 0.05
  np.testing.assert_array_equal(a, target_a)  # no corruption: the binarised image is the input
  assert abs(float(target_a.mean()) - float(images.mean())) < 0.02  # p(1) = the grey level
  # Test images: one fixed binarisation each, whatever batch they are evaluated in.
  x1, _ = task.eval_targets(jnp.asarray(images[:8]))
  x2, _ = task.eval_targets(jnp.asarray(images[4:12]))
  np.testing.assert_array_equal(x1[4:], x2[:4])


def test_denoising_noise_reaches_the_input_and_not_the_target():
  images, _ = digits(64)
  clean = jnp.asarray(images)
  gaussian = make_task(corruption="gaussian", noise_level=0.5)
  inputs, targets = gaussian.prepare(jax.random.key(0), clean)
  np.testing.assert_array_equal(targets, clean)
  assert abs(float(jnp.std(inputs - clean)) - 0.5) < 0.02
  masking = make_task(corruption="masking", noise_level=0.3)
  inputs, targets = masking.prepare(jax.random.key(0), clean)
  np.testing.assert_array_equal(targets, clean)
  dropped = (inputs == 0) & (clean > 0)
  assert abs(float(dropped.sum() / (clean > 0).sum()) - 0.3) < 0.03
  assert jnp.all((inputs == 0) | (inputs == clean))


def test_sparsity_penalty_lowers_mean_activation():
  images, _ = digits(32)
  mean_code = {}
  for weight in (0.0, 2.0):
    task = make_task("sae_mlp", sparsity_weight=weight)
    state, _ = train(task, images, 100)
    codes = task.model.apply({"params": state.params}, jnp.asarray(images), method="encode")
    mean_code[weight] = float(jnp.mean(codes))
  assert mean_code[2.0] < 0.5 * mean_code[0.0], mean_code
  # The KL target rho pulls the mean activation towards rho.
  task = make_task("sae_mlp", sparsity_weight=2.0, sparsity_target=0.05)
  state, _ = train(task, images, 100)
  codes = task.model.apply({"params": state.params}, jnp.asarray(images), method="encode")
  assert float(jnp.mean(codes)) < 0.5 * mean_code[0.0]
  assert hoyer_sparsity(jnp.array([[0.0, 0.0, 3.0]]))[0] == pytest.approx(1.0)
  assert hoyer_sparsity(jnp.array([[2.0, 2.0, 2.0]]))[0] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
  "options, message",
  [
    ({"noise_level": -0.1, "corruption": "gaussian"}, "noise_level must be >= 0"),
    ({"corruption": "masking", "noise_level": 1.5}, "in \\[0, 1\\]"),
    ({"corruption": "salt"}, "unknown autoencoder.corruption"),
    ({"iw_samples": -1}, "integer >= 1"),
    ({"sparsity_target": 1.0}, "sparsity_target"),
    ({"binarize": "static"}, "unknown autoencoder.binarize"),
  ],
)
def test_bad_task_settings_give_clear_errors(options, message):
  with pytest.raises(ValueError, match=message):
    make_task(**options)


def test_bad_model_and_bound_settings_give_clear_errors():
  images, _ = digits(2)
  with pytest.raises(ValueError, match="latent size"):
    small_model("ae_mlp", latent_dim=0).init(jax.random.key(0), jnp.asarray(images))
  with pytest.raises(ValueError, match="k must be an integer >= 1"):
    likelihood.importance_weighted_bound(
      toy_log_weights(jnp.zeros(2), 0.0, 0.0), jax.random.key(0), 0
    )
  with pytest.raises(ValueError, match="needs codes in \\(0, 1\\)"):
    make_task("ae_mlp", sparsity_weight=1.0, sparsity_target=0.1).init_state(
      jax.random.key(0), {"image": jnp.asarray(images)}, 1
    )
  with pytest.raises(ValueError, match="unknown autoencoder option"):
    make_task(noise=0.3)
  c = make_task().config
  c.data.std = (0.3081,)
  with pytest.raises(ValueError, match="images in \\[0, 1\\]"):
    AutoencodingTask(c, SPEC)


@pytest.fixture
def env(tmp_path, monkeypatch):
  datasets = os.environ.get("VISION_JAX_DATASETS") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "shared",
    "datasets",
  )
  if not os.path.exists(os.path.join(datasets, "mnist")):
    pytest.skip(f"MNIST is not in {datasets} (set VISION_JAX_DATASETS)")
  monkeypatch.setenv("VISION_JAX_DATASETS", datasets)
  monkeypatch.setenv("VISION_JAX_NO_PROGRESS", "1")
  return tmp_path


def test_vae_mnist_smoke_runs_end_to_end(env):
  from experiments import vae_mnist  # pylint: disable=g-import-not-at-top
  from vision_jax import cli  # pylint: disable=g-import-not-at-top

  workdir = str(env / "vae")
  result = cli.main(
    "vae_mnist",
    vae_mnist.run,
    paper="",
    metric="nll",
    paper_value=86.76,
    argv=["--workdir", workdir, "--variant", "smoke,latent=2"],
  )
  assert 50 < result["value"] < 600 and result["iw_samples"] == 50 and result["test_images"] == 20
  assert (
    result["eval"]["test/negative_elbo"] >= result["value"] - 30
  )  # -L_50 is below the ELBO's -L_1 in expectation
  pictures = os.listdir(os.path.join(workdir, "pictures"))
  for name in (
    "final_reconstructions.png",
    "final_denoising.png",
    "final_prior_samples.png",
    "final_manifold.png",
    "latent_space.png",
    "manifold.png",
  ):
    assert name in pictures
  assert json.load(open(os.path.join(workdir, "result.json")))["value"] == result["value"]


def test_autoencoders_mnist_smoke_runs_end_to_end(env):
  from experiments import autoencoders_mnist  # pylint: disable=g-import-not-at-top
  from vision_jax import cli  # pylint: disable=g-import-not-at-top

  workdir = str(env / "cmp")
  result = cli.main(
    "autoencoders_mnist",
    autoencoders_mnist.run,
    paper="",
    metric="probe",
    paper_value=None,
    argv=["--workdir", workdir, "--variant", "smoke,kinds=dae"],
  )
  assert list(result["table"]) == ["dae"]
  assert 10 < result["value"] <= 100
  assert "| dae | ae_mlp |" in open(os.path.join(workdir, "table.md")).read()
  assert os.path.exists(os.path.join(workdir, "probe.png"))
  # One kind: its run is the workdir itself, with the eval metrics scripts.report compares.
  assert os.path.exists(os.path.join(workdir, "pictures", "final_denoising.png"))
  assert os.path.exists(os.path.join(workdir, "metrics.jsonl"))
  assert round(100 * result["eval"]["test/probe_accuracy"], 2) == result["value"]
  assert {"test/reconstruction_mse", "test/noisy_reconstruction_mse", "test/code_sparsity"} <= set(
    result["eval"]
  )
