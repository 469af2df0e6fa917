"""torchvision state_dicts as our variables, for AlexNet, VGG, GoogLeNet, Inception-v3 and ResNet.

`convert_torchvision_state_dict("resnet50", state_dict)` maps torchvision's parameter names to
ours, transposes convolutions (OIHW to HWIO) and linear layers, permutes the rows of the linear
layers that follow a flattened feature map (torch flattens NCHW, we flatten NHWC), and moves
BatchNorm statistics into "batch_stats". Every key and shape is checked against the model we
would build; mismatches are reported by their torch names. Nothing here imports torch: the
state_dict is a mapping of names to numpy arrays (scripts/import_torchvision.py reads the file).

The result is for the model `torchvision_model(arch, state_dict)` returns, which is the
registered model with `num_classes` read from the classifier (and, for GoogLeNet, auxiliary
heads if the state_dict has them). torchvision's pretrained GoogLeNet and Inception-v3 expect
`transform_input=True` when fed ImageNet-normalised images. Inception-v3's auxiliary classifier
(`AuxLogits.*`, for training only) is not imported. "inception_v3_fid" takes pytorch-fid's port of
the FID Inception weights (`pt_inception-2015-12-05-*.pth`), which use torchvision's names.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.models import alexnet, googlenet, inception, registry, resnet, vgg

# torchvision's names, which are also our registry's (and the FID network's, see above).
ARCHS = (
  "alexnet",
  "googlenet",
  "inception_v3",
  "inception_v3_fid",
  "resnet18",
  "resnet34",
  "resnet50",
  "resnet101",
  "resnet152",
  "vgg11",
  "vgg11_bn",
  "vgg13",
  "vgg13_bn",
  "vgg16",
  "vgg16_bn",
  "vgg19",
  "vgg19_bn",
)
# Weights of parts we do not build, by prefix.
SKIPPED = {"inception_v3": ("AuxLogits.",), "inception_v3_fid": ("AuxLogits.",)}

# Each rule maps one torch layer (a name prefix) to one of our modules (a path in the variable
# tree) as one of these kinds; a linear layer after a flattened map also gives the map's
# (channels, height, width).
Rule = tuple[str, tuple[str, ...], str, tuple[int, int, int] | None]


def _conv(prefix: str, path: tuple[str, ...]) -> Rule:
  return prefix, path, "conv", None


def _linear(
  prefix: str, path: tuple[str, ...], flattened_chw: tuple[int, int, int] | None = None
) -> Rule:
  return prefix, path, "linear", flattened_chw


def _bn(prefix: str, path: tuple[str, ...]) -> Rule:
  return prefix, path, "bn", None


def _head_key(arch: str) -> str:
  return "classifier.6.weight" if arch.startswith(("alexnet", "vgg")) else "fc.weight"


def torchvision_model(arch: str, state_dict: Mapping[str, Any]) -> nn.Module:
  """The registered model that the state_dict of torchvision's `arch` fits."""
  if arch not in ARCHS:
    raise ValueError(f"unknown architecture {arch!r}; importable: {', '.join(ARCHS)}")
  kwargs = {}
  head = state_dict.get(_head_key(arch))
  if head is not None:
    kwargs["num_classes"] = int(np.shape(head)[0])
  if arch == "googlenet":
    kwargs["aux_logits"] = any(k.startswith(("aux1.", "aux2.")) for k in state_dict)
  return registry.get_model(arch, **kwargs)


def _alexnet_rules() -> list[Rule]:
  rules = [_conv(f"features.{i}", (f"conv{n}",)) for n, i in enumerate((0, 3, 6, 8, 10), 1)]
  return rules + [
    _linear("classifier.1", ("fc1",), (256, 6, 6)),
    _linear("classifier.4", ("fc2",)),
    _linear("classifier.6", ("head",)),
  ]


def _vgg_rules(model: vgg.VGG) -> list[Rule]:
  # torchvision's `features` is one Sequential: conv, [bn], relu per layer, a max pool per block.
  rules, index = [], 0
  for b, widths in enumerate(model.blocks, start=1):
    for i in range(1, len(widths) + 1):
      rules.append(_conv(f"features.{index}", (f"block{b}_conv{i}",)))
      if model.batch_norm:
        rules.append(_bn(f"features.{index + 1}", (f"block{b}_bn{i}",)))
      index += 3 if model.batch_norm else 2
    index += 1
  return rules + [
    _linear("classifier.0", ("fc1",), (512, 7, 7)),
    _linear("classifier.3", ("fc2",)),
    _linear("classifier.6", ("head",)),
  ]


def _resnet_rules(model: resnet.ResNet, params: Mapping[str, Any]) -> list[Rule]:
  rules = [_conv("conv1", ("conv_init",)), _bn("bn1", ("bn_init",))]
  convs = 3 if model.block_cls is resnet.Bottleneck else 2
  for s, num_blocks in enumerate(model.stage_sizes, start=1):
    for b in range(num_blocks):
      torch_block, block = f"layer{s}.{b}", f"stage{s}_block{b + 1}"
      for k in range(1, convs + 1):
        rules.append(_conv(f"{torch_block}.conv{k}", (block, f"conv{k}")))
        rules.append(_bn(f"{torch_block}.bn{k}", (block, f"bn{k}")))
      if "proj_conv" in params[block]:
        rules.append(_conv(f"{torch_block}.downsample.0", (block, "proj_conv")))
        rules.append(_bn(f"{torch_block}.downsample.1", (block, "proj_bn")))
  return rules + [_linear("fc", ("head",))]


def _googlenet_rules(aux_logits: bool) -> list[Rule]:
  def basic_conv(prefix: str, path: tuple[str, ...]) -> list[Rule]:
    return [_conv(f"{prefix}.conv", (*path, "conv")), _bn(f"{prefix}.bn", (*path, "bn"))]

  rules = [r for name in ("conv1", "conv2", "conv3") for r in basic_conv(name, (name,))]
  branches = {
    "branch1": "branch1",
    "branch2.0": "branch2_reduce",
    "branch2.1": "branch2",
    "branch3.0": "branch3_reduce",
    "branch3.1": "branch3",
    "branch4.1": "branch4",
  }
  for layer in googlenet.INCEPTIONS:
    if isinstance(layer, int):
      continue
    name, _ = layer
    for torch_branch, branch in branches.items():
      rules += basic_conv(f"{name}.{torch_branch}", (name, branch))
  if aux_logits:
    for aux in ("aux1", "aux2"):
      rules += basic_conv(f"{aux}.conv", (aux, "conv"))
      rules += [
        _linear(f"{aux}.fc1", (aux, "fc1"), (128, 4, 4)),
        _linear(f"{aux}.fc2", (aux, "fc2")),
      ]
  return rules + [_linear("fc", ("head",))]


def _inception_rules(params: Mapping[str, Any]) -> list[Rule]:
  # Our module paths are torchvision's names: Mixed_5b/branch1x1/conv is Mixed_5b.branch1x1.conv.
  rules = []

  def walk(tree: Mapping[str, Any], path: tuple[str, ...]) -> None:
    for name, child in tree.items():
      if name == "conv":
        rules.append(_conv(".".join((*path, name)), (*path, name)))
      elif name == "bn":
        rules.append(_bn(".".join((*path, name)), (*path, name)))
      elif isinstance(child, Mapping) and name != "head":
        walk(child, (*path, name))

  walk(params, ())
  return rules + [_linear("fc", ("head",))]


def _rules(model: nn.Module, params: Mapping[str, Any]) -> list[Rule]:
  if isinstance(model, inception.InceptionV3):
    return _inception_rules(params)
  if isinstance(model, alexnet.AlexNet):
    return _alexnet_rules()
  if isinstance(model, vgg.VGG):
    return _vgg_rules(model)
  if isinstance(model, resnet.ResNet):
    return _resnet_rules(model, params)
  assert isinstance(model, googlenet.GoogLeNet), type(model)
  return _googlenet_rules(model.aux_logits)


def _conv_kernel(w: np.ndarray) -> np.ndarray:
  return w.transpose(2, 3, 1, 0)  # [out, in, kh, kw] -> [kh, kw, in, out]


def _linear_kernel(
  flattened_chw: tuple[int, int, int] | None,
) -> Callable[[np.ndarray], np.ndarray]:
  def transform(w: np.ndarray) -> np.ndarray:
    if flattened_chw is None:
      return w.T  # [out, in] -> [in, out]
    # torch's input index is (channel, row, column) flattened; ours is (row, column, channel).
    channels, height, width = flattened_chw
    w = w.reshape(-1, channels, height, width).transpose(2, 3, 1, 0)
    return w.reshape(height * width * channels, -1)

  return transform


def _get(tree: Mapping[str, Any], path: tuple[str, ...]) -> Any:
  for name in path:
    if not isinstance(tree, Mapping) or name not in tree:
      return None
    tree = tree[name]
  return tree


def _set(tree: dict[str, Any], path: tuple[str, ...], value: np.ndarray) -> None:
  for name in path[:-1]:
    tree = tree.setdefault(name, {})
  tree[path[-1]] = value


def convert_torchvision_state_dict(
  arch: str, state_dict: Mapping[str, np.ndarray]
) -> dict[str, Any]:
  """torchvision's `arch` weights as our variables.

  Args:
    arch: one of ARCHS ("alexnet", "googlenet", "inception_v3", "inception_v3_fid",
      "resnet18".."resnet152", "vgg11".."vgg19_bn").
    state_dict: torchvision's parameter and buffer names to numpy arrays, as
      `{k: v.numpy() for k, v in torch_model.state_dict().items()}`.

  Returns:
    {"params": ..., "batch_stats": ...} (no "batch_stats" for models without BatchNorm) of
    float32 numpy arrays, for the model `torchvision_model(arch, state_dict)`.

  Raises:
    ValueError: unknown arch, or state_dict keys that are missing, unexpected or of the wrong
      shape (all of them are listed, by torch name).
  """
  model = torchvision_model(arch, state_dict)
  size = 224  # The variables' shapes do not depend on the input size (Inception-v3 needs 75).
  expected = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3))))
  expected = jax.tree.map(lambda x: tuple(x.shape), dict(expected))

  # (torch key, torch shape, our collection, our path, transform) for every variable we expect.
  wanted = []
  for prefix, path, kind, flattened_chw in _rules(model, expected["params"]):
    if kind == "bn":
      for torch_name, collection, name in (
        ("weight", "params", "scale"),
        ("bias", "params", "bias"),
        ("running_mean", "batch_stats", "mean"),
        ("running_var", "batch_stats", "var"),
      ):
        shape = _get(expected[collection], (*path, name))
        wanted.append((f"{prefix}.{torch_name}", shape, collection, (*path, name), np.asarray))
      continue
    kernel = _get(expected["params"], (*path, "kernel"))
    if kind == "conv":
      kh, kw, c_in, c_out = kernel
      wanted.append(
        (f"{prefix}.weight", (c_out, c_in, kh, kw), "params", (*path, "kernel"), _conv_kernel)
      )
    else:
      wanted.append(
        (
          f"{prefix}.weight",
          kernel[::-1],
          "params",
          (*path, "kernel"),
          _linear_kernel(flattened_chw),
        )
      )
    bias = _get(expected["params"], (*path, "bias"))
    if bias is not None:
      wanted.append((f"{prefix}.bias", bias, "params", (*path, "bias"), np.asarray))

  ignored = {
    k
    for k in state_dict
    if k.endswith(".num_batches_tracked") or k.startswith(SKIPPED.get(arch, ()))
  }
  unexpected = sorted(set(state_dict) - ignored - {key for key, *_ in wanted})
  missing, wrong_shape = [], []
  variables: dict[str, Any] = {}
  for key, torch_shape, collection, path, transform in wanted:
    if key not in state_dict:
      missing.append(key)
      continue
    value = np.asarray(state_dict[key])
    if value.shape != torch_shape:
      wrong_shape.append(f"{key}: {tuple(value.shape)}, expected {torch_shape}")
      continue
    _set(variables.setdefault(collection, {}), path, transform(value).astype(np.float32))

  problems = []
  for what, keys in (
    ("missing", missing),
    ("unexpected", unexpected),
    ("wrong shape", wrong_shape),
  ):
    if keys:
      more = f"\n    ... and {len(keys) - 20} more" if len(keys) > 20 else ""
      problems.append(f"  {what} ({len(keys)}):\n    " + "\n    ".join(keys[:20]) + more)
  if problems:
    raise ValueError(f"state_dict does not fit torchvision's {arch}:\n" + "\n".join(problems))
  # Every variable of the model must come from some rule; anything else is a bug here.
  assert jax.tree.map(np.shape, variables) == expected, f"{arch}: conversion rules incomplete"
  return variables
