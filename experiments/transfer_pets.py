"""Transfer learning (the lecture's 전이 학습): a CIFAR-10-pretrained ResNet on three breeds of the
Oxford-IIIT Pet dataset (Parkhi et al. 2012), from scratch, as a linear probe on the frozen
backbone, and fine-tuned with a lower backbone learning rate. See configs/transfer_pets.py.

    python -m experiments.transfer_pets --workdir runs/transfer_pets
    python -m experiments.transfer_pets --workdir runs/transfer_pets_cpu --variant cpu

Without `init_from` the backbone is first pretrained on CIFAR-10 in workdir/pretrain_cifar10
(configs/resnet_cifar10.py's recipe at `pretrain.steps`; resumable, skipped once finished).
Each arm is its own run in workdir/<arm> (with `seeds` > 1, one run per seed in workdir/<arm>/seed<i>,
reported as mean and standard deviation); table.md and test_accuracy.png compare them.
"""

from __future__ import annotations

import copy
import logging
import os

import jax
import ml_collections
import numpy as np

from configs import resnet_cifar10
from vision_jax import cli, plotting
from vision_jax.config import bound, check_config
from vision_jax.data.pipeline import check_batch, get_splits
from vision_jax.data.sources import get_source
from vision_jax.errors import ConfigError
from vision_jax.models.registry import get_model, model_label
from vision_jax.models.resnet import CifarResNet
from vision_jax.tasks import ClassificationTask
from vision_jax.train.checkpoint import CheckpointStore, load_variables
from vision_jax.train.loop import train_and_evaluate
from vision_jax.train.mesh import make_mesh
from vision_jax.train.metric_writers import read_metrics
from vision_jax.train.optimizers import parameter_groups

ARMS = {  # arm -> (starts from the pretrained backbone, backbone learning rate scale or None = config's)
  "scratch": (False, 1.0),
  "linear_probe": (True, 0.0),
  "finetune": (True, None),
}
ARM_NAMES = {
  "scratch": "from scratch",
  "linear_probe": "linear probe (frozen backbone)",
  "finetune": "fine-tuned (lower backbone rate)",
}


RULES = {
  **ClassificationTask.RULES,
  "finetune_backbone_lr_scale": bound(0),
  "seeds": bound(1, integer=True),
  "pretrain.steps": bound(1, integer=True),
  "pretrain.batch_size": bound(1, integer=True),
  "pretrain.validation_size": bound(0, integer=True),
}


def pretrain_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """configs/resnet_cifar10.py's recipe for `config.model` at `config.pretrain.steps` steps."""
  variant = config.pretrain.get("variant", "")
  c = resnet_cifar10.get_config(f"model={config.model.name}" + (f",{variant}" if variant else ""))
  steps = config.pretrain.steps
  c.name = f"{config.name}/pretrain_cifar10"
  c.model = copy.deepcopy(config.model)  # exactly the arms' network (depth, dtype, dropout)
  c.optim.boundaries = (steps // 2, steps * 3 // 4) if steps >= 4 else ()
  c.train.steps = steps
  c.train.batch_size = config.pretrain.batch_size
  c.train.scan_steps = config.train.scan_steps
  c.train.log_every = min(c.train.log_every, steps)
  c.train.eval_every = steps  # once, at the end
  c.train.checkpoint_every = min(c.train.checkpoint_every, steps)
  if config.pretrain.get(
    "validation_size", 0
  ):  # evaluate on held-out training images instead of the test set
    c.data.validation_size = config.pretrain.validation_size
    c.data.eval_splits = ("validation",)
  c.wandb = copy.deepcopy(config.wandb)
  c.wandb.name = "pretrain_cifar10"
  return c


def _pretrained(config: ml_collections.ConfigDict, workdir: str) -> bool:
  """Whether `workdir` holds a pretraining that reached `pretrain.steps`."""
  store = CheckpointStore(workdir)
  done = store.latest_step()
  store.close()
  return done is not None and done >= config.pretrain.steps


def pretrain(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Pretrains in `workdir` unless a finished run is there; returns its steps and eval error."""
  c = pretrain_config(config)
  if _pretrained(config, workdir):
    logging.info("pretraining in %s finished; not running it again", workdir)
  else:
    train_and_evaluate(c, workdir, ClassificationTask)
  split = c.data.eval_splits[0]
  evals = [r for r in read_metrics(workdir) if f"{split}/error" in r]
  return {
    "steps": c.train.steps,
    "split": split,
    "error": 100 * evals[-1][f"{split}/error"] if evals else None,
  }


def arm_config(
  config: ml_collections.ConfigDict, arm: str, init_from: str, seed_index: int = 0
) -> ml_collections.ConfigDict:
  """The run of `arm` with the `seed_index`-th seed (train.seed + seed_index)."""
  pretrained, scale = ARMS[arm]
  c = copy.deepcopy(config)
  c.name = f"{config.name}/{arm}"
  c.wandb.name = arm if config.seeds == 1 else f"{arm}/seed{seed_index}"
  c.init_from = init_from if pretrained else ""
  c.optim.backbone_lr_scale = config.finetune_backbone_lr_scale if scale is None else scale
  c.train.frozen_batch_stats = arm == "linear_probe"
  c.train.seed = config.train.seed + seed_index
  return c


def arm_workdir(config: ml_collections.ConfigDict, workdir: str, arm: str, seed_index: int) -> str:
  """workdir/<arm>, or workdir/<arm>/seed<i> when each arm runs with several seeds."""
  return (
    os.path.join(workdir, arm)
    if config.seeds == 1
    else os.path.join(workdir, arm, f"seed{seed_index}")
  )


def check_before_training(config: ml_collections.ConfigDict, pretrain_workdir: str = "") -> None:
  """Checks every setting and dataset the runs will use, preparing the datasets, before the first
  of them trains: the arms' (pets) first, then CIFAR-10 if a pretraining in `pretrain_workdir` is
  still to run, so that a wrong pets path, a truncated archive or a bad format option ends the
  experiment at once, not after pretraining. Given pretrained variables (`init_from`) must read."""
  mesh = make_mesh()

  def check(c: ml_collections.ConfigDict) -> None:
    ClassificationTask.check_settings(c)
    _, splits = get_splits(c.data)
    check_batch(c.train.batch_size, len(splits[c.data.train_split]), mesh)

  for arm in config.arms[:1]:  # the arms differ in neither dataset nor batch
    check(arm_config(config, arm, config.init_from))
  if pretrain_workdir and not _pretrained(config, pretrain_workdir):
    check(pretrain_config(config))
  if config.init_from:
    load_variables(config.init_from)


def _mean_std(values: list[float]) -> tuple[float, float]:
  return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def run(config, workdir: str) -> dict:
  unknown = sorted(set(config.arms) - set(ARMS))
  if unknown:
    raise ConfigError(f"arms: unknown {unknown}; valid: {', '.join(ARMS)}")
  check_config(
    config, RULES
  )  # seeds and pretrain.* too, when run is called with a config built in code
  init_from, pretrained = config.init_from, None
  pretraining = not init_from and any(ARMS[a][0] for a in config.arms)
  if pretraining:
    if not isinstance(get_model(config.model.name, num_classes=10), CifarResNet):
      raise ConfigError(
        f"pretraining on CIFAR-10 is for the CIFAR ResNets (resnet20 ... resnet110), not "
        f"{config.model.name!r}; give pretrained variables with --config.init_from=DIR "
        f"(e.g. from python -m scripts.import_torchvision {config.model.name} <file>.pth DIR)"
      )
    init_from = os.path.join(workdir, "pretrain_cifar10")
  check_before_training(config, init_from if pretraining else "")
  if pretraining:
    pretrained = pretrain(config, init_from)
  rows, steps, class_names = {}, 0, ()
  for arm in config.arms:
    accuracies = []
    for i in range(config.seeds):
      c = arm_config(config, arm, init_from, i)
      summary = train_and_evaluate(c, arm_workdir(config, workdir, arm, i), ClassificationTask)
      accuracies.append(100 * summary["eval"]["test/accuracy"])
      steps += summary["step"]
    labels = jax.tree.leaves(parameter_groups(c.optim, summary["state"].params))
    sizes = [int(np.prod(p.shape)) for p in jax.tree.leaves(summary["state"].params)]
    mean, std = _mean_std(accuracies)
    rows[arm] = {
      "trained_params": sum(n for n, g in zip(sizes, labels) if g != "frozen"),
      "params": sum(sizes),
      "backbone_lr_scale": c.optim.backbone_lr_scale,
      "init": "pretrained" if c.init_from else "random",
      "test_accuracy": mean,
      "test_error": 100 - mean,
      "test_accuracy_std": std,
      "seed_test_accuracies": accuracies,
    }
    class_names = summary["task"].spec.class_names
  options = config.data.format_options
  seeds = config.seeds
  # Named by its origin: a `prepared:` copy carried to another machine is still the pets subset.
  dataset = get_source(config.data.dataset, **options.to_dict()).origin.split(":", 1)[-1]
  lines = [
    f"{model_label(config.model)} on {os.path.basename(dataset.rstrip('/'))} ({options.image_size}x{options.image_size}), "
    f"{config.train.steps} steps per arm at batch {config.train.batch_size}"
    + (
      f", {seeds} seeds per arm (train.seed {config.train.seed} to {config.train.seed + seeds - 1}: the "
      "head's or scratch network's initialisation, batch order and augmentation; one pretrained backbone)"
      if seeds > 1
      else ""
    )
    + "; backbone from "
    + (
      f"CIFAR-10 pretraining ({pretrained['steps']} steps, {pretrained['split']} error {pretrained['error']:.2f}%)"
      if pretrained and pretrained["error"] is not None
      else f"`{init_from}`"
    ),
    "",
    "| arm | starts from | backbone learning rate | trained parameters | test accuracy (%) | test error (%) |"
    + (" per seed (%) |" if seeds > 1 else ""),
    "|---|---|---:|---:|---:|---:|" + ("---|" if seeds > 1 else ""),
  ]
  for arm, r in rows.items():
    rate = "frozen" if r["backbone_lr_scale"] == 0 else f"{r['backbone_lr_scale']:g} x head"
    accuracy = f"{r['test_accuracy']:.2f}" + (
      f" ± {r['test_accuracy_std']:.2f}" if seeds > 1 else ""
    )
    lines.append(
      f"| {ARM_NAMES[arm]} | {r['init']} | {rate} | {r['trained_params']:,} of {r['params']:,} | "
      f"{accuracy} | {r['test_error']:.2f} |"
      + (" " + ", ".join(f"{a:.2f}" for a in r["seed_test_accuracies"]) + " |" if seeds > 1 else "")
    )
  if seeds > 1:
    lines += ["", f"mean ± sample standard deviation over the {seeds} seeds"]
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "table.md"), "w") as f:
      f.write("\n".join(lines) + "\n")
    plotting.bar_chart(
      [ARM_NAMES[a] for a in rows],
      [r["test_accuracy"] for r in rows.values()],
      os.path.join(workdir, "test_accuracy.png"),
      ylabel="test accuracy (%)",
      title=f"{model_label(config.model)} on {len(class_names)} pet breeds (chance {100 / len(class_names):.1f}%)",
      samples=[r["seed_test_accuracies"] for r in rows.values()] if seeds > 1 else None,
    )
  print("\n".join(lines))
  main = "finetune" if "finetune" in rows else next(iter(rows))
  out = {
    "metric": f"{'fine-tuned' if main == 'finetune' else ARM_NAMES[main]} test error on "
    f"{len(class_names)} pet breeds (%)" + (f", mean of {seeds} seeds" if seeds > 1 else "")
  }
  return {
    **out,
    "value": round(rows[main]["test_error"], 2),
    "arm": main,
    "steps": steps,
    "seeds": seeds,
    "pretrain": pretrained or {"init_from": init_from},
    "table": {arm: {k: _rounded(v) for k, v in r.items()} for arm, r in rows.items()},
  }


def _rounded(value):
  if isinstance(value, list):
    return [_rounded(v) for v in value]
  return round(value, 3) if isinstance(value, float) else value


if __name__ == "__main__":
  cli.main(
    "transfer_pets",
    run,
    paper="the lecture's transfer learning (Oxford-IIIT Pet, Parkhi et al. 2012)",
    metric="fine-tuned test error on 3 pet breeds (%)",
    paper_value=None,
  )
