"""Training throughput of a registered model: images/s, compile time and peak memory.

    python -m scripts.bench lenet5 --batch 128 --channels 1
    python -m scripts.bench lecture_convnet --batch 32 --image-size 256 --dtype bfloat16 --json -
    python -m scripts.bench resnet18 --batch 64 --image-size 224 --compare-torch  # once resnet18 is registered

It times the project's own step, not a copy: a ClassificationTask built from
`configs.common.base_config()` with the model set, its TrainState, and the loop's jitted chunk
(`vision_jax.train.loop.make_train_chunk`: `--steps-per-call` scanned `task.train_step` calls,
state donated) over a 1-D mesh of every device. The data is one synthetic batch (random uint8
images and labels) resident on the devices, preprocessed with `to_float` inside the step like
the loop's; it is reused every step, so the per-step index gather of a real run is left out.

Compile time is `lower(...).compile()`. After one warm-up call, `--steps` steps (rounded up to
whole calls) are timed, each call waited for (`block_until_ready`). Peak memory is the devices'
`peak_bytes_in_use` where the backend reports it (GPU, TPU), else this process's maximum
resident set size, labelled "host_rss"; both cover the whole run (init and compile included).

`--profile DIR` then traces two more calls with `jax.profiler` into DIR (open it in TensorBoard or
Perfetto) and summarises the trace under "profile": per device, the time its XLA ops kept it busy
against the traced span, the ops per step, the median idle gap between ops, and the ops that took
the most time. A small model whose device is busy a small fraction of the span is bound by
launching its kernels, not by computing them.

`--compare-torch` trains torchvision's model of the same name (or `TORCHVISION_EQUIVALENTS`)
on the same device with the same batch and the same optimizer (Adam), eagerly or with
`--torch-compile`, and prints the ratio. It is skipped, with a message, when torch or the
counterpart is missing.
"""

from __future__ import annotations

import argparse
import collections
import functools
import glob
import gzip
import json
import math
import os
import resource
import statistics
import sys
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp

from configs.common import base_config
from vision_jax.data.augment import make_preprocess
from vision_jax.data.formats.base import DatasetSpec
from vision_jax.models.registry import DTYPES
from vision_jax.summary import parse_kwargs
from vision_jax.tasks.classification import ClassificationTask
from vision_jax.train import mesh as mesh_lib
from vision_jax.train.loop import make_train_chunk, scan_steps

# vision_jax model name -> torchvision model name, where they differ.
TORCHVISION_EQUIVALENTS: dict[str, str] = {}


def bench(
  model: str,
  batch: int,
  image_size: int = 32,
  channels: int = 3,
  num_classes: int = 10,
  dtype: str = "float32",
  steps_per_call: int | None = None,
  steps: int = 50,
  model_kwargs: dict[str, Any] | None = None,
  profile_dir: str | None = None,
) -> dict[str, Any]:
  """Trains `model` on synthetic data; returns the measurements (see `main` for the fields).

  `steps_per_call` None follows the loop's `train.scan_steps` "auto": 10 scanned steps per call,
  but 1 on CPUs, where XLA runs the convolutions inside a scan many times slower.
  """
  if steps_per_call is None:
    steps_per_call = 10 if scan_steps(base_config().train) else 1
  if min(batch, image_size, channels, num_classes, steps_per_call, steps) < 1:
    raise ValueError(
      "batch, image size, channels, classes, steps per call and steps must all be at least 1"
    )
  if dtype not in DTYPES:
    raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
  mesh = mesh_lib.make_mesh()
  if batch % mesh.devices.size:
    raise ValueError(f"batch {batch} must be a multiple of the {mesh.devices.size} devices")
  calls = math.ceil(steps / steps_per_call)
  config = base_config()
  config.model.name = model
  config.model.dtype = dtype
  config.model.update(model_kwargs or {})
  config.train.batch_size = batch
  config.train.steps = (
    calls + 1
  ) * steps_per_call  # the schedule's length: warm-up and timed calls
  spec = DatasetSpec(
    (image_size, image_size, channels), tuple(map(str, range(num_classes))), ("train",)
  )
  task = ClassificationTask(config, spec)
  train_fn, eval_fn = make_preprocess(config.data)

  @functools.partial(jax.jit, out_shardings=mesh_lib.batch_sharded(mesh))
  def synthetic_batch(key):
    image_key, label_key = jax.random.split(key)
    shape = (batch, image_size, image_size, channels)
    return {
      "image": jax.random.randint(image_key, shape, 0, 256).astype(jnp.uint8),
      "label": jax.random.randint(label_key, (batch,), 0, num_classes),
    }

  data = synthetic_batch(jax.random.key(1))
  init_rng, rng = jax.random.split(jax.random.key(0))
  # As the loop does: initialise from a preprocessed example, every leaf replicated.
  example = eval_fn({k: v[:2] for k, v in data.items()})
  init = functools.partial(task.init_state, batch=example, total_steps=config.train.steps)
  replicated = mesh_lib.replicated(mesh)
  state_sharding = jax.tree.map(lambda _: replicated, jax.eval_shape(init, init_rng))
  state = jax.jit(init, out_shardings=state_sharding)(init_rng)
  # The loop gathers step x's batch from the resident split; here the one batch is every step's.
  chunk = make_train_chunk(task, train_fn, lambda data, x: data, rng, state_sharding, replicated)
  xs = jnp.arange(steps_per_call, dtype=jnp.int32)

  t0 = time.perf_counter()
  compiled = chunk.lower(state, data, xs).compile()
  compile_s = time.perf_counter() - t0
  state, metrics = jax.block_until_ready(compiled(state, data, xs))  # warm-up
  t0 = time.perf_counter()
  for _ in range(calls):
    state, metrics = jax.block_until_ready(compiled(state, data, xs))
  wall_s = time.perf_counter() - t0
  timed_steps = calls * steps_per_call
  profile = None
  if profile_dir:
    profile_calls = 2
    with jax.profiler.trace(profile_dir, create_perfetto_trace=True):
      for _ in range(profile_calls):
        state, metrics = jax.block_until_ready(compiled(state, data, xs))
    profile = profile_summary(profile_dir, profile_calls * steps_per_call)
  peak_bytes, peak_kind = peak_memory()
  device = jax.devices()[0]
  return {
    "model": model,
    "model_kwargs": dict(model_kwargs or {}),
    "batch": batch,
    "image_size": image_size,
    "channels": channels,
    "num_classes": num_classes,
    "dtype": dtype,
    "steps_per_call": steps_per_call,
    "timed_steps": timed_steps,
    "wall_s": wall_s,
    "compile_s": compile_s,
    "steps_per_s": timed_steps / wall_s,
    "images_per_s": timed_steps * batch / wall_s,
    "peak_memory_bytes": peak_bytes,
    "peak_memory_kind": peak_kind,
    "final_loss": float(metrics["loss"][-1]),
    "backend": jax.default_backend(),
    "device_kind": device.device_kind,
    "device_count": jax.device_count(),
    "jax_version": jax.__version__,
    **({"profile": profile} if profile else {}),
  }


def _union(intervals: list[tuple[float, float]]) -> tuple[float, list[float]]:
  """Total length of the union of [start, end) intervals (microseconds), and the gaps between them."""
  busy, gaps, end = 0.0, [], None
  for start, stop in sorted(intervals):
    if end is None or start > end:
      if end is not None:
        gaps.append(start - end)
      busy += stop - start
      end = stop
    elif stop > end:
      busy += stop - end
      end = stop
  return busy, gaps


def profile_summary(trace_dir: str, steps: int, top: int = 15) -> dict[str, Any]:
  """Summarises the newest `jax.profiler` trace in `trace_dir` (its perfetto_trace.json.gz) that
  covered `steps` train steps: per process (a device, or the host on CPUs) holding XLA op events."""
  paths = sorted(
    glob.glob(os.path.join(trace_dir, "plugins", "profile", "*", "perfetto_trace.json.gz"))
  )
  if not paths:
    raise FileNotFoundError(
      f"{trace_dir}: no plugins/profile/*/perfetto_trace.json.gz; was it written by "
      "jax.profiler.trace(..., create_perfetto_trace=True)?"
    )
  with gzip.open(paths[-1]) as f:
    trace = json.load(f)
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  names = {
    e["pid"]: e["args"]["name"]
    for e in events
    if e.get("ph") == "M" and e.get("name") == "process_name"
  }
  threads = {
    (e["pid"], e["tid"]): e["args"]["name"]
    for e in events
    if e.get("ph") == "M" and e.get("name") == "thread_name"
  }
  ops = collections.defaultdict(list)  # pid -> XLA op events (kernels on a GPU)
  for e in events:
    if e.get("ph") == "X" and "dur" in e and "hlo_op" in (e.get("args") or {}):
      ops[e["pid"]].append(e)
  summary = {"trace": paths[-1], "steps": steps, "devices": {}}
  for pid, evs in ops.items():
    name = names.get(pid, str(pid))
    main_tid = collections.Counter(e["tid"] for e in evs).most_common(1)[0][0]
    # A device's ops are counted on one line (its busiest stream: the kernels, not also the "XLA Ops"
    # line that echoes them); a CPU's run on a pool of threads and are all counted.
    main = [e for e in evs if e["tid"] == main_tid] if name.startswith("/device:") else evs
    busy_us, gaps = _union([(e["ts"], e["ts"] + e["dur"]) for e in evs])
    span_us = max(e["ts"] + e["dur"] for e in evs) - min(e["ts"] for e in evs)
    totals, counts = collections.Counter(), collections.Counter()
    for e in main:
      totals[e["args"]["hlo_op"]] += e["dur"]
      counts[e["args"]["hlo_op"]] += 1
    main_us = sum(totals.values())
    summary["devices"][name] = {
      "busy_s": busy_us / 1e6,
      "span_s": span_us / 1e6,
      "busy_fraction": busy_us / span_us if span_us else 1.0,
      "ops_per_step": len(main) / steps,
      "median_gap_us": statistics.median(gaps) if gaps else 0.0,
      "op_thread": threads.get((pid, main_tid), str(main_tid))
      if name.startswith("/device:")
      else "all",
      "top_ops": [
        {
          "hlo_op": n,
          "total_ms": t / 1e3,
          "count": counts[n],
          "share": t / main_us if main_us else 0.0,
        }
        for n, t in totals.most_common(top)
      ],
    }
  return summary


def peak_memory() -> tuple[int, str]:
  """(bytes, "device") from the devices' allocator statistics, else (bytes, "host_rss")."""
  peaks = [(d.memory_stats() or {}).get("peak_bytes_in_use") for d in jax.local_devices()]
  if any(p is not None for p in peaks):
    return max(p for p in peaks if p is not None), "device"
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "host_rss"  # Linux reports KiB


def bench_torch(
  model: str,
  batch: int,
  image_size: int,
  channels: int,
  num_classes: int,
  dtype: str,
  steps: int,
  compile_model: bool = False,
) -> dict[str, Any]:
  """torchvision's `model` trained with Adam on one synthetic batch, on the device JAX uses.

  Raises LookupError (torch or the model missing) with a message saying what is missing.
  """
  try:
    import torch  # pylint: disable=g-import-not-at-top
    import torchvision  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise LookupError(f"--compare-torch needs torch and torchvision ({e})") from None
  name = TORCHVISION_EQUIVALENTS.get(model, model)
  if name not in torchvision.models.list_models():
    raise LookupError(
      f"torchvision has no model {name!r} to compare with {model!r} "
      "(add it to scripts.bench.TORCHVISION_EQUIVALENTS)"
    )
  device = "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"
  net = torchvision.models.get_model(name, num_classes=num_classes).to(device).train()
  net = net.to(memory_format=torch.channels_last)  # NHWC, as the JAX step
  optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
  step_net = torch.compile(net) if compile_model else net
  images = torch.rand(batch, channels, image_size, image_size, device=device).to(
    memory_format=torch.channels_last
  )
  labels = torch.randint(0, num_classes, (batch,), device=device)
  autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=dtype == "bfloat16")
  sync = torch.cuda.synchronize if device == "cuda" else lambda: None

  def train_step():
    optimizer.zero_grad(set_to_none=True)
    with autocast:
      loss = torch.nn.functional.cross_entropy(step_net(images), labels)
    loss.backward()
    optimizer.step()
    return loss

  t0 = time.perf_counter()
  train_step()  # warm-up, and the compilation with --torch-compile
  sync()
  warmup_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  for _ in range(steps):
    loss = train_step()
  sync()
  wall_s = time.perf_counter() - t0
  return {
    "model": name,
    "device": device,
    "mode": "compiled" if compile_model else "eager",
    "torch_version": torch.__version__,
    "first_step_s": warmup_s,
    "timed_steps": steps,
    "steps_per_s": steps / wall_s,
    "images_per_s": steps * batch / wall_s,
    "final_loss": float(loss.detach()),
  }


def describe(result: dict[str, Any]) -> str:
  """One readable line of a `bench` result."""
  r = result
  line = (
    f"{r['model']} batch {r['batch']} {r['image_size']}x{r['image_size']}x{r['channels']} {r['dtype']} "
    f"on {r['backend']} ({r['device_count']} x {r['device_kind']}): {r['images_per_s']:,.1f} images/s "
    f"({r['steps_per_s']:.2f} steps/s), compile {r['compile_s']:.2f} s, "
    f"peak {r['peak_memory_kind']} {r['peak_memory_bytes'] / 2**20:,.0f} MiB"
  )
  torch_result = r.get("torch")
  if torch_result and "images_per_s" in torch_result:
    line += (
      f"; torchvision {torch_result['model']} ({torch_result['mode']}, {torch_result['device']}): "
      f"{torch_result['images_per_s']:,.1f} images/s, JAX/torch = {r['jax_over_torch']:.2f}"
    )
  elif torch_result:
    line += f"; torch comparison skipped: {torch_result['skipped']}"
  return line


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(
    prog="python -m scripts.bench", description=__doc__.split("\n")[0]
  )
  parser.add_argument("model", help="a registered model name")
  parser.add_argument("--batch", type=int, required=True, help="global batch size")
  parser.add_argument("--image-size", type=int, default=32)
  parser.add_argument("--channels", type=int, default=3)
  parser.add_argument("--num-classes", type=int, default=10)
  parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
  parser.add_argument(
    "--steps-per-call",
    type=int,
    default=None,
    help="train steps scanned in one jitted call (default: 10, or 1 on CPUs as the loop does)",
  )
  parser.add_argument(
    "--steps", type=int, default=50, help="timed steps, rounded up to whole calls"
  )
  parser.add_argument(
    "--kw",
    action="append",
    default=[],
    metavar="KEY=VALUE",
    help="a model argument, as config.model.KEY would set it (repeatable)",
  )
  parser.add_argument(
    "--json", metavar="PATH", help="also write the result as JSON to PATH ('-': stdout)"
  )
  parser.add_argument(
    "--profile",
    metavar="DIR",
    help="also trace two calls into DIR and summarise where the time went",
  )
  parser.add_argument(
    "--compare-torch", action="store_true", help="also time torchvision's model of the same name"
  )
  parser.add_argument(
    "--torch-compile", action="store_true", help="with --compare-torch: torch.compile the model"
  )
  args = parser.parse_args(argv)
  try:
    result = bench(
      args.model,
      args.batch,
      args.image_size,
      args.channels,
      args.num_classes,
      args.dtype,
      args.steps_per_call,
      args.steps,
      parse_kwargs(args.kw),
      args.profile,
    )
  except (
    KeyError,
    ValueError,
    TypeError,
  ) as e:  # unknown model, bad settings, unknown model argument
    parser.exit(2, f"error: {e}\n")
  if args.compare_torch:
    try:
      result["torch"] = bench_torch(
        args.model,
        args.batch,
        args.image_size,
        args.channels,
        args.num_classes,
        args.dtype,
        result["timed_steps"],
        args.torch_compile,
      )
      result["jax_over_torch"] = result["images_per_s"] / result["torch"]["images_per_s"]
    except LookupError as e:
      result["torch"] = {"skipped": str(e)}
  # With --json -, stdout is the JSON alone and the readable lines go to stderr.
  out = sys.stderr if args.json == "-" else sys.stdout
  print(describe(result), file=out)
  for device, p in result.get("profile", {}).get("devices", {}).items():
    print(
      f"profile {device}: busy {100 * p['busy_fraction']:.0f}% of {p['span_s'] * 1e3:.1f} ms, "
      f"{p['ops_per_step']:.0f} ops per step, median gap {p['median_gap_us']:.1f} us; top: "
      + ", ".join(f"{o['hlo_op']} {100 * o['share']:.0f}%" for o in p["top_ops"][:5]),
      file=out,
    )
  if args.json:
    text = json.dumps(result, indent=1)
    if args.json == "-":
      print(text)
    else:
      with open(args.json, "w") as f:
        f.write(text + "\n")
  return result


if __name__ == "__main__":
  main()
