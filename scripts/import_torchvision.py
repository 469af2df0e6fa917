"""Converts a torchvision state_dict file into our variables, saved for `load_variables`.

  python -m scripts.import_torchvision resnet50 resnet50-11ad3fa6.pth /tmp/resnet50_tv

reads the file (torch's `.pth`/`.pt`, loaded with `weights_only=True` so that it cannot run
code, or `.safetensors` if the safetensors package is installed), converts it with
`vision_jax.models.torchvision_import.convert_torchvision_state_dict` and writes
{"params", "batch_stats"} with `vision_jax.train.checkpoint.save_variables`. Weights are never
downloaded here: fetch the file yourself.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

import jax
import numpy as np

from vision_jax.models.torchvision_import import ARCHS, convert_torchvision_state_dict
from vision_jax.models.torchvision_import import torchvision_model
from vision_jax.train.checkpoint import save_variables


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """The tensors of a torch or safetensors file, by name, as numpy arrays."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no such file: {path}")
  if path.endswith(".safetensors"):
    try:
      from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ImportError(f"{path} is a safetensors file, but the safetensors package is not "
                        "installed (pip install safetensors)") from e
    return dict(load_file(path))
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(f"reading {path} needs PyTorch (pip install -r requirements-dev.txt)") from e
  state_dict = torch.load(path, map_location="cpu", weights_only=True)
  if not isinstance(state_dict, dict) or not all(
      isinstance(v, torch.Tensor) for v in state_dict.values()):
    found = sorted(state_dict)[:10] if isinstance(state_dict, dict) else type(state_dict).__name__
    raise ValueError(f"{path} does not hold a state_dict (a dict of tensors); found {found}. "
                     "If it is a training checkpoint, save its model's state_dict() instead.")
  # float() first: numpy has no bfloat16; the importer stores float32 anyway.
  return {k: (v.float() if v.is_floating_point() else v).numpy() for k, v in state_dict.items()}


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m scripts.import_torchvision",
      description="Convert a torchvision state_dict into vision_jax variables.")
  parser.add_argument("arch", choices=ARCHS, metavar="arch",
                      help=f"torchvision architecture: {', '.join(ARCHS)}")
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
  print(f"wrote {args.arch} ({count:,} parameters) to {args.out_dir}; "
        f"use it with get_model({args.arch!r}, {kwargs})")
  if args.arch == "googlenet":
    print("note: torchvision's pretrained GoogLeNet expects transform_input=True for "
          "ImageNet-normalised inputs")
  return 0


if __name__ == "__main__":
  sys.exit(main())
