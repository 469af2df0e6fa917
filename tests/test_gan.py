"""GAN training (generator against critic) on the one loop, and the sample-quality metrics."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from configs.gan_base import gan_config
from vision_jax import cli
from vision_jax.data.formats.base import DatasetSpec
from vision_jax.metrics import sample_quality
from vision_jax.models import get_model
from vision_jax.tasks.gan import GANTask, gradient_penalty
from vision_jax.train.loop import train_and_evaluate

os.environ.setdefault("VISION_JAX_NO_PROGRESS", "1")
DIGITS = DatasetSpec((32, 32, 1), tuple(str(i) for i in range(10)), ("train", "test"))


def _digits_config(method, **gan):
  """A tiny GAN of `method` with MLPs on sklearn's digits (brought to 32x32 by the data layer)."""
  c = gan_config(method, "mnist", smoke=True)
  c.data.dataset = "sklearn:digits"
  c.data.validation_size = 0
  c.data.train_size = 0
  c.data.eval_splits = ("test",)
  c.train.eval_batch_size = 400  # the 360 test digits in one batch: one eval compilation
  if method != "gan":
    c.model.generator = gan_config("gan", "mnist", smoke=True).model.generator
    c.model.critic = gan_config("gan", "mnist", smoke=True).model.critic
  for k, v in gan.items():
    c.gan[k] = v
  c.train.batch_size = 8 * c.gan.n_critic
  return c


def _batch(n, shape=(32, 32, 1), seed=0):
  x = jax.random.uniform(jax.random.key(seed), (n, *shape), minval=-1.0, maxval=1.0)
  return {"image": x, "label": jnp.zeros((n,), jnp.int32), "mask": jnp.ones((n,), bool)}


def _counts(opt_state):
  """Every optimizer step counter in an optax state."""
  leaves = jax.tree_util.tree_leaves_with_path(opt_state)
  return {int(v) for path, v in leaves if "count" in jax.tree_util.keystr(path)}


def test_one_step_updates_the_critic_n_times_and_the_generator_once():
  config = _digits_config("wgan_gp", n_critic=3)
  task = GANTask(config, DIGITS)
  state = task.init_state(jax.random.key(0), _batch(2), total_steps=10)
  new, metrics = jax.jit(task.train_step)(state, _batch(24), jax.random.key(1))
  assert _counts(new.opt_state["disc"]) == {3}
  assert _counts(new.opt_state["gen"]) == {1}
  for player in ("gen", "disc"):
    changed = jax.tree.map(
      lambda a, b: bool(jnp.any(a != b)), state.params[player], new.params[player]
    )
    # Every kernel moves (the critic's output bias cancels out of mean D(fake) - mean D(real)).
    assert all(
      v
      for k, v in jax.tree_util.tree_leaves_with_path(changed)
      if "kernel" in jax.tree_util.keystr(k)
    ), player
  assert {"loss", "generator_loss", "gradient_penalty", "wasserstein_estimate"} <= set(metrics)
  assert all(np.isfinite(float(v)) for v in metrics.values())


@pytest.mark.parametrize("n_critic", [1, 3])
def test_the_step_has_no_loop_for_xla_cpu_to_run_slowly(n_critic):
  # A scan of the critic updates, even of one, ran DCGAN's CIFAR-10 step 6x slower on CPUs.
  task = GANTask(_digits_config("dcgan", n_critic=n_critic), DIGITS)
  state = task.init_state(jax.random.key(0), _batch(2), total_steps=10)
  jaxpr = str(jax.make_jaxpr(task.train_step)(state, _batch(8 * n_critic), jax.random.key(1)))
  assert "while[" not in jaxpr and "scan[" not in jaxpr


def test_gradient_penalty_is_zero_exactly_for_unit_norm_gradients():
  real, fake = _batch(16, seed=1)["image"], _batch(16, seed=2)["image"]
  w = jax.random.normal(jax.random.key(3), real.shape[1:])
  unit = w / jnp.linalg.norm(w)
  linear = lambda weight: lambda x: jnp.sum(x * weight, axis=(1, 2, 3))
  assert float(gradient_penalty(linear(unit), real, fake, jax.random.key(0))) < 1e-6
  # |grad| = 2 everywhere: (2 - 1)^2 = 1; |grad| = 0.5: 0.25.
  np.testing.assert_allclose(
    float(gradient_penalty(linear(2 * unit), real, fake, jax.random.key(0))), 1.0, rtol=1e-4
  )
  np.testing.assert_allclose(
    float(gradient_penalty(linear(0.5 * unit), real, fake, jax.random.key(0))), 0.25, rtol=1e-4
  )
  # A nonlinear critic: the gradient norm differs between interpolates, so the penalty is positive.
  assert (
    float(gradient_penalty(lambda x: jnp.sum(x**2, axis=(1, 2, 3)), real, fake, jax.random.key(0)))
    > 0.1
  )


def test_weight_clipping_keeps_every_critic_weight_in_bounds():
  config = _digits_config("wgan", n_critic=2)
  task = GANTask(config, DIGITS)
  state = task.init_state(jax.random.key(0), _batch(2), total_steps=10)
  assert max(float(jnp.max(jnp.abs(p))) for p in jax.tree.leaves(state.params["disc"])) > 0.05
  new, _ = jax.jit(task.train_step)(state, _batch(config.train.batch_size), jax.random.key(1))
  leaves = jax.tree.leaves(new.params["disc"])
  assert max(float(jnp.max(jnp.abs(p))) for p in leaves) <= config.gan.clip
  assert any(bool(jnp.any(jnp.abs(p) == config.gan.clip)) for p in leaves)


def test_dcgan_models_make_and_score_images_of_both_sizes():
  for size, channels, norm in ((28, 1, "batch"), (32, 3, "layer"), (32, 3, "none")):
    gen = get_model("dcgan_generator", image_shape=(size, size, channels), width=8)
    z = jax.random.normal(jax.random.key(0), (3, 16))
    variables = gen.init(jax.random.key(1), z)
    images, _ = gen.apply(variables, z)
    assert images.shape == (3, size, size, channels)
    assert float(jnp.max(jnp.abs(images))) <= 1.0
    critic = get_model("dcgan_critic", width=8, norm=norm)
    (scores, out), _ = critic.apply(
      critic.init(jax.random.key(2), images), images, train=True, mutable=["batch_stats"]
    )
    assert scores.shape == (3,) and out["pre_logits"].shape[0] == 3
  with pytest.raises(ValueError, match="28x28 or 32x32"):
    gen = get_model("dcgan_generator", image_shape=(64, 64, 3))
    gen.init(jax.random.key(0), jnp.zeros((1, 8)))


def test_a_resumed_gan_ends_with_the_parameters_of_an_uninterrupted_run(tmp_path):
  config = _digits_config("gan", n_critic=2)
  config.train.steps, config.train.checkpoint_every, config.train.eval_every = 4, 2, 4
  config.train.visuals_every = 0
  whole = train_and_evaluate(config, str(tmp_path / "whole"), GANTask)
  config.train.steps = 2
  train_and_evaluate(config, str(tmp_path / "resumed"), GANTask)
  config.train.steps = 4
  resumed = train_and_evaluate(config, str(tmp_path / "resumed"), GANTask)
  assert resumed["step"] == whole["step"] == 4
  for a, b in zip(jax.tree.leaves(whole["state"]), jax.tree.leaves(resumed["state"])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_experiment_writes_result_samples_and_interpolation(tmp_path):
  from experiments.dcgan_mnist import run  # every GAN experiment's run

  result = cli.main(
    "gan_mnist",
    run,
    paper="-",
    metric="-",
    paper_value=None,
    argv=[
      "--workdir",
      str(tmp_path),
      "--variant",
      "smoke",
      "--config.data.dataset=sklearn:digits",
      "--config.train.eval_batch_size=400",
    ],
  )
  assert np.isfinite(result["value"]) and result["steps"] == 4
  pictures = os.listdir(tmp_path / "pictures")
  assert {
    "final_samples.png",
    "final_interpolation.png",
    "real.png",
    "step0000004_samples.png",
  } <= set(pictures)
  saved = json.load(open(tmp_path / "result.json"))
  assert saved["experiment"] == "gan_mnist"
  # The smoke variant has no feature classifier: the value is the critic's loss, and says so.
  assert saved["metric"].startswith("validation critic loss") and saved["value"] == round(
    saved["eval"]["validation/loss"], 4
  )


def test_frechet_distance_against_scipy_sqrtm_and_known_answers():
  rng = np.random.default_rng(0)
  d = 6
  a, b = rng.normal(size=(d, d)), rng.normal(size=(d, d))
  cov1, cov2 = a @ a.T + 0.1 * np.eye(d), b @ b.T + 0.1 * np.eye(d)
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
  reference = np.sum((mu1 - mu2) ** 2) + np.trace(
    cov1 + cov2 - 2 * np.real(scipy.linalg.sqrtm(cov1 @ cov2))
  )
  np.testing.assert_allclose(
    sample_quality.frechet_distance(mu1, cov1, mu2, cov2), reference, rtol=1e-6
  )
  # Known answers: identical Gaussians are at 0; shifted means add |mu1 - mu2|^2; N(0, I) to
  # N(0, 4I) is d (1 + 4 - 2 * 2).
  assert abs(sample_quality.frechet_distance(mu1, cov1, mu1, cov1)) < 1e-8
  np.testing.assert_allclose(
    sample_quality.frechet_distance(mu1, cov1, mu1 + 3.0, cov1), 9.0 * d, rtol=1e-8
  )
  np.testing.assert_allclose(
    sample_quality.frechet_distance(np.zeros(d), np.eye(d), np.zeros(d), 4 * np.eye(d)), d
  )


def test_feature_statistics_in_sum_form_match_numpy():
  rng = np.random.default_rng(1)
  features = rng.normal(size=(50, 4)).astype(np.float32)
  mask = np.arange(50) < 37  # the last rows are padding
  sums = sample_quality.feature_sums(jnp.asarray(features), jnp.asarray(mask))
  mu, cov = sample_quality.gaussian_from_sums(
    sums["feature_sum"][0], sums["outer_sum"][0], float(sums["feature_sum"][1])
  )
  np.testing.assert_allclose(mu, features[:37].mean(0), atol=1e-5)
  np.testing.assert_allclose(cov, np.cov(features[:37].T), atol=1e-4)


def test_classifier_score_is_one_for_uniform_and_k_for_k_equal_certain_classes():
  np.testing.assert_allclose(
    sample_quality.classifier_score(np.full((100, 10), 0.1)), 1.0, rtol=1e-9
  )
  for k in (2, 7):
    one_hot = np.eye(10)[np.arange(70) % k]
    np.testing.assert_allclose(sample_quality.classifier_score(one_hot), k, rtol=1e-9)
  # Always the same certain class: 1.
  np.testing.assert_allclose(
    sample_quality.classifier_score(np.eye(10)[np.zeros(30, int)]), 1.0, rtol=1e-9
  )
  sums = sample_quality.prediction_sums(
    jnp.asarray(np.eye(10)[np.arange(40) % 4], jnp.float32), jnp.ones(40, bool)
  )
  np.testing.assert_allclose(
    sample_quality.classifier_score_from_sums(sums["plogp_sum"][0], sums["probs_sum"][0], 40.0),
    4.0,
    rtol=1e-5,
  )


def test_trained_classifier_scores_real_images_far_better_than_noise(tmp_path):
  from vision_jax.data.pipeline import get_splits
  from vision_jax.metrics.feature_classifier import load_feature_classifier
  from vision_jax.train.feature_classifier import ensure_feature_classifier

  directory = ensure_feature_classifier(
    "lenet5_mnist",
    40,
    ("data.dataset=sklearn:digits", "train.log_every=20"),
    directory=str(tmp_path / "classifier"),
  )
  classifier = load_feature_classifier(directory)
  assert classifier.info["test_error"] < 0.5  # a real, if brief, training
  config = _digits_config("gan")
  config.gan.classifier.directory = directory
  task = GANTask(config, DIGITS)
  _, splits = get_splits(config.data)
  to_input = lambda images: jnp.asarray(images, jnp.float32) / 127.5 - 1.0
  train, test = (to_input(splits[s].arrays()["image"]) for s in ("train", "test"))
  noise = jax.random.uniform(jax.random.key(0), test.shape, minval=-1.0, maxval=1.0)

  def frechet(a, b):
    stats = []
    for images in (a, b):
      _, f = classifier(images)
      sums = sample_quality.feature_sums(f, jnp.ones(len(f), bool))
      stats += sample_quality.gaussian_from_sums(
        sums["feature_sum"][0], sums["outer_sum"][0], len(f)
      )
    return sample_quality.frechet_distance(*stats)

  assert frechet(train, test) * 10 < frechet(train, noise)
  real_score = sample_quality.classifier_score(np.asarray(classifier(test)[0]))
  noise_score = sample_quality.classifier_score(np.asarray(classifier(noise)[0]))
  assert real_score > 2 * noise_score
  # The task's evaluation reports them from the summed statistics.
  state = task.init_state(jax.random.key(0), _batch(2), total_steps=1)
  sums = jax.device_get(
    jax.jit(task.eval_step)(
      state,
      {"image": test, "label": jnp.zeros(len(test), jnp.int32), "mask": jnp.ones(len(test), bool)},
    )
  )
  results = task.eval_metrics(sums)
  # The loop's check of a configured best/early-stopping metric finds the same names without evaluating.
  assert task.eval_metric_names(
    state, {"image": test[:1], "label": jnp.zeros(1, jnp.int32), "mask": jnp.ones(1, bool)}
  ) == sorted(results)
  assert results["frechet_distance"] > 0 and 1.0 <= results["classifier_score_fake"] <= 10.0
  np.testing.assert_allclose(results["classifier_score_real"], real_score, rtol=1e-3)


def test_bad_settings_and_shapes_are_clear_errors():
  with pytest.raises(ValueError, match="n_critic"):
    GANTask(_digits_config("wgan", n_critic=0), DIGITS)
  with pytest.raises(ValueError, match="gan.clip .* gan.gradient_penalty"):
    GANTask(_digits_config("wgan_gp", clip=0.01), DIGITS)
  config = gan_config("wgan_gp", "mnist", smoke=True)
  config.model.critic.norm = "batch"
  with pytest.raises(ValueError, match="BatchNorm"):
    GANTask(config, DIGITS)
  config = _digits_config("wgan", n_critic=5)
  config.train.batch_size = 12
  with pytest.raises(ValueError, match="multiple of gan.n_critic"):
    GANTask(config, DIGITS)
  task = GANTask(_digits_config("gan"), DIGITS)
  with pytest.raises(ValueError, match=r"expected images \[batch, 32, 32, 1\]"):
    task.init_state(jax.random.key(0), _batch(2, (28, 28, 1)), total_steps=1)
  # DCGAN networks on 8x8 images: the generator says which sizes it makes.
  small = DatasetSpec((8, 8, 1), DIGITS.class_names, DIGITS.splits)
  with pytest.raises(ValueError, match="28x28 or 32x32"):
    GANTask(gan_config("dcgan", "mnist", smoke=True), small).init_state(
      jax.random.key(0), _batch(2, (8, 8, 1)), total_steps=1
    )
