"""Transfer learning: frozen parameters and per-group learning rates (optax masks), frozen
BatchNorm statistics for a linear probe, and init_from (saved variables or a run's checkpoint)."""

import logging

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from vision_jax.config import load_config
from vision_jax.data.formats.base import DatasetSpec
from vision_jax.errors import CheckpointError
from vision_jax.tasks import ClassificationTask
from vision_jax.train import mesh as mesh_lib
from vision_jax.train.checkpoint import CheckpointStore, save_variables
from vision_jax.train.loop import _init_from
from vision_jax.train.optimizers import make_optimizer, parameter_groups, parameter_path
from vision_jax.train.state import TrainState

SIZE = 8  # tiny images: these tests are about parameters, not accuracy


def _optim(**kw):
  c = ml_collections.ConfigDict(
    {
      "name": "momentum",
      "learning_rate": 0.1,
      "momentum": 0.9,
      "weight_decay": 0.0,
      "schedule": "constant",
      "head": "head/",
      "backbone_lr_scale": 1.0,
      "frozen": (),
    }
  )
  c.update(kw)
  return c


def _task(num_classes=3, model="resnet20", **settings):
  """A ResNet classification task; settings: {"section__key": value}, keys beyond resnet_cifar10's too."""
  config = load_config("resnet_cifar10", f"smoke,model={model}")
  for key, value in settings.items():
    section, leaf = key.split("__")
    config[section][leaf] = value
  spec = DatasetSpec((SIZE, SIZE, 3), tuple(f"c{i}" for i in range(num_classes)), ("train", "test"))
  return ClassificationTask(config, spec)


def _batch(n=8, num_classes=3, seed=0):
  rng = np.random.default_rng(seed)
  return {
    "image": jnp.asarray(rng.normal(size=(n, SIZE, SIZE, 3)), jnp.float32),
    "label": jnp.asarray(rng.integers(0, num_classes, n)),
  }


def _leaves(tree):
  return {
    parameter_path(p): v if isinstance(v, str) else np.asarray(v)
    for p, v in jax.tree_util.tree_leaves_with_path(tree)
  }


@pytest.fixture(scope="module")
def resnet_params():
  task = _task()
  return task.model.init(jax.random.key(0), _batch()["image"])["params"]


@pytest.mark.parametrize(
  "name, extra",
  [
    ("momentum", {}),
    ("adam", {"grad_clip_norm": 0.5}),
    ("adamw", {}),
    ("sgd", {"decay_kernels_only": True}),
  ],
)
def test_frozen_parameters_stay_bit_identical_under_weight_decay(resnet_params, name, extra):
  optim = _optim(
    name=name,
    weight_decay=0.1,
    backbone_lr_scale=0.5,
    frozen=("conv_init", "stage1_block"),
    **extra,
  )
  tx = make_optimizer(optim, 10)
  state = TrainState.create(resnet_params, tx)
  rng = np.random.default_rng(0)
  for _ in range(3):
    grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), resnet_params)
    state = jax.jit(lambda s, g: s.apply_gradients(tx, g))(state, grads)
  before, after = _leaves(resnet_params), _leaves(state.params)
  labels = _leaves(parameter_groups(optim, resnet_params))
  assert {labels[p] for p in labels} == {"frozen", "backbone", "head"}
  for path, label in labels.items():
    if label == "frozen":
      assert path.startswith(("conv_init", "stage1_block")), path
      np.testing.assert_array_equal(after[path], before[path], err_msg=path)  # bit-identical
    else:
      assert not np.array_equal(after[path], before[path]), path
  # Frozen parameters keep no optimizer state: only trained arrays (and step counts) are in it.
  trained = sum(v.size for p, v in before.items() if labels[p] != "frozen")
  state_size = sum(np.size(x) for x in jax.tree.leaves(state.opt_state))
  moments = {"momentum": 1, "adam": 2, "adamw": 2, "sgd": 0}[name]
  assert moments * trained <= state_size < moments * trained + 16


def test_backbone_learning_rate_is_scaled_and_zero_freezes(resnet_params):
  grads = jax.tree.map(jnp.ones_like, resnet_params)

  def updates(**kw):
    tx = make_optimizer(_optim(name="sgd", **kw), 10)
    return _leaves(tx.update(grads, tx.init(resnet_params), resnet_params)[0])

  full, scaled, probe = updates(), updates(backbone_lr_scale=0.1), updates(backbone_lr_scale=0.0)
  for path in full:
    if path.startswith("head/"):
      np.testing.assert_array_equal(scaled[path], full[path])
      np.testing.assert_array_equal(probe[path], full[path])
    else:
      np.testing.assert_allclose(scaled[path], 0.1 * full[path], rtol=1e-6)
      assert not probe[path].any(), path


def test_one_rate_for_all_keeps_the_plain_optimizer(resnet_params):
  # No groups asked for: the same optimizer state as before groups existed (checkpoints resume).
  plain = make_optimizer(_optim(weight_decay=1e-4, grad_clip_norm=1.0), 10).init(resnet_params)
  assert [type(s).__name__ for s in plain][:2] == [
    "EmptyState",
    "EmptyState",
  ]  # clip, decay, then momentum
  assert "PartitionState" not in repr(jax.tree.structure(plain))


def test_group_patterns_that_match_nothing_are_errors(resnet_params):
  with pytest.raises(
    ValueError,
    match=r"optim.frozen: 'stem' matches no parameter; the model's modules: bn_init, conv_init, head",
  ):
    make_optimizer(_optim(frozen=("stem",)), 10).init(resnet_params)
  with pytest.raises(ValueError, match=r"optim.head: 'classifier/' matches no parameter"):
    make_optimizer(_optim(head="classifier/", backbone_lr_scale=0.1), 10).init(resnet_params)


@pytest.mark.parametrize("frozen", [True, False])
def test_linear_probe_keeps_batch_norm_statistics(frozen):
  task = _task(3, train__frozen_batch_stats=frozen, optim__backbone_lr_scale=0.0)
  batch = _batch()
  state = task.init_state(jax.random.key(0), batch, 10)
  step = jax.jit(task.train_step)
  new = state
  for i in range(2):
    new, _ = step(new, _batch(seed=i + 1), jax.random.key(i))
  stats_before, stats_after = (
    _leaves(state.model_state["batch_stats"]),
    _leaves(new.model_state["batch_stats"]),
  )
  if frozen:
    for path in stats_before:
      np.testing.assert_array_equal(stats_after[path], stats_before[path], err_msg=path)
    # Inference mode in training: the training forward pass is the test-time one.
    logits_train = task.model.apply(
      {"params": state.params, **state.model_state}, batch["image"], train=False
    )[0]
    _, (logits_step, _) = task.losses(state.params, state, batch, jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(logits_step), np.asarray(logits_train))
  else:
    assert any(not np.array_equal(stats_after[p], stats_before[p]) for p in stats_before)
  for path, value in _leaves(
    new.params
  ).items():  # the backbone is frozen either way; the head trains
    assert np.array_equal(value, _leaves(state.params)[path]) != path.startswith("head/"), path


def _run_checkpoint(workdir, task, step=7):
  """What a training run leaves in its workdir: checkpoints/<step> with the train state."""
  state = task.init_state(jax.random.key(1), _batch(num_classes=task.spec.num_classes), 10)
  state = state.replace(
    model_state=jax.tree.map(lambda x: x + 0.5, state.model_state)
  )  # distinguishable stats
  store = CheckpointStore(str(workdir))
  store.save(step, state, {"early_stopping": {}})
  store.wait()
  store.close()
  return state


def test_init_from_a_run_reinitialises_the_head_for_new_classes(tmp_path, caplog):
  pretrained = _run_checkpoint(tmp_path / "cifar", _task(10))
  task = _task(3, optim__backbone_lr_scale=0.1)
  fresh = task.init_state(jax.random.key(2), _batch(), 10)
  mesh = mesh_lib.make_mesh()
  with caplog.at_level(logging.WARNING):
    state = _init_from(task, fresh, str(tmp_path / "cifar"), mesh_lib.replicated(mesh))
  assert "re-initialising the head for a different number of classes" in caplog.text
  assert (
    "params/head/kernel (64, 10) -> (64, 3)" in caplog.text
    and "params/head/bias (10,) -> (3,)" in caplog.text
  )
  loaded, new, old = _leaves(pretrained.params), _leaves(state.params), _leaves(fresh.params)
  for path in new:
    np.testing.assert_array_equal(
      new[path], old[path] if path.startswith("head/") else loaded[path], err_msg=path
    )
  stats = _leaves(state.model_state["batch_stats"])
  for path, value in _leaves(pretrained.model_state["batch_stats"]).items():
    np.testing.assert_array_equal(stats[path], value, err_msg=path)
  # The optimizer state is built for the merged parameters: fresh momentum, of their shapes.
  expected = task.tx.init(state.params)
  assert jax.tree.structure(state.opt_state) == jax.tree.structure(expected)
  for got, want in zip(jax.tree.leaves(state.opt_state), jax.tree.leaves(expected)):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
  # The same from one step directory of the run.
  again = _init_from(
    task, fresh, str(tmp_path / "cifar" / "checkpoints" / "7"), mesh_lib.replicated(mesh)
  )
  np.testing.assert_array_equal(
    np.asarray(again.params["conv_init"]["kernel"]), loaded["conv_init/kernel"]
  )


def test_init_from_other_mismatches_are_one_error_listing_them(tmp_path):
  source = _task(10)
  state = source.init_state(jax.random.key(1), _batch(num_classes=10), 10)
  variables = {"params": jax.device_get(state.params), **jax.device_get(state.model_state)}
  variables["params"]["head"]["kernel"] = np.zeros((65, 10), np.float32)  # not a class count change
  del variables["batch_stats"]["bn_init"]
  save_variables(str(tmp_path / "vars"), variables)
  task = _task(3)
  fresh = task.init_state(jax.random.key(2), _batch(), 10)
  with pytest.raises(CheckpointError) as e:
    _init_from(task, fresh, str(tmp_path / "vars"), mesh_lib.replicated(mesh_lib.make_mesh()))
  message = str(e.value)
  assert "params/head/kernel: checkpoint (65, 10) vs model (64, 3)" in message
  assert "batch_stats/bn_init: missing in the checkpoint" in message
  # A deeper network's checkpoint: every extra block is listed, not silently dropped.
  deeper = _task(3, "resnet32")
  _run_checkpoint(tmp_path / "resnet32", deeper)
  with pytest.raises(
    CheckpointError,
    match=r"(?s)params/stage1_block4: in the checkpoint, not in the model.*"
    r"params/stage3_block5: in the checkpoint, not in the model",
  ):
    _init_from(task, fresh, str(tmp_path / "resnet32"), mesh_lib.replicated(mesh_lib.make_mesh()))


def test_init_from_prefix_puts_a_classifier_under_a_detector_s_backbone(tmp_path, caplog):
  """A CIFAR ResNet classifier's saved variables load exactly under YOLOv1's backbone (its
  classifier head included, unused); the detector's own layers keep their fresh values."""
  from test_detection_task import SPEC, detection_config  # pylint: disable=g-import-not-at-top

  from vision_jax.tasks import DetectionTask  # pylint: disable=g-import-not-at-top

  classifier = _task(10)
  state = classifier.init_state(jax.random.key(1), _batch(num_classes=10), 10)
  state = state.replace(model_state=jax.tree.map(lambda x: x + 0.5, state.model_state))
  saved = {"params": jax.device_get(state.params), **jax.device_get(state.model_state)}
  save_variables(str(tmp_path / "resnet20"), saved)
  detector = DetectionTask(detection_config(), SPEC)
  images = jnp.zeros((2, 32, 32, 3), jnp.float32)
  fresh = detector.init_state(jax.random.key(2), {"image": images}, 10)
  sharding = mesh_lib.replicated(mesh_lib.make_mesh())
  with caplog.at_level(logging.WARNING):
    loaded = _init_from(detector, fresh, str(tmp_path / "resnet20"), sharding, prefix="backbone")
  assert "re-initialising" not in caplog.text
  assert set(loaded.params) == {"backbone", "hidden", "predictions"}
  for name, tree in (("params", loaded.params), ("batch_stats", loaded.model_state["batch_stats"])):
    got, want = _leaves(tree["backbone"]), _leaves(saved[name])
    assert got.keys() == want.keys()
    for path in want:
      np.testing.assert_array_equal(got[path], want[path], err_msg=f"{name}/{path}")
  for name in ("hidden", "predictions"):
    jax.tree.map(np.testing.assert_array_equal, loaded.params[name], fresh.params[name])
  # Without the prefix, nothing matches; with a wrong shape, one error naming the path.
  with pytest.raises(
    CheckpointError, match="params/conv_init: in the checkpoint, not in the model"
  ):
    _init_from(detector, fresh, str(tmp_path / "resnet20"), sharding)
  saved["params"]["conv_init"]["kernel"] = np.zeros((3, 3, 3, 8), np.float32)
  save_variables(str(tmp_path / "narrow"), saved)
  with pytest.raises(CheckpointError) as e:
    _init_from(detector, fresh, str(tmp_path / "narrow"), sharding, prefix="backbone")
  assert str(e.value).count("\n  ") == 1 and (
    "params/backbone/conv_init/kernel: checkpoint (3, 3, 3, 8) vs model (3, 3, 3, 16)"
    in str(e.value)
  )
