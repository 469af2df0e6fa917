"""Every registered model: the (logits, features) contract, gradients, BatchNorm, sizes.

Kept fast on two CPU cores, where XLA's compilation, not the computation, is the cost:
- Variables are filled from `jax.eval_shape(model.init)` with NumPy random numbers instead of
  running `model.init`: XLA compiles one random-number kernel per distinct parameter shape, and
  the contract does not depend on the initialiser. `test_real_init_in_bfloat16` runs a real
  initialisation, and the parameter count tests trace it for the ImageNet and CIFAR families.
- XLA's optimisations are disabled for this module (they cost more compile time than they save
  on runs this small).
- ResNets run op by op, so that each distinct operation is compiled once and ResNet-152 or the
  110-layer CIFAR networks cost little more than their shallowest sibling; the other families
  compile faster as one program.
- Gradients are checked on one model of each family and block type.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.models import get_model, list_models

BATCH = 2

# Feature maps each family must return (besides "pre_logits"), by module class; other
# classifiers must return at least one.
FEATURES = {
  "AlexNet": [f"conv{i}" for i in range(1, 6)],
  "VGG": [f"block{i}" for i in range(1, 6)],
  "InceptionV3": ["stem", "mixed5", "mixed6", "mixed7"],
  "GoogLeNet": [
    "inception3a",
    "inception3b",
    "inception4a",
    "inception4b",
    "inception4c",
    "inception4d",
    "inception4e",
    "inception5a",
    "inception5b",
  ],
  "ResNet": ["stage1", "stage2", "stage3", "stage4"],
  "CifarResNet": ["stage1", "stage2", "stage3"],
  "LeNet5": ["C1", "S2", "C3", "S4", "C5", "F6"],
  "MLP": ["fc1", "fc2"],
  "Darknet": [f"stage{i}" for i in range(1, 7)],
  "YOLOv1": [f"stage{i}" for i in range(1, 7)],  # Its default backbone's.
}

# Representative models for the (slower) gradient check: every family and block type.
GRADIENT_MODELS = (
  "alexnet",
  "googlenet",
  "lenet5",
  "mlp",
  "plain20",
  "resnet20",
  "resnet50",
  "vgg11_bn",
  "vgg16_bn_cifar",
)

# Families run op by op rather than jitted (see the module's docstring).
OP_BY_OP = ("ResNet", "CifarResNet")


pytestmark = pytest.mark.usefixtures("fast_compilation")


def _image_size(name: str) -> int:
  """The smallest square input each model accepts comfortably."""
  if name.startswith("inception"):
    return 75  # Inception-v3's smallest input.
  return 64 if name == "alexnet" else 32  # AlexNet needs 63; the rest work at CIFAR size.


def _images(name: str) -> np.ndarray:
  size = _image_size(name)
  return np.random.default_rng(0).normal(size=(BATCH, size, size, 3)).astype(np.float32)


def _random_variables(model: nn.Module, x: np.ndarray) -> dict:
  """Variables of the model's shapes: He-scaled uniform kernels, BatchNorm at identity."""
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)
  # Kernels tile one pool of random numbers: VGG's 100M-entry first layer costs a copy.
  pool = np.random.default_rng(0).uniform(-1, 1, size=2**20).astype(np.float32)

  def fill(path, leaf):
    name = getattr(path[-1], "key", "")
    if name in ("scale", "var", "coeff"):  # BatchNorm, LeNet's subsampling coefficients.
      return np.ones(leaf.shape, np.float32)
    if name in ("bias", "mean"):
      return np.zeros(leaf.shape, np.float32)
    kernel = np.resize(pool, leaf.shape)
    kernel *= np.sqrt(6 / np.prod(leaf.shape[:-1]), dtype=np.float32)
    return kernel

  # On the device once: each apply would otherwise copy VGG's 0.5 GB again.
  return jax.device_put(jax.tree_util.tree_map_with_path(fill, dict(shapes)))


def _apply(model: nn.Module, variables: dict, x: np.ndarray, train: bool):
  """model.apply with mutable batch_stats, jitted unless the family runs op by op."""

  def apply(variables, x):
    return model.apply(
      variables, x, train=train, mutable=["batch_stats"], rngs={"dropout": jax.random.key(1)}
    )

  return (apply if type(model).__name__ in OP_BY_OP else jax.jit(apply))(variables, x)


def _classifier(name: str) -> nn.Module:
  """The registered model with 7 classes; a skip if it is not an image classifier."""
  if getattr(get_model(name), "num_classes", 0) <= 0:
    pytest.skip(f"{name} has no classes (not an image classifier); its own tests cover it")
  return get_model(name, num_classes=7)


def _output_shape(model: nn.Module) -> tuple[int, ...]:
  """[batch, 7 classes]; a detector's grid of boxes and classes for YOLOv1 (models/yolo.py)."""
  if type(model).__name__ == "YOLOv1":
    s = model.grid_size
    return (BATCH, s, s, model.boxes_per_cell * 5 + 7)
  return (BATCH, 7)


def _all_finite(tree) -> bool:
  return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("name", list_models())
def test_forward_contract(name):
  """Shapes and names of logits and features, no NaNs, BatchNorm updates only in training."""
  model = _classifier(name)
  x = _images(name)
  variables = _random_variables(model, x)
  batch_stats = variables.get("batch_stats", {})

  (logits, features), state = _apply(model, variables, x, train=True)
  assert logits.shape == _output_shape(model)
  assert set(FEATURES.get(type(model).__name__, [])) <= set(features) and len(features) >= 2
  assert features["pre_logits"].ndim == 2 and features["pre_logits"].shape[0] == BATCH
  assert _all_finite((logits, features)), "non-finite output in training mode"
  if name.startswith("googlenet"):
    assert features["aux1"].shape == features["aux2"].shape == (BATCH, 7)
  new_stats = state.get("batch_stats", {})
  assert jax.tree.structure(new_stats) == jax.tree.structure(batch_stats)
  unchanged = [
    jax.tree_util.keystr(path)
    for (path, old), new in zip(
      jax.tree_util.tree_leaves_with_path(batch_stats), jax.tree.leaves(new_stats)
    )
    if np.array_equal(old, new)
  ]
  assert not unchanged, f"BatchNorm statistics not updated in training: {unchanged}"

  (logits, features), state = _apply(model, variables, x, train=False)
  assert logits.shape == _output_shape(model)
  assert _all_finite((logits, features)), "non-finite output in evaluation mode"
  assert "aux1" not in features and "aux2" not in features
  jax.tree.map(np.testing.assert_array_equal, dict(state.get("batch_stats", {})), batch_stats)


def _legitimately_without_gradient(name: str, path: str) -> bool:
  # In training mode BatchNorm subtracts the batch mean, so a bias right before it has no
  # effect: torchvision's VGG-BN convolutions keep theirs (for weight compatibility).
  return name.startswith("vgg") and name.endswith("_bn") and "_conv" in path and "bias" in path


@pytest.mark.parametrize("name", GRADIENT_MODELS)
def test_every_parameter_gets_a_gradient(name):
  model = get_model(name, num_classes=7)
  x = _images(name)
  variables = _random_variables(model, x)
  weights = np.random.default_rng(2).normal(size=(BATCH, 7)).astype(np.float32)

  def loss(params):
    (logits, features), _ = model.apply(
      {**variables, "params": params},
      x,
      train=True,
      mutable=["batch_stats"],
      rngs={"dropout": jax.random.key(1)},
    )
    # GoogLeNet's auxiliary heads must receive gradients too.
    outputs = [logits] + [features[k] for k in ("aux1", "aux2") if k in features]
    return sum(jnp.sum(o * weights) for o in outputs)

  grads = jax.jit(jax.grad(loss))(variables["params"])
  assert _all_finite(grads)
  without = [
    jax.tree_util.keystr(path)
    for path, g in jax.tree_util.tree_leaves_with_path(grads)
    if not np.any(np.asarray(g))
    and not _legitimately_without_gradient(name, jax.tree_util.keystr(path))
  ]
  assert not without, f"parameters without gradient: {without}"


def _param_count(name: str, **kwargs) -> int:
  model = get_model(name, **kwargs)
  x = jnp.zeros((1, 224, 224, 3))  # Parameter shapes do not depend on the input size.
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes["params"]))


# Published counts: torchvision's model documentation (ImageNet, 1000 classes).
@pytest.mark.parametrize(
  "name,kwargs,expected",
  [
    ("alexnet", {}, 61_100_840),
    ("vgg16", {}, 138_357_544),
    ("vgg16_bn", {}, 138_365_992),
    ("googlenet", {"aux_logits": False}, 6_624_904),
    # torchvision documents 27,161,264 with the auxiliary classifier (3,326,696), which we omit.
    ("inception_v3", {}, 23_834_568),
    ("resnet18", {}, 11_689_512),
    ("resnet34", {}, 21_797_672),
    ("resnet50", {}, 25_557_032),
    ("resnet101", {}, 44_549_160),
    ("resnet152", {}, 60_192_808),
  ],
)
def test_imagenet_parameter_counts(name, kwargs, expected):
  assert _param_count(name, **kwargs) == expected


# He et al. 2015, Table 6 (CIFAR-10): parameters in millions as printed, and our exact count.
# The plain networks have the same layers (option A shortcuts have no parameters).
@pytest.mark.parametrize(
  "depth,paper_millions,exact",
  [
    (20, "0.27", 269_722),
    (32, "0.46", 464_154),
    (44, "0.66", 658_586),
    (56, "0.85", 853_018),
    (110, "1.7", 1_727_962),
  ],
)
def test_cifar_resnet_parameter_counts(depth, paper_millions, exact):
  for name in (f"resnet{depth}", f"plain{depth}"):
    count = _param_count(name, num_classes=10)
    assert count == exact
    decimals = len(paper_millions.split(".")[1])
    assert f"{count / 1e6:.{decimals}f}" == paper_millions


# The CIFAR variants have no published counts of their own: theirs are torchvision's less the
# layers they replace, plus their own (so only the intended layers differ).
def test_vgg16_bn_cifar_parameter_count():
  imagenet_classifier = (512 * 7 * 7 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 1000 + 1000)
  cifar_classifier = (512 * 512 + 512) + 2 * 512 + (512 * 10 + 10)  # fc1, its BatchNorm, head
  assert _param_count("vgg16_bn_cifar") == 138_365_992 - imagenet_classifier + cifar_classifier
  assert _param_count("vgg16_bn_cifar") == 14_991_946


def test_googlenet_cifar_parameter_count():
  imagenet_stem = (7 * 7 * 3 * 64 + 2 * 64) + (64 * 64 + 2 * 64) + (3 * 3 * 64 * 192 + 2 * 192)
  cifar_stem = 3 * 3 * 3 * 192 + 2 * 192
  heads = (1024 * 1000 + 1000) - (1024 * 10 + 10)
  count = _param_count("googlenet_cifar", aux_logits=False)
  assert count == 6_624_904 - imagenet_stem + cifar_stem - heads == 5_490_986


def test_googlenet_aux_heads_are_optional():
  def aux_head(channels: int) -> int:  # 1x1 conv to 128 and its BatchNorm, fc1, fc2.
    return channels * 128 + 2 * 128 + 2048 * 1024 + 1024 + 1024 * 1000 + 1000

  assert _param_count("googlenet") == 6_624_904 + aux_head(512) + aux_head(528)


def test_real_init_in_bfloat16():
  """Real initialisation; bfloat16 computation keeps float32 parameters and statistics."""
  model = get_model("resnet20", dtype=jnp.bfloat16)
  x = _images("resnet20")
  variables = jax.jit(model.init)(jax.random.key(0), x)
  assert {x.dtype for x in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  (logits, features), state = _apply(model, variables, x, train=True)
  assert logits.dtype == jnp.bfloat16 and features["stage3"].dtype == jnp.bfloat16
  assert _all_finite((logits, state))
  assert {x.dtype for x in jax.tree.leaves(state)} == {jnp.dtype(jnp.float32)}


def test_cifar_resnet_dropout_before_the_head():
  model = get_model("resnet20", dropout=0.5)
  x = _images("resnet20")
  variables = _random_variables(model, x)

  def logits(train: bool, seed: int = 0) -> np.ndarray:
    (y, _), _ = model.apply(
      variables, x, train=train, mutable=["batch_stats"], rngs={"dropout": jax.random.key(seed)}
    )
    return np.asarray(y)

  assert not np.allclose(logits(True, 0), logits(True, 1))
  np.testing.assert_array_equal(logits(False, 0), logits(False, 1))


def test_every_model_names_its_settings_and_refuses_others():
  """A setting a model does not take is a ConfigError naming the ones it does (a config that
  switches model.name keeps the old model's keys)."""
  from vision_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top
  from vision_jax.models import registry  # pylint: disable=g-import-not-at-top

  for name in list_models():
    accepted = registry.settings(name)
    assert accepted, f"{name}: its constructor's keyword arguments cannot be read"
    with pytest.raises(
      ConfigError,
      match=rf"^model '{name}' has no setting 'no_such_setting' .* it takes: {accepted[0]}",
    ):
      get_model(name, no_such_setting=1)


def test_model_label_names_what_overridden_settings_build():
  """A config's name with the settings that change its registered network: transfer_pets' smoke
  ResNet-8 is not reported as a ResNet-20; settings a registration leaves free are not named."""
  import ml_collections  # pylint: disable=g-import-not-at-top

  from vision_jax.models.registry import model_label  # pylint: disable=g-import-not-at-top

  label = lambda **kw: model_label(ml_collections.ConfigDict(kw))
  assert label(name="resnet20", dtype="bfloat16", dropout=0.1) == "resnet20"
  assert label(name="resnet20", depth=20) == "resnet20"
  assert label(name="resnet20", depth=8) == "resnet20 (depth=8)"
  assert (
    label(name="plain20", depth=56, shortcut="zero_pad") == "plain20 (depth=56, shortcut=zero_pad)"
  )
  assert label(name="lenet5") == "lenet5"


@pytest.mark.parametrize("depth", [2, -4, 21])
def test_a_cifar_resnet_depth_that_is_not_6n_plus_2_blocks_is_refused(depth):
  from vision_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top

  model = get_model("resnet20", depth=depth)
  with pytest.raises(ConfigError, match=rf"^depth must be 6n \+ 2 with n >= 1 .* got {depth}\b"):
    jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
