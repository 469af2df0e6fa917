"""Converts a torchvision state_dict file into our variables, saved for `load_variables`.

  python -m scripts.import_torchvision resnet50 resnet50-11ad3fa6.pth /tmp/resnet50_tv

reads the file (torch's `.pth`/`.pt`, loaded with `weights_only=True` so that it cannot run
code, or `.safetensors` if the safetensors package is installed), converts it with
`vision_jax.models.torchvision_import.convert_torchvision_state_dict` and writes
{"params", "batch_stats"} with `vision_jax.train.checkpoint.save_variables`. Weights are never
downloaded here: fetch the file yourself.

An Inception-v3 (`inception_v3`, or `inception_v3_fid` for pytorch-fid's FID weights) is also
written as a feature classifier (classifier.json beside the variables: 299x299 bilinear resizing,
inputs scaled to [-1, 1]), so that `--config.gan.classifier.directory=<out_dir>` measures GAN
samples with it: the standard FID and Inception score with the FID weights.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

import jax
import numpy as np

from vision_jax.models.torchvision_import import (
  ARCHS,
  convert_torchvision_state_dict,
  torchvision_model,
)
from vision_jax.train.checkpoint import save_variables


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """The tensors of a torch or safetensors file, by name, as numpy arrays."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no such file: {path}")
  if path.endswith(".safetensors"):
    try:
      from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ImportError(
        f"{path} is a safetensors file, but the safetensors package is not "
        "installed (pip install safetensors)"
      ) from e
    return dict(load_file(path))
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(f"reading {path} needs PyTorch (pip install -r requirements-dev.txt)") from e
  state_dict = torch.load(path, map_location="cpu", weights_only=True)
  if not isinstance(state_dict, dict) or not all(
    isinstance(v, torch.Tensor) for v in state_dict.values()
  ):
    found = sorted(state_dict)[:10] if isinstance(state_dict, dict) else type(state_dict).__name__
    raise ValueError(
      f"{path} does not hold a state_dict (a dict of tensors); found {found}. "
      "If it is a training checkpoint, save its model's state_dict() instead."
    )
  # float() first: numpy has no bfloat16; the importer stores float32 anyway.
  return {k: (v.float() if v.is_floating_point() else v).numpy() for k, v in state_dict.items()}


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
    prog="python -m scripts.import_torchvision",
    description="Convert a torchvision state_dict into vision_jax variables.",
  )
  parser.add_argument(
    "arch", choices=ARCHS, metavar="arch", help=f"torchvision architecture: {', '.join(ARCHS)}"
  )
  parser.add_argument("state_dict", help="torch .pth/.pt file (or .safetensors)")
  parser.add_argument("out_dir", help="directory to create for the variables (must not exist)")
  args = parser.parse_args(argv)

  if os.path.exists(args.out_dir):
    parser.error(f"{args.out_dir} exists; choose a new directory")
  try:
    state_dict = read_state_dict(args.state_dict)
    variables = convert_torchvision_state_dict(args.arch, state_dict)
  except (OSError, ImportError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  save_variables(args.out_dir, variables)

  model = torchvision_model(args.arch, state_dict)
  kwargs = f"num_classes={model.num_classes}"
  if args.arch == "googlenet":
    kwargs += f", aux_logits={model.aux_logits}"
  count = sum(np.size(v) for v in jax.tree.leaves(variables["params"]))
  print(
    f"wrote {args.arch} ({count:,} parameters) to {args.out_dir}; "
    f"use it with get_model({args.arch!r}, {kwargs})"
  )
  if args.arch == "googlenet":
    print(
      "note: torchvision's pretrained GoogLeNet expects transform_input=True for "
      "ImageNet-normalised inputs"
    )
  if args.arch.startswith("inception_v3"):
    write_feature_classifier(args.out_dir, args.arch, model.num_classes, args.state_dict)
    print(f"and as a feature classifier: --config.gan.classifier.directory={args.out_dir}")
  return 0


def write_feature_classifier(directory: str, arch: str, num_classes: int, source: str) -> None:
  """classifier.json for `load_feature_classifier`: Inception-v3 sees images resized to 299x299
  and scaled to [-1, 1] (the FID network's input; torchvision's pretrained weights take the same
  with transform_input, which maps ImageNet-normalised inputs to it)."""
  info = {
    "config": f"import_torchvision {arch}",
    "model": {"name": arch},
    "num_classes": num_classes,
    "dataset": "ImageNet",
    "source": os.path.abspath(source),
    "image_size": 299,
    "resize": True,
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5],
    "steps": None,
    "test_error": None,
  }
  with open(os.path.join(directory, "classifier.json"), "w") as f:
    json.dump(info, f, indent=2)


if __name__ == "__main__":
  sys.exit(main())
