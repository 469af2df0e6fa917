"""The loop: overfitting, resume after a crash or a kill, corrupt checkpoints, non-finite losses,
W&B offline, and the same result on 1 device, 8 devices and 2 processes."""

import asyncio
import contextlib
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from conftest import REPO, run_env

from vision_jax import losses
from vision_jax.config import apply_overrides, load_config
from vision_jax.errors import CheckpointError, ConfigError
from vision_jax.models import get_model
from vision_jax.tasks import ClassificationTask
from vision_jax.train import loop as loop_lib
from vision_jax.train.checkpoint import CheckpointStore, read_state
from vision_jax.train.loop import NonFiniteLossError, train_and_evaluate
from vision_jax.train.metric_writers import read_metrics
from vision_jax.train.optimizers import OPTIMIZERS, make_optimizer


def digits_config(*overrides, variant="smoke"):
  c = load_config("lenet5_digits", variant)
  return apply_overrides(c, list(overrides))


def final_params(workdir):
  """The parameters of a run's latest checkpoint, as numpy."""
  ckpt = os.path.join(workdir, "checkpoints")
  step = max(int(s) for s in os.listdir(ckpt) if s.isdigit())
  return step, read_state(os.path.join(ckpt, str(step), "state"))["params"]


def assert_trees_equal(a, b, **tol):
  flat_a, flat_b = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
  assert [p for p, _ in flat_a] == [p for p, _ in flat_b]
  for (path, x), (_, y) in zip(flat_a, flat_b):
    if tol:
      np.testing.assert_allclose(x, y, err_msg=jax.tree_util.keystr(path), **tol)
    else:
      np.testing.assert_array_equal(x, y, err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize("name", ["lenet5", "mlp"])
def test_model_overfits_one_batch(name):
  model = get_model(name, num_classes=10)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(16, 32, 32, 1)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 10, 16))
  params = model.init(jax.random.key(0), x)["params"]
  tx = optax.adam(3e-3)
  opt = tx.init(params)

  @jax.jit
  def step(params, opt):
    loss, g = jax.value_and_grad(
      lambda p: losses.softmax_cross_entropy(model.apply({"params": p}, x)[0], y).mean()
    )(params)
    updates, opt = tx.update(g, opt, params)
    return optax.apply_updates(params, updates), opt, loss

  for _ in range(150):
    params, opt, loss = step(params, opt)
  assert float(loss) < 0.05
  assert float(jnp.mean(jnp.argmax(model.apply({"params": params}, x)[0], -1) == y)) == 1.0


def test_losses():
  logits = jnp.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
  labels = jnp.array([0, 2])
  ce = losses.softmax_cross_entropy(logits, labels)
  np.testing.assert_allclose(losses.focal_loss(logits, labels, gamma=0.0), ce, rtol=1e-6)
  assert np.all(
    np.asarray(losses.focal_loss(logits, labels, gamma=2.0)) < np.asarray(ce)
  )  # down-weights easy examples
  p = jax.nn.softmax(logits)
  np.testing.assert_allclose(
    losses.softmax_mse(logits, labels), ((p - jax.nn.one_hot(labels, 3)) ** 2).sum(-1), rtol=1e-6
  )
  assert np.all(np.asarray(losses.softmax_cross_entropy(logits, labels, 0.1)) > np.asarray(ce))
  with pytest.raises(ValueError, match="unknown loss 'hinge'"):
    losses.classification_loss("hinge", logits, labels)


def test_every_optimizer_and_schedule_builds_and_steps():
  c = load_config("lenet5_digits")
  params = {"w": jnp.ones((3, 3)), "b": jnp.ones(3)}
  for name in OPTIMIZERS:
    for schedule in ("constant", "step", "cosine"):
      c.optim.name, c.optim.schedule, c.optim.boundaries, c.optim.weight_decay = (
        name,
        schedule,
        (5, 8),
        1e-4,
      )
      tx = make_optimizer(c.optim, 10)
      updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
      assert all(np.all(np.isfinite(u)) for u in jax.tree.leaves(updates))
  c.optim.name = "lion"
  with pytest.raises(ValueError, match="unknown optimizer 'lion'.*rmsprop"):
    make_optimizer(c.optim, 10)


def test_step_schedule_decays_at_boundaries():
  c = load_config("lenet5_digits")
  c.optim.schedule, c.optim.boundaries, c.optim.learning_rate = "step", (32000, 48000), 0.1
  from vision_jax.train.optimizers import make_schedule

  lr = make_schedule(c.optim, 64000)
  np.testing.assert_allclose(
    [lr(31999), lr(32000), lr(47999), lr(48000)], [0.1, 0.01, 0.01, 0.001], rtol=1e-6
  )


@pytest.mark.parametrize(
  "overrides, message",
  [
    (
      ["optim.schedule=step", "optim.boundaries=(100000,)"],
      r"optim.boundaries must be increasing integer steps, each in \(0, train.steps\) = "
      r"\(0, 20\), got \(100000,\)",
    ),
    (
      ["optim.schedule=step", "optim.boundaries=(15, 10)"],
      r"optim.boundaries must be increasing .* got \(15, 10\)",
    ),
    (
      ["optim.schedule=step", "optim.boundaries=(10, 10)"],
      r"optim.boundaries must be increasing .* got \(10, 10\)",
    ),
    (
      ["optim.schedule=step", "optim.boundaries=(0, 10)"],
      r"optim.boundaries must be increasing .* got \(0, 10\)",
    ),
    (
      ["optim.schedule=cosine", "optim.warmup_steps=30"],
      r"optim.warmup_steps must be at most train.steps \(20\), got 30: the run would end "
      r"inside its warm-up",
    ),
    (
      ["optim.schedule=step", "optim.warmup_steps=10", "optim.boundaries=(5, 15)"],
      r"optim.boundaries must be increasing integer steps, each in \[optim.warmup_steps, "
      r"train.steps\) = \[10, 20\), got \(5, 15\)",
    ),
  ],
)
def test_a_schedule_that_contradicts_train_steps_is_refused_before_data_are_read(
  tmp_path, overrides, message
):
  """A step schedule's drops after the run, or a warm-up longer than it, would be silently never
  reached: refused with what is expected, before a dataset is read or a workdir written."""
  config = digits_config(*overrides, "data.dataset=idx:/nonexistent/never/read")
  with pytest.raises(ConfigError, match=f"^impossible setting: {message}"):
    train_and_evaluate(config, str(tmp_path / "run"), ClassificationTask)
  assert not (tmp_path / "run").exists()
  setting = message.split(" must ")[0] + " must "  # the optimizer itself refuses it too
  with pytest.raises(ConfigError, match=f"^impossible setting: {setting}.*\\b20\\b"):
    make_optimizer(digits_config(*overrides).optim, 20)


def test_a_schedule_inside_the_run_is_accepted():
  """Drops from the warm-up's end to the last step, a run that is all warm-up, or none at all."""
  for overrides in (
    ["optim.schedule=step", "optim.warmup_steps=5", "optim.boundaries=(5, 19)"],
    ["optim.schedule=step", "optim.boundaries=(1,)"],
    ["optim.schedule=cosine", "optim.warmup_steps=20"],
    ["optim.schedule=step", "optim.boundaries=(100000,)", "train.steps=0"],  # evaluation only
  ):
    ClassificationTask.check_settings(digits_config(*overrides))


def test_each_gan_player_s_schedule_is_checked_against_its_own_updates(tmp_path):
  """The critic updates gan.n_critic times a step: its boundaries count critic updates."""
  from configs.gan_base import gan_config
  from vision_jax.tasks import GANTask

  config = gan_config("wgan_gp", "mnist", smoke=True)
  config.data.dataset = "idx:/nonexistent/never/read"
  steps, n = config.train.steps, config.gan.n_critic
  assert n > 1
  config.optim.critic.schedule = config.optim.generator.schedule = "step"
  config.optim.critic.boundaries = (steps * n - 1,)  # inside the critic's updates: accepted
  config.optim.generator.boundaries = (steps - 1,)
  GANTask.check_settings(config)
  config.optim.critic.boundaries = (steps * n,)
  config.optim.generator.boundaries = (steps,)
  config.optim.generator.warmup_steps = steps + 1
  with pytest.raises(ConfigError) as e:
    train_and_evaluate(config, str(tmp_path / "run"), GANTask)
  assert str(e.value).splitlines() == [
    "impossible settings:",
    "  optim.critic.boundaries must be increasing integer steps, each in "
    f"(0, train.steps x gan.n_critic) = (0, {steps * n}), got ({steps * n},)",
    f"  optim.generator.warmup_steps must be at most train.steps ({steps}), got {steps + 1}: "
    "the run would end inside its warm-up (equal, for a run that is all warm-up)",
    "  optim.generator.boundaries must be increasing integer steps, each in "
    f"[optim.generator.warmup_steps, train.steps) = [{steps + 1}, {steps}), got ({steps},)",
  ]
  assert not (tmp_path / "run").exists()


def test_scanned_and_per_step_calls_train_alike(tmp_path):
  """The accelerator path (log_every steps scanned in one call) and the CPU path (a call per step)."""
  overrides = ["train.steps=20", "train.checkpoint_every=20", "data.augment.crop_padding=2"]
  runs = {}
  for scan in ("true", "false"):
    train_and_evaluate(
      digits_config(*overrides, f"train.scan_steps={scan}"),
      str(tmp_path / scan),
      ClassificationTask,
    )
    runs[scan] = [r["train/loss"] for r in read_metrics(tmp_path / scan) if "train/loss" in r]
  assert len(runs["true"]) == 2  # logged at the same steps either way
  np.testing.assert_allclose(runs["true"], runs["false"], rtol=1e-4)
  assert_trees_equal(
    final_params(tmp_path / "true")[1], final_params(tmp_path / "false")[1], rtol=1e-4, atol=1e-6
  )
  with pytest.raises(ValueError, match="train.scan_steps must be 'auto', 'true' or 'false'"):
    loop_lib.scan_steps(digits_config("train.scan_steps=sometimes").train)


def test_the_last_evaluation_is_the_final_one(tmp_path, monkeypatch):
  """Evaluations run at eval_every and the last step only; a run resumed at its end evaluates once."""
  calls = []
  real = loop_lib.eval_batches
  monkeypatch.setattr(
    loop_lib, "eval_batches", lambda *a, **kw: (calls.append(1), real(*a, **kw))[1]
  )
  c = digits_config("train.steps=20", "train.eval_every=10", "train.checkpoint_every=10")
  splits = len(c.data.eval_splits)
  workdir = str(tmp_path / "run")
  summary = train_and_evaluate(c, workdir, ClassificationTask)
  assert len(calls) == 2 * splits  # steps 10 and 20, and no second pass for the final metrics
  last = [
    r for r in read_metrics(workdir) if r["step"] == 20 and any(k.startswith("final_") for k in r)
  ][0]
  assert summary["eval"] == {
    k[len("final_") :]: v for k, v in last.items() if k.startswith("final_")
  }
  evaluated_at_20 = {
    k: v
    for r in read_metrics(workdir)
    if r["step"] == 20
    for k, v in r.items()
    if k in summary["eval"]
  }
  assert evaluated_at_20 == summary["eval"]
  calls.clear()
  again = train_and_evaluate(c, workdir, ClassificationTask)  # nothing left to train: evaluate once
  assert len(calls) == splits and again["eval"] == summary["eval"]


def test_crash_and_resume_equals_uninterrupted(tmp_path, monkeypatch):
  overrides = [
    "train.steps=40",
    "train.checkpoint_every=10",
    "train.eval_every=20",
    "data.augment.crop_padding=2",
  ]
  train_and_evaluate(digits_config(*overrides), str(tmp_path / "straight"), ClassificationTask)

  real_save = CheckpointStore.save

  def crash_after_20(self, step, *a, **kw):
    real_save(self, step, *a, **kw)
    if step == 20:
      self.wait()
      raise KeyboardInterrupt("simulated crash")

  monkeypatch.setattr(CheckpointStore, "save", crash_after_20)
  with pytest.raises(KeyboardInterrupt):
    train_and_evaluate(digits_config(*overrides), str(tmp_path / "resumed"), ClassificationTask)
  monkeypatch.setattr(CheckpointStore, "save", real_save)
  summary = train_and_evaluate(
    digits_config(*overrides), str(tmp_path / "resumed"), ClassificationTask
  )
  assert summary["step"] == 40
  assert_trees_equal(final_params(tmp_path / "straight")[1], final_params(tmp_path / "resumed")[1])
  steps = [r["step"] for r in read_metrics(tmp_path / "resumed") if "train/loss" in r]
  assert steps == [10, 20, 30, 40]  # no duplicated records after the resume
  straight = [r["train/loss"] for r in read_metrics(tmp_path / "straight") if "train/loss" in r]
  resumed = [r["train/loss"] for r in read_metrics(tmp_path / "resumed") if "train/loss" in r]
  assert straight == resumed


class _DrawsTask(ClassificationTask):
  """Reports with each step's metrics what it drew from its rngs: "augmented", a checksum of its
  augmented images, and "dropout", the loss of a fixed batch under the dropout of its rng."""

  def train_step(self, state, batch, rng):
    images = batch["image"]
    weights = jnp.sin(jnp.arange(images[0].size, dtype=jnp.float32)).reshape(images.shape[1:])
    fixed = {"image": jnp.ones_like(images), "label": jnp.zeros_like(batch["label"])}
    dropout = self.losses(state.params, state, fixed, rng)[0]["classification"]
    new_state, metrics = super().train_step(state, batch, rng)
    return new_state, {**metrics, "augmented": jnp.sum(images * weights), "dropout": dropout}


def _one_batch_for_every_step(monkeypatch):
  """The loop's training steps all see one batch (the same image everywhere, an asymmetric ramp):
  whatever differs between two steps' draws comes from their rngs."""
  real = loop_lib.make_train_chunk

  def fixed(batch):
    image = batch["image"]
    h, w = image.shape[1:3]
    ramp = (jnp.arange(h * w).reshape(1, h, w, 1) * 7 % 17).astype(image.dtype)
    return {"image": jnp.broadcast_to(ramp, image.shape), "label": jnp.zeros_like(batch["label"])}

  monkeypatch.setattr(
    loop_lib,
    "make_train_chunk",
    lambda task, train_fn, *args: real(task, lambda b, rng: train_fn(fixed(b), rng), *args),
  )


def test_every_step_draws_its_own_augmentation_and_dropout_and_a_resumed_step_the_same(
  tmp_path, monkeypatch
):
  """Each step's rngs are fold_in(seed, step): two steps crop, flip, add noise and drop out
  differently, and a step after a resume draws exactly what it drew in the uninterrupted run."""
  _one_batch_for_every_step(monkeypatch)
  overrides = [
    "train.steps=4",
    "train.log_every=1",
    "train.checkpoint_every=2",
    "train.eval_every=4",
    "optim.learning_rate=0.0",  # the same parameters at every step: only the draws differ
    "data.augment.crop_padding=2",
    "data.augment.flip=True",
    "data.augment.noise_std=0.1",
  ]

  def config():
    c = digits_config(*overrides)
    c.model.dropout = 0.5  # LeNet-5's, before its output layer
    return c

  def draws(workdir):
    return {
      r["step"]: (r["train/augmented"], r["train/dropout"])
      for r in read_metrics(workdir)
      if "train/augmented" in r
    }

  train_and_evaluate(config(), str(tmp_path / "straight"), _DrawsTask)
  straight = draws(tmp_path / "straight")
  assert sorted(straight) == [1, 2, 3, 4]
  for i, name in enumerate(("augmented", "dropout")):
    values = [straight[step][i] for step in straight]
    assert len(set(values)) == len(values), f"steps drew the same {name}: {values}"

  real_save = CheckpointStore.save

  def crash_after_2(self, step, *a, **kw):
    real_save(self, step, *a, **kw)
    if step == 2:
      self.wait()
      raise KeyboardInterrupt("simulated crash")

  monkeypatch.setattr(CheckpointStore, "save", crash_after_2)
  with pytest.raises(KeyboardInterrupt):
    train_and_evaluate(config(), str(tmp_path / "resumed"), _DrawsTask)
  monkeypatch.setattr(CheckpointStore, "save", real_save)
  train_and_evaluate(config(), str(tmp_path / "resumed"), _DrawsTask)
  resumed = draws(tmp_path / "resumed")
  assert resumed == straight  # steps 3 and 4 after the resume, bit for bit


def _truncate_data_files(step_dir: str) -> None:
  for d, _, files in os.walk(step_dir):
    for f in files:
      if "ocdbt" in d or f.startswith("d") or f.endswith(".data"):
        with open(os.path.join(d, f), "r+b") as fh:
          fh.truncate(3)


def test_corrupt_latest_checkpoint_falls_back_with_a_warning(tmp_path, caplog, capfd):
  workdir = str(tmp_path / "run")
  train_and_evaluate(
    digits_config("train.steps=20", "train.checkpoint_every=10"), workdir, ClassificationTask
  )
  _truncate_data_files(os.path.join(workdir, "checkpoints", "20"))
  capfd.readouterr()
  with caplog.at_level("WARNING"), _unraisable_reports() as reports:
    summary = train_and_evaluate(
      digits_config("train.steps=20", "train.checkpoint_every=10"), workdir, ClassificationTask
    )
  assert "does not restore" in caplog.text
  assert os.path.isdir(os.path.join(workdir, "checkpoints", "corrupt-20"))
  assert summary["step"] == 20  # resumed from step 10 and trained again to 20
  # The failed reads (tensorstore's callbacks, orbax's abandoned coroutines: 30 tracebacks here before) do
  # not bury the warning, then or at a later garbage collection.
  _assert_no_abandoned_reads(reports, caplog.text, capfd.readouterr().err)


def test_a_failed_restore_leaves_no_read_behind_however_late_the_reads_end(
  tmp_path, monkeypatch, caplog, capfd
):
  """Orbax closes its event loop at the first failed read; the others end later, on tensorstore's
  threads. Delayed here as on a loaded machine or with cold caches (where the test above failed
  once in ten), they still end inside the restore, not as reports at some later collection."""
  workdir = str(tmp_path / "run")
  train_and_evaluate(
    digits_config("train.steps=20", "train.checkpoint_every=10"), workdir, ClassificationTask
  )
  _truncate_data_files(os.path.join(workdir, "checkpoints", "20"))
  metadata = ocp.StandardCheckpointer().metadata(
    os.path.join(workdir, "checkpoints", "10", "state")
  )
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  abstract_state = jax.tree.map(
    lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
    getattr(metadata, "item_metadata", metadata),
  )
  call_soon_threadsafe = asyncio.BaseEventLoop.call_soon_threadsafe

  def late(loop, *args, **kwargs):  # a read's end, handed to the event loop by another thread
    if threading.current_thread() is not threading.main_thread():
      time.sleep(0.3)
    return call_soon_threadsafe(loop, *args, **kwargs)

  capfd.readouterr()
  store = CheckpointStore(workdir)
  with caplog.at_level("WARNING"), _unraisable_reports() as reports:
    monkeypatch.setattr(asyncio.BaseEventLoop, "call_soon_threadsafe", late)
    restored = store.restore_latest(abstract_state)
    monkeypatch.undo()
    time.sleep(1.0)  # every read has ended by now, however it was left
  store.close()
  assert restored is not None and int(restored[0]["step"]) == 10
  _assert_no_abandoned_reads(reports, caplog.text, capfd.readouterr().err)


def _assert_no_abandoned_reads(reports, log, stderr):
  assert "Event loop is closed" not in stderr + log
  assert "never retrieved" not in stderr + log  # asyncio's "Task exception was never retrieved"
  assert not reports, reports


@contextlib.contextmanager
def _unraisable_reports():
  """The unraisable exceptions and "never awaited" warnings reported while the block runs and at a
  garbage collection after it."""
  reports, previous = [], sys.unraisablehook
  sys.unraisablehook = lambda u: reports.append(
    f"{u.object!r}: {u.exc_type.__name__}: {u.exc_value}"[:200]
  )
  try:
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter("always", RuntimeWarning)
      yield reports
      gc.collect()
    reports += [str(w.message) for w in caught if "never awaited" in str(w.message)]
  finally:
    sys.unraisablehook = previous


def test_a_run_whose_every_checkpoint_is_corrupt_refuses_to_start_afresh_every_time(
  tmp_path, capfd
):
  workdir = str(tmp_path / "run")
  config = lambda: digits_config("train.steps=20", "train.checkpoint_every=10")
  train_and_evaluate(config(), workdir, ClassificationTask)
  for step in ("10", "20"):
    _truncate_data_files(os.path.join(workdir, "checkpoints", step))
  for _ in range(
    2
  ):  # nothing is moved aside, so a second attempt does not start from scratch either
    with (
      _unraisable_reports() as reports,
      pytest.raises(
        CheckpointError,
        match=r"no checkpoint in .*checkpoints restores; refusing to start from scratch",
      ),
    ):
      train_and_evaluate(config(), workdir, ClassificationTask)
    assert not reports, reports
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["10", "20"]
  assert "Event loop is closed" not in capfd.readouterr().err


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
  workdir = str(tmp_path / "run")
  # A learning rate that turns absurd (2e27) after step 15: the parameters, then the loss, become NaN.
  c = digits_config(
    "train.steps=40",
    "train.checkpoint_every=10",
    "optim.name=sgd",
    "optim.schedule=step",
    "optim.boundaries=(15,)",
    "optim.decay_factor=1e30",
  )
  with pytest.raises(
    NonFiniteLossError,
    match=r"non-finite .*loss.* at step (1[6-9]|20).*last good checkpoint is step 10",
  ):
    train_and_evaluate(c, workdir, ClassificationTask)
  ckpts = sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())
  assert ckpts == [10]
  restored = ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", "10", "state"))
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(restored["params"]))


def test_early_stopping_stops_and_survives_resume(tmp_path):
  workdir = str(tmp_path / "run")
  overrides = [
    "train.steps=60",
    "train.eval_every=10",
    "train.checkpoint_every=10",
    "optim.learning_rate=0.0",
    "train.early_stopping.metric=test/error",
    "train.early_stopping.patience=2",
  ]
  summary = train_and_evaluate(digits_config(*overrides), workdir, ClassificationTask)
  assert summary["early_stopped"] and summary["step"] == 30  # no improvement at 20 and 30
  again = train_and_evaluate(digits_config(*overrides), workdir, ClassificationTask)
  assert again["early_stopped"] and again["step"] == 30  # the resumed run stays stopped


def test_early_stopping_ends_on_the_best_evaluations_parameters(tmp_path):
  # "Best" by the *highest* test error, so the best evaluation is an early one while training
  # goes on improving: the run must hand back that evaluation's metrics and parameters.
  workdir = str(tmp_path / "run")
  overrides = [
    "train.steps=60",
    "train.eval_every=10",
    "train.checkpoint_every=10",
    "train.early_stopping.metric=test/error",
    "train.early_stopping.mode=max",
    "train.early_stopping.patience=2",
  ]
  summary = train_and_evaluate(digits_config(*overrides), workdir, ClassificationTask)
  best = summary["best_step"]
  assert summary["early_stopped"] and best is not None and best < summary["step"]
  logged = {r["step"]: r for r in read_metrics(workdir) if "test/error" in r}
  assert (
    summary["eval"]["test/error"]
    == logged[best]["test/error"]
    != logged[summary["step"]]["test/error"]
  )
  best_dir = os.path.join(workdir, "checkpoints_best", str(best), "state")
  assert_trees_equal(jax.device_get(summary["state"].params), read_state(best_dir)["params"])
  last_step, last_params = final_params(workdir)
  assert last_step == summary["step"]  # the last checkpoint is kept: a resume continues from it
  with pytest.raises(AssertionError):
    assert_trees_equal(jax.device_get(summary["state"].params), last_params)
  # Without restore_best the run ends where it stopped.
  plain = train_and_evaluate(
    digits_config(*overrides, "train.early_stopping.restore_best=False"),
    str(tmp_path / "plain"),
    ClassificationTask,
  )
  assert plain["eval"]["test/error"] == logged[summary["step"]]["test/error"]


def test_wandb_offline_run_is_written_without_network(tmp_path, monkeypatch):
  monkeypatch.delenv("WANDB_API_KEY", raising=False)
  monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: not logged in
  monkeypatch.setenv(
    "WANDB_BASE_URL", "http://127.0.0.1:9"
  )  # nothing listens: any network use would fail
  workdir = str(tmp_path / "run")
  train_and_evaluate(
    digits_config("train.steps=10", "wandb.mode=auto"), workdir, ClassificationTask
  )
  runs = [d for d in os.listdir(os.path.join(workdir, "wandb")) if d.startswith("offline-run-")]
  assert len(runs) == 1
  assert any(f.endswith(".wandb") for f in os.listdir(os.path.join(workdir, "wandb", runs[0])))


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _run_digits(workdir, devices, *extra, processes=1):
  args = [
    sys.executable,
    "-m",
    "experiments.lenet5_digits",
    "--workdir",
    str(workdir),
    "--variant",
    "smoke",
    "--config.optim.name=momentum",
    "--config.optim.learning_rate=0.05",
    "--config.train.steps=10",
    "--config.train.batch_size=64",
    *extra,
  ]
  env = run_env(
    XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
    VISION_JAX_CACHE=os.environ.get("VISION_JAX_CACHE", ""),
  )
  if processes == 1:
    subprocess.run(args, cwd=REPO, env=env, check=True, capture_output=True, timeout=900)
    return
  port = _free_port()
  procs = [
    subprocess.Popen(
      args
      + [
        "--coordinator_address",
        f"127.0.0.1:{port}",
        "--num_processes",
        str(processes),
        "--process_id",
        str(i),
      ],
      cwd=REPO,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
    )
    for i in range(processes)
  ]
  outs = [p.communicate(timeout=900)[0].decode() for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-3000:]


def test_one_device_eight_devices_and_two_processes_agree(tmp_path):
  _run_digits(tmp_path / "d1", 1)
  _run_digits(tmp_path / "d8", 8)
  _run_digits(tmp_path / "p2", 2, processes=2)
  runs = {k: tmp_path / k for k in ("d1", "d8", "p2")}
  base_losses = [r["train/loss"] for r in read_metrics(runs["d1"]) if "train/loss" in r]
  _, base = final_params(runs["d1"])
  for name in ("d8", "p2"):
    other = [r["train/loss"] for r in read_metrics(runs[name]) if "train/loss" in r]
    np.testing.assert_allclose(other, base_losses, rtol=1e-5)
    assert_trees_equal(final_params(runs[name])[1], base, rtol=1e-4, atol=1e-6)
  result = json.load(open(runs["p2"] / "result.json"))
  assert result["steps"] == 10


def test_killed_run_resumes_to_the_uninterrupted_parameters(tmp_path):
  extra = [
    "--config.train.steps=60",
    "--config.train.checkpoint_every=10",
    "--config.train.log_every=10",
  ]
  _run_digits(tmp_path / "straight", 1, *extra)
  args = [
    sys.executable,
    "-m",
    "experiments.lenet5_digits",
    "--workdir",
    str(tmp_path / "killed"),
    "--variant",
    "smoke",
    "--config.optim.name=momentum",
    "--config.optim.learning_rate=0.05",
    "--config.train.steps=10",
    "--config.train.batch_size=64",
    *extra,
  ]
  env = run_env(VISION_JAX_CACHE=os.environ.get("VISION_JAX_CACHE", ""))
  proc = subprocess.Popen(
    args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
  )
  ckpt = tmp_path / "killed" / "checkpoints"
  deadline = time.time() + 600
  while time.time() < deadline and proc.poll() is None:
    done = [int(s) for s in os.listdir(ckpt) if s.isdigit()] if ckpt.exists() else []
    if any(s >= 20 for s in done):
      break
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  done = sorted(int(s) for s in os.listdir(ckpt) if s.isdigit())
  assert done and done[-1] < 60, f"the run was not killed mid-way: {done}"
  subprocess.run(args, cwd=REPO, env=env, check=True, capture_output=True, timeout=900)
  assert_trees_equal(final_params(tmp_path / "straight")[1], final_params(tmp_path / "killed")[1])
