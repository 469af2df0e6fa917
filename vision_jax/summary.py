"""A model's layers: output shapes, parameters and multiplications, read from the module itself.

    python -m vision_jax.summary lenet5 --input-shape 32,32,1
    python -m vision_jax.summary lenet5 --kw pooling=subsample --kw partial_c3=False
    python -m vision_jax.summary lecture_convnet --input-shape 256,256,3 --json

The model is initialised under `jax.eval_shape` (no computation, no memory) with every module
call intercepted (`nn.intercept_methods`). Each call of a module that declares parameters, or
that knows its multiplications, becomes a row: its path, input and output shapes, kernel shape,
strides, feature groups, bias, parameters and multiplications. flax's pooling functions are plain
functions, not modules, so they are wrapped while tracing and appear as parameter-free rows.

Parameters are counted from each module's own entries in the param tree, so they are exactly
what is trained. Multiplications follow the lecture's convention: one per weight per output
value, plus one for the bias ("28 = 3·3·3 weights and a bias"):
  conv:  out_h·out_w·out_channels·(k_h·k_w·in_channels/groups + 1)
  dense: out_features·(in_features + 1)
These rules (and those for ConvTranspose and the normalisation layers) are read off the kernel's
shape. A module whose parameters do not show how it computes, such as LeNet-5's C3 that packs
only its connected weights, defines

    def multiplications(self, input_shape, output_shape) -> int  # shapes without the batch

and the summary uses that instead: the knowledge stays next to the computation it describes.
A module with neither shows "?" and the total says so. Pooling counts no multiplications.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import math
import sys
from collections.abc import Mapping
from typing import Any, Callable, Iterator, Sequence

import flax.linen as nn
import flax.linen.pooling
import jax
import jax.numpy as jnp
import ml_collections

from vision_jax.models.registry import build_model

Row = dict[str, Any]

# Layers whose multiplications follow from their kernel's shape.
_NORMALIZATIONS = (nn.BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)
_POOLS = ("max_pool", "avg_pool", "min_pool")


def layer_table(model: nn.Module, input_shape: Sequence[int]) -> list[Row]:
  """The rows of `model`'s summary for one input of `input_shape` ([height, width, channels]).

  Each row: {"name": module path "a/b", "type", "input_shape", "output_shape" (without the
  batch), "kernel_shape", "strides", "feature_group_count", "bias", "params", "multiplications"
  (None when unknown)}. Parameters of modules that were never called (if any) come last as one
  "(other parameters)" row, so that the rows always sum to the model's parameter count.
  """
  input_shape = tuple(int(d) for d in input_shape)
  if not input_shape or any(d <= 0 for d in input_shape):
    raise ValueError(
      f"input_shape must be positive dimensions without the batch, e.g. (32, 32, 1); got {input_shape}"
    )
  entries: list[Row] = []
  stack: list[tuple[str, ...]] = []  # paths of the modules being called, innermost last
  rows_by_path: dict[tuple[str, ...], Row] = {}

  def intercept(next_fun: Callable, args, kwargs, context):
    module = context.module
    if context.method_name != "__call__":
      stack.append(module.path)
      try:
        return next_fun(*args, **kwargs)
      finally:
        stack.pop()
    entry = {"path": module.path, "keep": False}
    entries.append(entry)  # appended before its children, so rows read in call order
    stack.append(module.path)
    try:
      y = next_fun(*args, **kwargs)
    finally:
      stack.pop()
    x_shape, y_shape = _first_shape(args), _first_shape(y)
    params = {
      k: v for k, v in module.variables.get("params", {}).items() if not isinstance(v, Mapping)
    }
    mults = None
    if x_shape is not None and y_shape is not None:
      if callable(getattr(module, "multiplications", None)):
        mults = int(module.multiplications(x_shape[1:], y_shape[1:]))
      else:
        mults = _builtin_multiplications(module, x_shape[1:], y_shape[1:], params)
    if not params and mults is None:
      return y
    shared = module.path in rows_by_path  # a second call of the same weights adds no parameters
    entry.update(
      keep=True,
      name="/".join(module.path) or "(model)",
      type=type(module).__name__,
      input_shape=x_shape and x_shape[1:],
      output_shape=y_shape and y_shape[1:],
      kernel_shape=tuple(params["kernel"].shape) if "kernel" in params else None,
      strides=_tuple(getattr(module, "strides", None)),
      feature_group_count=getattr(module, "feature_group_count", None),
      bias="bias" in params if params else None,
      params=0 if shared else sum(math.prod(v.shape) for v in params.values()),
      multiplications=mults,
    )
    rows_by_path[module.path] = entry
    return y

  def record_pool(kind: str, x, y, window_shape, strides) -> None:
    if stack:  # only pooling inside the model
      path = stack[-1]
      entries.append(
        {
          "path": path + (kind,),
          "keep": True,
          "parent": path,
          "name": "/".join(path + (kind,)),
          "type": kind,
          "input_shape": tuple(x.shape[1:]),
          "output_shape": tuple(y.shape[1:]),
          "kernel_shape": tuple(window_shape),
          "strides": _tuple(strides) or (1,) * len(window_shape),
          "feature_group_count": None,
          "bias": None,
          "params": 0,
          "multiplications": 0,
        }
      )

  def init():
    with nn.intercept_methods(intercept), _recording_pools(record_pool):
      return model.init(
        {"params": jax.random.key(0), "dropout": jax.random.key(0)},
        jnp.zeros((1,) + input_shape, jnp.float32),
        train=False,
      )

  variables = jax.eval_shape(init)
  # A pooling inside a row's module (LeNet's trainable subsampling) is part of that row.
  rows = [e for e in entries if e["keep"] and e.get("parent") not in rows_by_path]
  rows = [{k: v for k, v in r.items() if k not in ("path", "keep", "parent")} for r in rows]
  total = sum(math.prod(v.shape) for v in jax.tree.leaves(variables.get("params", {})))
  other = total - sum(r["params"] for r in rows)
  if other:
    rows.append(
      {
        "name": "(other parameters)",
        "type": "",
        "input_shape": None,
        "output_shape": None,
        "kernel_shape": None,
        "strides": None,
        "feature_group_count": None,
        "bias": None,
        "params": other,
        "multiplications": None,
      }
    )
  return rows


def totals(rows: Sequence[Row]) -> Row:
  """{"params", "multiplications" (of the rows that know theirs), "unknown_multiplications": names}."""
  return {
    "params": sum(r["params"] for r in rows),
    "multiplications": sum(r["multiplications"] or 0 for r in rows),
    "unknown_multiplications": [r["name"] for r in rows if r["multiplications"] is None],
  }


def format_table(rows: Sequence[Row], title: str = "") -> str:
  """The rows as an aligned text table with a total row."""
  header = ("layer", "type", "input", "output", "kernel", "params", "multiplications")
  lines = [tuple(_cells(r)) for r in rows]
  total = totals(rows)
  mults = f"{total['multiplications']:,}" + (" + ?" if total["unknown_multiplications"] else "")
  lines.append(("total", "", "", "", "", f"{total['params']:,}", mults))
  widths = [max(len(line[i]) for line in [header] + lines) for i in range(len(header))]
  right = {5, 6}  # numbers are right-aligned

  def render(line):
    return "  ".join(
      c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths))
    ).rstrip()

  rule = "-" * len(render(header))
  out = (
    ([title] if title else [])
    + [render(header), rule]
    + [render(l) for l in lines[:-1]]
    + [rule, render(lines[-1])]
  )
  if total["unknown_multiplications"]:
    out.append("? = the module defines no multiplications(); the total leaves it out")
  return "\n".join(out)


def _cells(row: Row) -> Iterator[str]:
  yield row["name"]
  yield row["type"]
  yield _shape(row["input_shape"])
  yield _shape(row["output_shape"])
  kernel = _shape(row["kernel_shape"])
  if row["strides"] and any(s != 1 for s in row["strides"]):
    strides = row["strides"][:1] if len(set(row["strides"])) == 1 else row["strides"]
    kernel += " /" + "x".join(map(str, strides))
  if row["feature_group_count"] and row["feature_group_count"] != 1:
    kernel += f" groups={row['feature_group_count']}"
  yield kernel
  yield f"{row['params']:,}"
  yield "?" if row["multiplications"] is None else f"{row['multiplications']:,}"


def _shape(shape) -> str:
  return "" if shape is None else "x".join(map(str, shape))


def _tuple(value) -> tuple[int, ...] | None:
  if value is None:
    return None
  return tuple(value) if isinstance(value, Sequence) else (int(value),)


def _first_shape(tree) -> tuple[int, ...] | None:
  """The shape of the first array in `tree` (a module's input or its main output)."""
  leaves = [l for l in jax.tree.leaves(tree) if hasattr(l, "shape")]
  return tuple(leaves[0].shape) if leaves else None


def _builtin_multiplications(module: nn.Module, x_shape, y_shape, params) -> int | None:
  """flax's layers, from the kernel's shape; shapes without the batch. None for other modules."""
  out_values, bias = math.prod(y_shape), int("bias" in params)
  if isinstance(module, (nn.Conv, nn.Dense)):
    # kernel: [*window, in_channels / groups, out_channels]: each output value meets all but the last axis.
    return out_values * (math.prod(params["kernel"].shape[:-1]) + bias)
  if isinstance(module, nn.ConvTranspose):
    # Each input position scatters through the whole kernel [*window, in_channels, out_channels].
    return math.prod(x_shape[:-1]) * math.prod(params["kernel"].shape) + out_values * bias
  if isinstance(module, _NORMALIZATIONS):
    return out_values * len(params)  # a scale and a bias per value, once folded
  return None


@contextlib.contextmanager
def _recording_pools(record: Callable[..., None]) -> Iterator[None]:
  """Wraps flax's pooling functions (in `flax.linen` and `flax.linen.pooling`) to report each call."""
  namespaces = (nn, flax.linen.pooling)
  originals = {
    (ns, kind): getattr(ns, kind) for ns in namespaces for kind in _POOLS if hasattr(ns, kind)
  }

  def wrap(kind, fn):
    def pool(inputs, window_shape, strides=None, padding="VALID", **kwargs):
      y = fn(inputs, window_shape, strides, padding, **kwargs)
      record(kind, inputs, y, window_shape, strides)
      return y

    return pool

  try:
    for ns, kind in originals:
      setattr(ns, kind, wrap(kind, originals[(flax.linen.pooling, kind)]))
    yield
  finally:
    for (ns, kind), fn in originals.items():
      setattr(ns, kind, fn)


def _parse_value(text: str) -> Any:
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text  # a bare word such as pooling=max
  return tuple(value) if isinstance(value, list) else value


def parse_kwargs(items: Sequence[str]) -> dict[str, Any]:
  """["pooling=max", "partial_c3=False"] -> {"pooling": "max", "partial_c3": False}."""
  kwargs = {}
  for item in items:
    key, eq, value = item.partition("=")
    if not eq or not key:
      raise ValueError(f"--kw {item!r} must be KEY=VALUE, e.g. --kw pooling=max")
    kwargs[key.strip()] = _parse_value(value.strip())
  return kwargs


def build(name: str, num_classes: int, kwargs: Mapping[str, Any]) -> nn.Module:
  """The registered model as an experiment config would build it (`config.model` = name + kwargs)."""
  return build_model(ml_collections.ConfigDict({"name": name, **kwargs}), num_classes=num_classes)


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
    prog="python -m vision_jax.summary", description=__doc__.split("\n")[0]
  )
  parser.add_argument("model", help="a registered model name")
  parser.add_argument(
    "--input-shape", default="32,32,1", help="height,width,channels (default 32,32,1)"
  )
  parser.add_argument("--num-classes", type=int, default=10)
  parser.add_argument(
    "--kw",
    action="append",
    default=[],
    metavar="KEY=VALUE",
    help="a model argument, as config.model.KEY would set it (repeatable)",
  )
  parser.add_argument("--json", action="store_true", help="print the table as JSON")
  args = parser.parse_args(argv)
  try:
    input_shape = tuple(int(d) for d in args.input_shape.split(","))
  except ValueError:
    parser.error(
      f"--input-shape must be comma-separated integers such as 32,32,1, got {args.input_shape!r}"
    )
  try:
    model = build(args.model, args.num_classes, parse_kwargs(args.kw))
    rows = layer_table(model, input_shape)
  except (KeyError, ValueError, TypeError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if args.json:
    print(
      json.dumps(
        {
          "model": args.model,
          "input_shape": input_shape,
          "num_classes": args.num_classes,
          "kwargs": parse_kwargs(args.kw),
          "layers": rows,
          "total": totals(rows),
        },
        indent=1,
      )
    )
  else:
    print(format_table(rows, title=f"{args.model} on {_shape(input_shape)}"))
  return 0


if __name__ == "__main__":
  sys.exit(main())
