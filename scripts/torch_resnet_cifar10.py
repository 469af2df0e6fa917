"""He et al.'s CIFAR ResNet trained in plain PyTorch on exactly the data our pipeline reads: the
reference that tells whether experiments.resnet_cifar10's gap to the paper (ResNet-20: 12.48%
test error against 8.75%) comes from this JPEG copy of CIFAR-10 or from our code.

    python -m scripts.torch_resnet_cifar10 --workdir runs/torch_resnet20
    python -m scripts.torch_resnet_cifar10 --workdir /tmp/t --variant smoke --steps 20   # a CPU check

Data and recipe are configs/resnet_cifar10.py's, read through the project's own code
(`--variant` and `--config.<key>=<value>` as for the experiment): the uint8 images and labels
come from `vision_jax.data.pipeline.get_splits(config.data)`, and the recipe from config.optim
and config.train (SGD 0.1, momentum 0.9, weight decay 1e-4 on every parameter, batch 128, /10
at 32k and 48k steps, 64k steps, pad-4 crop and flip, per-channel standardisation). A setting
this script does not implement (another optimizer, dropout, label smoothing, ...) is an error.

The network is the common PyTorch reimplementation's (akamaster/pytorch_resnet_cifar10, which
reports 8.27% for ResNet-20 on the original CIFAR-10): bias-free 3x3 convolutions with
BatchNorm (torch's defaults: momentum 0.1, epsilon 1e-5), option A shortcuts (subsample, then
zero channels), `kaiming_normal_` (fan-in) for convolutions and the linear layer. One
difference: the shortcut's zero channels go after the input's, as in vision_jax's CifarResNet,
not on both sides. That relabels channels of the same network (so the trained networks have the
same distribution), and it lets our resnet20's weights load one to one, which
tests/test_torch_resnet_cifar10.py uses to check the two implementations step by step.

The training split lives on the device as uint8 and every step's batch is gathered, cropped,
flipped and standardised there, so a GPU is not held up by data loading; the model runs in
channels_last, optionally under torch.compile. Batches follow our loop's scheme (a fresh
permutation of the split each epoch, the last partial batch dropped) from torch's generator:
the same distribution, not the same batches. No checkpoints: a run starts from scratch.

Writes into --workdir: metrics.jsonl (train/loss and train/accuracy averaged over every
train.log_every steps, test/* every train.eval_every steps and at the end, final_test/*),
config.json and result.json in the format of `python -m experiments.*`, with the metric, W&B as
configured (config.wandb), and a tqdm progress bar.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from typing import Any, Sequence

import ml_collections
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vision_jax import cli
from vision_jax.config import apply_overrides, experiment_rules, load_config
from vision_jax.data.pipeline import get_splits
from vision_jax.errors import ConfigError, RunError
from vision_jax.train.metric_writers import MetricWriter, Progress

EXPERIMENT = "resnet_cifar10"  # the config, data and recipe this reproduces
PAPER_ERRORS = {
  "resnet20": 8.75,
  "resnet32": 7.51,
  "resnet44": 7.17,
  "resnet56": 6.97,
  "resnet110": 6.43,
}


class BasicBlock(nn.Module):
  """Two 3x3 convolutions with BatchNorm, plus an option A shortcut (or none: a plain block)."""

  def __init__(self, in_planes: int, planes: int, stride: int, shortcut: bool):
    super().__init__()
    self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.shortcut, self.stride, self.extra = shortcut, stride, planes - in_planes

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    y = F.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    if not self.shortcut:
      return F.relu(y)
    if self.stride != 1 or self.extra:
      x = F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, 0, self.extra))
    return F.relu(y + x)


class CifarResNet(nn.Module):
  """He et al.'s 6n+2-layer CIFAR network: 16-32-64 filters, global average pool, linear layer."""

  def __init__(self, depth: int = 20, shortcut: bool = True, num_classes: int = 10):
    super().__init__()
    if (depth - 2) % 6:
      raise ValueError(f"depth must be 6n+2, got {depth}")
    n = (depth - 2) // 6
    self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(16)
    blocks, in_planes = [], 16
    for s, planes in enumerate((16, 32, 64)):
      for b in range(n):
        blocks.append(BasicBlock(in_planes, planes, 2 if s > 0 and b == 0 else 1, shortcut))
        in_planes = planes
    self.blocks = nn.Sequential(*blocks)
    self.linear = nn.Linear(64, num_classes)
    for m in self.modules():
      if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.kaiming_normal_(m.weight)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    """x: [batch, 3, height, width] standardised float -> logits [batch, num_classes]."""
    x = self.blocks(F.relu(self.bn1(self.conv1(x))))
    return self.linear(x.mean(dim=(2, 3)))


def model_for(name: str) -> CifarResNet:
  """Our registry's CIFAR names: resnet20..resnet110 and plain20..plain110."""
  for prefix, shortcut in (("resnet", True), ("plain", False)):
    if name.startswith(prefix) and name[len(prefix) :].isdigit():
      return CifarResNet(int(name[len(prefix) :]), shortcut)
  raise ConfigError(f"model.name {name!r}: this script builds resnet<depth> and plain<depth> only")


def check_supported(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError listing the settings of `config` that this script does not implement."""
  o, d, t = config.optim, config.data, config.train
  unsupported = [
    (
      o.name not in ("sgd", "momentum", "nesterov"),
      f"optim.name={o.name!r} (sgd, momentum, nesterov)",
    ),
    (
      o.get("schedule", "constant") not in ("constant", "step", "cosine"),
      f"optim.schedule={o.schedule!r}",
    ),
    (o.get("grad_clip_norm", 0.0) != 0.0, "optim.grad_clip_norm"),
    (o.get("decay_kernels_only", False), "optim.decay_kernels_only"),
    (
      bool(o.get("frozen", ())) or float(o.get("backbone_lr_scale", 1.0)) != 1.0,
      "parameter groups (optim.frozen, optim.backbone_lr_scale)",
    ),
    (t.get("frozen_batch_stats", False), "train.frozen_batch_stats"),
    (config.loss.name != "cross_entropy", f"loss.name={config.loss.name!r}"),
    (config.loss.get("label_smoothing", 0.0) != 0.0, "loss.label_smoothing"),
    (config.model.get("dropout", 0.0) != 0.0, "model.dropout"),
    (config.model.get("dtype", "float32") != "float32", f"model.dtype={config.model.dtype!r}"),
    (d.get("pad_to", 0) != 0, "data.pad_to"),
    (d.augment.get("noise_std", 0.0) != 0.0, "data.augment.noise_std"),
    (d.augment.get("brightness", 0.0) != 0.0, "data.augment.brightness"),
    (t.early_stopping.get("metric", "") != "", "train.early_stopping"),
    (config.get("init_from", "") != "", "init_from"),
  ]
  bad = [what for is_bad, what in unsupported if is_bad]
  if bad:
    raise ConfigError("scripts.torch_resnet_cifar10 does not implement: " + ", ".join(bad))


def learning_rate(step: int, optim: ml_collections.ConfigDict, total_steps: int) -> float:
  """The learning rate of update `step` (0-based), as vision_jax.train.optimizers schedules it:
  the step schedule multiplies by decay_factor from each boundary on (optax's piecewise
  constant schedule: the update at index 32000 is the first at 0.01)."""
  lr = optim.learning_rate
  schedule = optim.get("schedule", "constant")
  warmup, factor = optim.get("warmup_steps", 0), optim.get("warmup_factor", 0.0)
  if step < warmup:  # optax.join_schedules: the warm-up, then the schedule counted from its end
    if optim.get("warmup_shape", "linear") == "constant":
      return factor * lr
    return factor * lr + (1.0 - factor) * lr * step / warmup
  if schedule == "step":  # boundaries stay absolute steps
    return lr * optim.get("decay_factor", 0.1) ** sum(
      step >= b for b in optim.get("boundaries", ())
    )
  if schedule == "cosine":
    steps, t = max(1, total_steps - warmup), min(step - warmup, total_steps - warmup)
    return lr * 0.5 * (1.0 + math.cos(math.pi * t / steps))
  return lr


def make_optimizer(model: nn.Module, optim: ml_collections.ConfigDict) -> torch.optim.SGD:
  """SGD as optax's chain(add_decayed_weights(wd), sgd(lr, momentum)): weight decay on every
  parameter added to the gradient before the momentum, no dampening."""
  momentum = 0.0 if optim.name == "sgd" else optim.get("momentum", 0.9)
  return torch.optim.SGD(
    model.parameters(),
    lr=optim.learning_rate,
    momentum=momentum,
    weight_decay=optim.get("weight_decay", 0.0),
    nesterov=optim.name == "nesterov",
  )


def augment(
  images: torch.Tensor, generator: torch.Generator, padding: int, flip: bool
) -> torch.Tensor:
  """Random crops after zero padding and random horizontal flips, on the images' device.

  images: [batch, height, width, channels] uint8. Returns the same shape and dtype; as
  vision_jax.data.augment, padding is black (0) before standardisation, and every offset in
  [0, 2 * padding] and either flip is equally likely.
  """
  b, h, w, _ = images.shape
  device = images.device
  if padding:
    padded = F.pad(images, (0, 0, padding, padding, padding, padding))
    offsets = torch.randint(0, 2 * padding + 1, (b, 2), generator=generator, device=device)
    rows = (offsets[:, :1] + torch.arange(h, device=device))[:, :, None]
    cols = (offsets[:, 1:] + torch.arange(w, device=device))[:, None, :]
    images = padded[torch.arange(b, device=device)[:, None, None], rows, cols]
  if flip:
    flipped = torch.rand(b, generator=generator, device=device) < 0.5
    images = torch.where(flipped[:, None, None, None], images.flip(2), images)
  return images


def standardise(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
  """uint8 [b, h, w, c] -> float32 [b, c, h, w] in channels_last memory, (x / 255 - mean) / std."""
  x = (images.float() / 255.0 - mean) / std
  return x.permute(0, 3, 1, 2)  # NHWC storage seen as NCHW: channels_last, no copy


def evaluate(
  model: nn.Module,
  images: torch.Tensor,
  labels: torch.Tensor,
  mean: torch.Tensor,
  std: torch.Tensor,
  batch_size: int,
) -> dict[str, float]:
  """loss, accuracy and error over a whole split (BatchNorm's running statistics)."""
  model.eval()
  loss, correct = torch.zeros((), device=images.device), torch.zeros((), device=images.device)
  with torch.no_grad():
    for start in range(0, len(labels), batch_size):
      logits = model(standardise(images[start : start + batch_size], mean, std)).float()
      y = labels[start : start + batch_size]
      loss += F.cross_entropy(logits, y, reduction="sum")
      correct += (logits.argmax(1) == y).sum()
  model.train()
  n = len(labels)
  accuracy = float(correct) / n
  return {"loss": float(loss) / n, "accuracy": accuracy, "error": 1.0 - accuracy}


def hardware(device: torch.device) -> str:
  """The device in the words of vision_jax.cli.hardware: 'NVIDIA H200 x1', 'CPU (2 cores, ...)'."""
  if device.type == "cuda":
    return f"{torch.cuda.get_device_name(device)} x1"
  import jax  # pylint: disable=g-import-not-at-top

  return cli.hardware() if jax.default_backend() == "cpu" else f"CPU ({os.cpu_count()} cores)"


def train(
  config: ml_collections.ConfigDict, workdir: str, device: torch.device, compile_mode: str = "none"
) -> dict[str, Any]:
  """Trains config.model on config.data with config's recipe; returns the run's summary
  {"step", "train_wall_s", "eval": {split/metric: value}, "model": the trained module}."""
  check_supported(config)
  tc, aug = config.train, config.data.augment
  torch.manual_seed(tc.seed)
  spec, splits = get_splits(config.data)
  to_device = lambda a, dtype: torch.from_numpy(np.ascontiguousarray(a)).to(
    device=device, dtype=dtype
  )
  arrays = {
    name: splits[name].arrays() for name in [config.data.train_split, *config.data.eval_splits]
  }
  data = {
    name: (to_device(a["image"], torch.uint8), to_device(a["label"], torch.int64))
    for name, a in arrays.items()
  }
  train_images, train_labels = data[config.data.train_split]
  n, batch = len(train_labels), tc.batch_size
  if batch > n:
    raise ConfigError(f"batch size {batch} is larger than the {n} training examples")
  mean = torch.tensor(config.data.mean, device=device)
  std = torch.tensor(config.data.std, device=device)

  model = model_for(config.model.name)
  if model.linear.out_features != spec.num_classes:
    model.linear = nn.Linear(64, spec.num_classes)
    nn.init.kaiming_normal_(model.linear.weight)
  model = model.to(device=device, memory_format=torch.channels_last).train()
  optimizer = make_optimizer(model, config.optim)
  step_model = model
  if compile_mode != "none":
    # A compiler failure (say, no Triton on the machine) falls back to eager, not the run.
    torch._dynamo.config.suppress_errors = True  # pylint: disable=protected-access
    step_model = torch.compile(model, mode=None if compile_mode == "default" else compile_mode)
  if device.type == "cuda":
    torch.backends.cudnn.benchmark = (
      True  # one input shape throughout: pick the fastest kernels once
    )
  generator = torch.Generator(device=device)
  generator.manual_seed(tc.seed)

  def train_step(step: int, perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    i = step % (n // batch)
    idx = perm[i * batch : (i + 1) * batch]
    images = augment(train_images[idx], generator, aug.crop_padding, aug.flip)
    for group in optimizer.param_groups:
      group["lr"] = learning_rate(step, config.optim, tc.steps)
    logits = step_model(standardise(images, mean, std))
    loss = F.cross_entropy(logits.float(), train_labels[idx])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), (logits.argmax(1) == train_labels[idx]).sum()

  def evaluate_all() -> dict[str, float]:
    results = {}
    for name in config.data.eval_splits:
      for metric, value in evaluate(
        model, *data[name], mean, std, tc.get("eval_batch_size", 1000)
      ).items():
        results[f"{name}/{metric}"] = value
    return results

  writer = MetricWriter(workdir, config, 0)
  progress = Progress(tc.steps, 0, batch)
  sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
  loss_sum = correct_sum = torch.zeros((), device=device)
  chunk, t_train, perm = 0, 0.0, None
  try:
    t0 = time.perf_counter()
    for step in range(tc.steps):
      if step % (n // batch) == 0:
        perm = torch.randperm(n, generator=generator, device=device)
      loss, correct = train_step(step, perm)
      loss_sum, correct_sum, chunk = loss_sum + loss, correct_sum + correct, chunk + 1
      done = step + 1
      log = done % tc.log_every == 0 or done == tc.steps
      evaluate_now = (tc.eval_every and done % tc.eval_every == 0) or done == tc.steps
      if not (log or evaluate_now):
        continue
      # As our loop: train metrics averaged since the last record, then the evaluation.
      record = {
        "train/loss": float(loss_sum) / chunk,
        "train/accuracy": float(correct_sum) / (chunk * batch),
      }
      t_train += time.perf_counter() - t0
      if not math.isfinite(record["train/loss"]):
        raise FloatingPointError(
          f"non-finite train/loss in steps {done - chunk + 1}-{done}; lower the learning rate"
        )
      writer.write(done, record)
      progress.update(chunk, loss=record["train/loss"])
      loss_sum = correct_sum = torch.zeros((), device=device)
      chunk = 0
      if evaluate_now:
        writer.write(done, evaluate_all())
      progress.reset_clock()
      sync()
      t0 = time.perf_counter()
  finally:
    progress.close()
  final = evaluate_all()
  writer.write(tc.steps, {f"final_{k}": v for k, v in final.items()})
  writer.close()
  return {"step": tc.steps, "train_wall_s": t_train, "eval": final, "model": model}


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
  parser = argparse.ArgumentParser(
    prog="python -m scripts.torch_resnet_cifar10",
    description="Train configs/resnet_cifar10.py's ResNet in plain PyTorch on the same data. "
    "Override any config key with --config.<key>=<value>.",
  )
  parser.add_argument(
    "--workdir", required=True, help="where metrics.jsonl, config.json and result.json go"
  )
  parser.add_argument(
    "--variant",
    default=None,
    help="configs/resnet_cifar10.py's get_config(arg), e.g. 'model=resnet56'",
  )
  parser.add_argument(
    "--steps",
    type=int,
    default=None,
    help="train this many steps (config.train.steps), e.g. for a CPU check",
  )
  parser.add_argument(
    "--device", default=None, help="torch device (default: cuda when available, else cpu)"
  )
  parser.add_argument(
    "--compile",
    default=None,
    choices=("none", "default", "reduce-overhead", "max-autotune"),
    help="torch.compile mode for the model (default: 'default' on CUDA, 'none' on CPU)",
  )
  return cli.parse_config_overrides(parser, argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  argv = sys.argv[1:] if argv is None else list(argv)
  args, overrides = parse_args(argv)
  try:
    config = apply_overrides(
      load_config(EXPERIMENT, args.variant), overrides, experiment_rules(EXPERIMENT)
    )
    if args.steps is not None:
      config.train.steps = args.steps
    check_supported(config)
  except ConfigError as e:
    sys.exit(f"error: {e}")
  device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
  compile_mode = args.compile or ("default" if device.type == "cuda" else "none")
  t0 = time.perf_counter()
  try:
    summary = train(config, args.workdir, device, compile_mode)
  except RunError as e:  # the data, as for our experiments: one line, not a traceback
    sys.exit(f"error: {e}")
  test = "test" if "test" in config.data.eval_splits else config.data.eval_splits[0]
  result = {
    "experiment": "torch_resnet_cifar10",
    "paper": "He et al. 2015, Table 6 (CIFAR-10)",
    "metric": f"{test} error (%)",
    "paper_value": PAPER_ERRORS.get(config.model.name),
    "value": round(100.0 * summary["eval"][f"{test}/error"], 3),
    "steps": summary["step"],
    "wall_s": round(time.perf_counter() - t0, 1),
    "hardware": hardware(device),
    "command": "python -m scripts.torch_resnet_cifar10 " + shlex.join(argv),
    "train_wall_s": round(summary["train_wall_s"], 1),
    "eval": summary["eval"],
    "model": config.model.name,
    "framework": f"torch {torch.__version__}",
    "compile": compile_mode,
  }
  os.makedirs(args.workdir, exist_ok=True)
  path = os.path.join(args.workdir, "result.json")
  with open(path + ".tmp", "w") as f:
    json.dump(result, f, indent=2)
  os.replace(path + ".tmp", path)
  paper = f" (paper: {result['paper_value']})" if result["paper_value"] is not None else ""
  print(
    f"torch_resnet_cifar10 {config.model.name}: {result['metric']} = {result['value']:.4g}{paper} after "
    f"{result['steps']} steps in {result['wall_s']:.0f}s on {result['hardware']}; {path}"
  )
  return result


if __name__ == "__main__":
  main()
