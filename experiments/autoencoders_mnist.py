"""AE, denoising AE (Vincent, Larochelle, Bengio & Manzagol 2008, "Extracting and composing
robust features with denoising autoencoders"), sparse AE and VAE (Kingma & Welling 2013) on
MNIST at the same latent size: which representation is most useful to a linear classifier?

    python -m experiments.autoencoders_mnist --workdir runs/autoencoders_mnist

No paper number: the lecture claims that the DAE and the SAE extract more valuable
representations than the plain AE. Writes DIR/table.md (one row per model), DIR/probe.png, and
each model's run (metrics, pictures, latent space) under DIR/<kind>/; with one kind
(`--variant kinds=dae`, as the sweeps run) the run is DIR itself. result.json's "eval" holds the
final test metrics and "test/probe_accuracy", prefixed "<kind>/" when there are several kinds, so
`python -m scripts.report <sweep dir> --metric test/probe_accuracy` compares a sweep's points.
"""

from __future__ import annotations

import os
import time

import numpy as np

from configs.autoencoders_mnist import kind_config, kinds_of
from vision_jax import cli, plotting
from vision_jax.config import bound, checked_where_used
from vision_jax.data.pipeline import get_splits
from vision_jax.metrics.linear_probe import linear_probe_accuracy
from vision_jax.tasks.autoencoding import AutoencodingTask
from vision_jax.train.loop import train_and_evaluate

COLUMNS = ("reconstruction_mse", "noisy_reconstruction_mse", "code_sparsity", "code_mean_abs")


RULES = {
  **AutoencodingTask.RULES,
  "compare.probe_train_size": bound(1, integer=True),
  **{
    f"compare.{k}": checked_where_used(
      "vision_jax/tasks/autoencoding.py, as the autoencoder.* of its arm"
    )
    for k in ("dae_noise_level", "sae_sparsity_target", "sae_sparsity_weight")
  },
}


def run(config, workdir: str) -> dict:
  _, splits = get_splits(config.data)
  train, test = splits[config.data.train_split], splits["test"]
  probe_train = train.read(np.arange(min(len(train), config.compare.probe_train_size)))
  test_arrays = test.arrays()
  rows, evals, steps = {}, {}, 0
  kinds = kinds_of(config)
  for kind in kinds:
    kc = kind_config(config, kind)
    directory = os.path.join(workdir, kind) if len(kinds) > 1 else workdir
    summary = train_and_evaluate(kc, directory, AutoencodingTask)
    task, state = summary["task"], summary["state"]
    t0 = time.perf_counter()
    accuracy = linear_probe_accuracy(
      task.codes(state, probe_train["image"]),
      probe_train["label"],
      task.codes(state, test_arrays["image"]),
      test_arrays["label"],
    )
    task.latent_scatter(
      state,
      test_arrays["image"][:5000],
      test_arrays["label"][:5000],
      os.path.join(directory, "pictures", "latent_space.png"),
    )
    rows[kind] = {
      "model": kc.model.name,
      **{k: summary["eval"][f"test/{k}"] for k in COLUMNS},
      "probe_accuracy": accuracy,
      "train_wall_s": round(summary["train_wall_s"], 1),
      "probe_wall_s": round(time.perf_counter() - t0, 1),
    }
    prefix = f"{kind}/" if len(kinds) > 1 else ""
    evals.update({f"{prefix}{k}": v for k, v in summary["eval"].items()})
    evals[f"{prefix}test/probe_accuracy"] = accuracy
    steps = summary["step"]
  write_table(rows, config, os.path.join(workdir, "table.md"))
  plotting.bar_chart(
    list(rows),
    [100 * r["probe_accuracy"] for r in rows.values()],
    os.path.join(workdir, "probe.png"),
    ylabel="linear-probe test accuracy (%)",
    title=f"codes of {config.model.latent_dim} units",
  )
  first = next(iter(rows.values()))
  return {
    "value": round(100 * first["probe_accuracy"], 2),
    "steps": steps,
    "eval": evals,
    "table": rows,
    "train_wall_s": round(sum(r["train_wall_s"] for r in rows.values()), 1),
  }


def write_table(rows: dict, config, path: str) -> str:
  c = config.compare
  lines = [
    f"Latent size {config.model.latent_dim}, {config.train.steps} steps of {config.train.batch_size}; "
    f"DAE: {c.dae_corruption} {c.dae_noise_level:g}; SAE: weight {c.sae_sparsity_weight:g}, "
    f"target {c.sae_sparsity_target:g}; noisy test: Gaussian {config.autoencoder.eval_noise_std:g}; "
    f"probe: logistic regression on {c.probe_train_size} training codes.",
    "",
    "| kind | model | clean recon. MSE | noisy recon. MSE | code sparsity (Hoyer) | mean abs code | linear probe acc. (%) |",
    "|---|---|---|---|---|---|---|",
  ]
  for kind, r in rows.items():
    lines.append(
      f"| {kind} | {r['model']} | {r['reconstruction_mse']:.4f} | {r['noisy_reconstruction_mse']:.4f} | "
      f"{r['code_sparsity']:.3f} | {r['code_mean_abs']:.3f} | {100 * r['probe_accuracy']:.2f} |"
    )
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))
  return path


if __name__ == "__main__":
  cli.main(
    "autoencoders_mnist",
    run,
    paper="the lecture's claim (DAE and SAE codes beat the AE's)",
    metric="linear-probe test accuracy (%) of the first model in compare.kinds",
    paper_value=None,
  )
