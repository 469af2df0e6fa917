"""Our AlexNet, VGG, GoogLeNet, Inception-v3 (and FID's) and ResNet against torchvision's, with
converted weights.

torchvision's models are built with random weights (nothing is downloaded); BatchNorm running
statistics are set from a calibration batch and the affine parameters randomised, so that
BatchNorm is exercised with statistics that are neither 0 nor 1. Random networks' logits range
from 1e-2 (AlexNet) to 1e3 (ResNet-50), and float32 rounding grows with them: at a standard
deviation of 10, torch's and our logits each differ from torch's float64 ones by up to 1e-4.
So the classifier is rescaled to give logits with a standard deviation of 3, like a trained
network's, and the 1e-4 tolerance means about 3e-5 relative for every architecture (a wrong
layer gives differences of order 1). Input sizes are small and odd where possible, so
that torch's padding, ceil-mode pooling and adaptive pooling are exercised at sizes where they
differ from the obvious. Our models run jitted with XLA's optimisations disabled, which
compiles fastest on CPU (see tests/test_models.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is needed for parity with torchvision")
torchvision = pytest.importorskip("torchvision", reason="torchvision is needed for parity")
F = torch.nn.functional

# pylint: disable=g-import-not-at-top,wrong-import-position
from scripts import import_torchvision
from vision_jax.models import get_model
from vision_jax.models.pooling import adaptive_avg_pool, max_pool
from vision_jax.models.torchvision_import import (
  ARCHS,
  SKIPPED,
  convert_torchvision_state_dict,
  torchvision_model,
)
from vision_jax.train.checkpoint import load_variables

TOLERANCE = 1e-4  # Max abs difference of logits in float32.

# Architecture: input (height, width), the smallest odd-ish sizes that stay meaningful.
SIZES = {
  "alexnet": (99, 83),  # Last feature map 2x1, adaptively pooled (overlapping) to 6x6.
  "vgg11": (80, 72),  # Last feature map 2x2, adaptively pooled to 7x7.
  "vgg11_bn": (80, 72),
  "googlenet": (57, 49),  # Odd sizes throughout: ceil-mode pools differ from floor mode.
  # 9x4 then 1x1 maps in Mixed_6 and Mixed_7: padding is most of every 3x3 pool there, where
  # FID's average pools (padding left out) differ most from torchvision's.
  "inception_v3": (79, 91),
  "inception_v3_fid": (79, 91),
  "resnet18": (45, 39),  # Odd sizes: torch's symmetric padding differs from "SAME".
  "resnet50": (45, 39),
}
# Every other importable architecture: the same sizes as its family's first member.
SIZES.update({f"vgg{depth}{bn}": SIZES["vgg11"] for depth in (13, 16, 19) for bn in ("", "_bn")})
SIZES.update(
  {"resnet34": SIZES["resnet18"], "resnet101": SIZES["resnet50"], "resnet152": SIZES["resnet50"]}
)


LOGITS_STD = 3.0


pytestmark = pytest.mark.usefixtures("fast_compilation")


def _torch_fid_inception(**kwargs) -> torch.nn.Module:
  """pytorch-fid's FIDInceptionV3: torchvision's Inception3 with 1008 classes and its pooling
  changed as the TensorFlow FID graph has it (see vision_jax/models/inception.py)."""
  tv = torchvision.models.inception
  avg = lambda x: F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)

  class FIDInceptionA(tv.InceptionA):
    def _forward(self, x):
      return [
        self.branch1x1(x),
        self.branch5x5_2(self.branch5x5_1(x)),
        self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
        self.branch_pool(avg(x)),
      ]

  class FIDInceptionC(tv.InceptionC):
    def _forward(self, x):
      b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
      bd = x
      for layer in (
        self.branch7x7dbl_1,
        self.branch7x7dbl_2,
        self.branch7x7dbl_3,
        self.branch7x7dbl_4,
        self.branch7x7dbl_5,
      ):
        bd = layer(bd)
      return [self.branch1x1(x), b7, bd, self.branch_pool(avg(x))]

  class FIDInceptionE(tv.InceptionE):
    def __init__(self, in_channels, pool):
      super().__init__(in_channels)
      self.pool = pool

    def _forward(self, x):
      b3 = self.branch3x3_1(x)
      b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
      bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
      bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
      return [self.branch1x1(x), b3, bd, self.branch_pool(self.pool(x))]

  kwargs.setdefault("init_weights", True)
  model = torchvision.models.inception_v3(weights=None, num_classes=1008, **kwargs)
  model.Mixed_5b = FIDInceptionA(192, pool_features=32)
  model.Mixed_5c = FIDInceptionA(256, pool_features=64)
  model.Mixed_5d = FIDInceptionA(288, pool_features=64)
  for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
    setattr(model, name, FIDInceptionC(768, channels_7x7=c7))
  model.Mixed_7b = FIDInceptionE(1280, avg)
  model.Mixed_7c = FIDInceptionE(2048, lambda x: F.max_pool2d(x, 3, stride=1, padding=1))
  return model


def _torchvision(arch: str, **kwargs) -> torch.nn.Module:
  """torchvision's (or pytorch-fid's) arch with random weights."""
  if arch in ("googlenet", "inception_v3"):
    kwargs.setdefault("init_weights", True)  # Silences torchvision's FutureWarning.
  if arch == "inception_v3_fid":
    return _torch_fid_inception(**kwargs)
  return getattr(torchvision.models, arch)(weights=None, **kwargs)


def _torch_model(arch: str, **kwargs) -> torch.nn.Module:
  """torchvision's arch with random weights and calibrated, randomised BatchNorm, in eval mode,
  its classifier scaled to give logits of standard deviation LOGITS_STD on `_images(arch)`."""
  torch.manual_seed(0)
  if arch.startswith("inception"):
    kwargs.setdefault("aux_logits", False)
  model = _torchvision(arch, **kwargs)
  bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
  if bns:
    # One training-mode pass with momentum 1 makes the running statistics those of a batch.
    for bn in bns:
      bn.momentum = 1.0
    model.train()
    with torch.no_grad():
      model(torch.randn(4, 3, *SIZES[arch]) + 0.5)
      for bn in bns:
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_(0.0, 0.2)
  model.eval()
  head = model.fc if hasattr(model, "fc") else model.classifier[-1]
  with torch.no_grad():
    scale = LOGITS_STD / model(_images(arch)[0]).std()
    head.weight *= scale
    head.bias *= scale
  return model


def _state_dict(model: torch.nn.Module) -> dict[str, np.ndarray]:
  return {k: v.detach().numpy() for k, v in model.state_dict().items()}


def _images(arch: str, batch: int = 2) -> tuple[torch.Tensor, np.ndarray]:
  """The same images as NCHW torch and NHWC numpy."""
  x = np.random.default_rng(1).normal(size=(batch, *SIZES[arch], 3)).astype(np.float32)
  return torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), x


@pytest.mark.parametrize("arch", ARCHS)
def test_every_arch_converts_key_for_key(arch):
  """Names and shapes of every importable architecture (values: those above)."""
  kwargs = (
    {"init_weights": False} if arch in ("googlenet", "inception_v3", "inception_v3_fid") else {}
  )
  with torch.device("meta"):  # Shapes only: nothing is allocated or initialised.
    state_dict = _torchvision(arch, **kwargs).state_dict()
  state_dict = {k: np.broadcast_to(np.float32(0), v.shape) for k, v in state_dict.items()}
  variables = convert_torchvision_state_dict(arch, state_dict)
  count = sum(np.size(v) for v in jax.tree.leaves(variables["params"]))
  # Inception-v3's auxiliary classifier (in the state_dict: aux_logits is on by default) is skipped.
  assert count == sum(
    np.size(v)
    for k, v in state_dict.items()
    if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    and not k.startswith(SKIPPED.get(arch, ()))
  )


# Options set on both sides. GoogLeNet's input transform (which its pretrained weights need) is
# checked here, its untransformed input in the training-mode test.
OPTIONS = {"googlenet": {"transform_input": True}, "inception_v3": {"transform_input": True}}


@pytest.mark.parametrize("arch", sorted(SIZES))
def test_logits_match_torchvision(arch):
  torch_model = _torch_model(arch, **OPTIONS.get(arch, {}))
  x_torch, x = _images(arch)
  with torch.no_grad():
    expected = torch_model(x_torch).numpy()
  state_dict = _state_dict(torch_model)
  variables = convert_torchvision_state_dict(arch, state_dict)
  model = torchvision_model(arch, state_dict).clone(**OPTIONS.get(arch, {}))
  with jax.default_matmul_precision("highest"):  # On accelerators; CPU is float32 anyway.
    logits, _ = jax.jit(model.apply)(variables, x)
  assert logits.shape == expected.shape
  np.testing.assert_allclose(np.asarray(logits), expected, rtol=0, atol=TOLERANCE)


def test_googlenet_training_mode_matches_torchvision_with_aux_heads():
  """Training mode: BatchNorm on batch statistics and the auxiliary heads (dropout off)."""
  torch_model = _torch_model("googlenet", dropout=0.0, dropout_aux=0.0).train()
  x_torch, x = _images("googlenet")
  with torch.no_grad():
    expected = torch_model(x_torch)
  variables = convert_torchvision_state_dict("googlenet", _state_dict(torch_model))
  model = get_model("googlenet", dropout=0.0, aux_dropout=0.0)
  apply = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))
  with jax.default_matmul_precision("highest"):
    (logits, features), _ = apply(variables, x)
  for ours, theirs in (
    (logits, expected.logits),
    (features["aux1"], expected.aux_logits1),
    (features["aux2"], expected.aux_logits2),
  ):
    np.testing.assert_allclose(np.asarray(ours), theirs.numpy(), rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize(
  "size,out",
  [
    ((7, 7), (7, 7)),
    ((14, 12), (7, 4)),
    ((5, 11), (3, 4)),
    ((2, 1), (6, 6)),
    ((1, 1), (7, 7)),
    ((9, 13), (4, 6)),
  ],
)
def test_adaptive_avg_pool_matches_torch(size, out):
  x = np.random.default_rng(0).normal(size=(2, *size, 3)).astype(np.float32)
  expected = F.adaptive_avg_pool2d(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), out)
  np.testing.assert_allclose(
    np.asarray(adaptive_avg_pool(x, out)), expected.numpy().transpose(0, 2, 3, 1), rtol=0, atol=1e-6
  )


@pytest.mark.parametrize("size", [(7, 8), (14, 15), (57, 29), (4, 5)])
@pytest.mark.parametrize(
  "window,stride,padding,ceil_mode",
  [(3, 2, 0, True), (2, 2, 0, True), (3, 1, 1, True), (3, 2, 1, False), (3, 2, 0, False)],
)
def test_max_pool_matches_torch(size, window, stride, padding, ceil_mode):
  x = np.random.default_rng(0).normal(size=(2, *size, 3)).astype(np.float32)
  expected = F.max_pool2d(
    torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), window, stride, padding, ceil_mode=ceil_mode
  )
  np.testing.assert_array_equal(
    np.asarray(max_pool(x, window, stride, padding, ceil_mode)),
    expected.numpy().transpose(0, 2, 3, 1),
  )


@pytest.mark.parametrize("size", [(7, 8), (14, 15), (4, 5)])
@pytest.mark.parametrize(
  "window,stride,padding,ceil_mode",
  [(3, 2, 0, True), (2, 2, 0, True), (3, 1, 1, True), (3, 2, 1, False)],
)
def test_max_pool_gradient_matches_torch_ties_included(size, window, stride, padding, ceil_mode):
  # Rounded ReLU outputs: most windows hold several equal maxima (zeros, ones); torch gives each
  # output's gradient to the first of them in its window, and so must we (our CPU gradient).
  rng = np.random.default_rng(1)
  x = np.maximum(np.round(rng.normal(size=(2, *size, 3))), 0).astype(np.float32)
  x_torch = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_()
  y_torch = F.max_pool2d(x_torch, window, stride, padding, ceil_mode=ceil_mode)
  cot = rng.normal(size=y_torch.shape).astype(np.float32)
  y_torch.backward(torch.from_numpy(cot))
  _, vjp = jax.vjp(lambda x: max_pool(x, window, stride, padding, ceil_mode), jnp.asarray(x))
  np.testing.assert_allclose(
    np.asarray(vjp(jnp.asarray(cot.transpose(0, 2, 3, 1)))[0]),
    x_torch.grad.numpy().transpose(0, 2, 3, 1),
    rtol=1e-6,
    atol=1e-6,
  )


@pytest.fixture(scope="module")
def resnet18() -> torch.nn.Module:
  return _torch_model("resnet18")


def test_cli_converts_a_saved_state_dict(resnet18, tmp_path, capsys):
  path = tmp_path / "resnet18.pth"
  torch.save(resnet18.state_dict(), path)
  out_dir = tmp_path / "resnet18_jax"
  assert import_torchvision.main(["resnet18", str(path), str(out_dir)]) == 0
  assert "11,689,512 parameters" in capsys.readouterr().out
  variables = load_variables(str(out_dir))
  expected = convert_torchvision_state_dict("resnet18", _state_dict(resnet18))
  jax.tree.map(np.testing.assert_array_equal, variables, expected)
  x_torch, x = _images("resnet18")
  with torch.no_grad():
    torch_logits = resnet18(x_torch).numpy()
  logits, _ = jax.jit(get_model("resnet18").apply)(variables, x)
  np.testing.assert_allclose(np.asarray(logits), torch_logits, rtol=0, atol=TOLERANCE)


def test_cli_rejects_unknown_arch_listing_the_valid_ones(tmp_path, capsys):
  with pytest.raises(SystemExit):
    import_torchvision.main(["resnet9", str(tmp_path / "x.pth"), str(tmp_path / "out")])
  err = capsys.readouterr().err
  assert "resnet9" in err and "resnet50" in err and "vgg19_bn" in err


def test_cli_reports_a_bad_file(tmp_path, capsys):
  path = tmp_path / "model.pth"
  torch.save({"model": {"fc.weight": torch.zeros(2, 2)}, "epoch": 3}, path)
  assert import_torchvision.main(["resnet18", str(path), str(tmp_path / "out")]) == 1
  assert "does not hold a state_dict" in capsys.readouterr().err
  assert not (tmp_path / "out").exists()


def test_mismatched_state_dict_names_the_keys(resnet18):
  state_dict = _state_dict(resnet18)
  del state_dict["layer2.0.downsample.1.running_var"]
  state_dict["layer5.0.conv1.weight"] = np.zeros((1,), np.float32)
  state_dict["layer1.0.conv2.weight"] = np.zeros((64, 64, 1, 1), np.float32)
  with pytest.raises(ValueError) as error:
    convert_torchvision_state_dict("resnet18", state_dict)
  message = str(error.value)
  assert "missing (1):\n    layer2.0.downsample.1.running_var" in message
  assert "unexpected (1):\n    layer5.0.conv1.weight" in message
  assert "layer1.0.conv2.weight: (64, 64, 1, 1), expected (64, 64, 3, 3)" in message


def test_imported_fid_inception_is_a_feature_classifier_as_pytorch_fid_applies_it(tmp_path, capsys):
  """The FID network imported by the CLI measures images as pytorch-fid does: resized to 299x299
  (bilinear), scaled to [-1, 1], features from the final average pool, grey images as RGB."""
  from vision_jax.metrics.feature_classifier import load_feature_classifier

  torch_model = _torch_model("inception_v3_fid")
  path = tmp_path / "pt_inception.pth"
  torch.save(torch_model.state_dict(), path)
  out_dir = tmp_path / "fid_inception"
  assert import_torchvision.main(["inception_v3_fid", str(path), str(out_dir)]) == 0
  assert f"--config.gan.classifier.directory={out_dir}" in capsys.readouterr().out
  classifier = load_feature_classifier(str(out_dir))
  features = {}
  torch_model.avgpool.register_forward_hook(lambda m, i, o: features.update(pool=o.flatten(1)))
  rng = np.random.default_rng(2)
  for channels in (3, 1):
    images = np.tanh(rng.normal(size=(2, 32, 32, channels))).astype(
      np.float32
    )  # a generator's range
    x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).expand(-1, 3, -1, -1)
    x = F.interpolate((x + 1) / 2, size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1
    with torch.no_grad():
      probs = F.softmax(torch_model(x), dim=1).numpy()
    ours_probs, ours_features = classifier(jnp.asarray(images))
    assert ours_features.shape == (2, 2048) and ours_probs.shape == (2, 1008)
    # A random network's features reach 1e6: compare them relative to their largest.
    scale = float(np.abs(features["pool"].numpy()).max())
    np.testing.assert_allclose(
      np.asarray(ours_features) / scale, features["pool"].numpy() / scale, rtol=0, atol=1e-5
    )
    np.testing.assert_allclose(np.asarray(ours_probs), probs, rtol=0, atol=1e-5)


def test_logits_are_checked_for_every_importable_architecture():
  assert set(SIZES) == set(ARCHS)
