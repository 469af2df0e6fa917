"""Does the critic's loss say how good the samples are? DCGAN (Radford et al. 2015), WGAN
(Arjovsky et al. 2017) and WGAN-GP (Gulrajani et al. 2017) with the same networks and budget.

Arjovsky et al. (Section 4.2, Figs. 3-4) and Gulrajani et al. (Section 5.3) argue that the
Wasserstein critic's estimate falls as sample quality improves, while the Jensen-Shannon-based
discriminator loss of a standard GAN does not track it. Here each method's own training signal
(DCGAN: the discriminator's cross-entropy; WGAN and WGAN-GP: the estimate mean D(x) - mean D(G(z)))
is plotted against the Fréchet distance of a classifier trained in this project (not FID; see
vision_jax/metrics/sample_quality.py), at every evaluation, and their Spearman rank correlation is
reported. A positive correlation means the loss falls when the samples get better.

    python -m experiments.gan_stability --workdir runs/gan_stability [--variant mnist]

Files: <workdir>/<method>/ (each run), loss_vs_quality.png, result.json.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import scipy.stats

from configs.gan_base import gan_config
from experiments.dcgan_mnist import run as run_gan
from vision_jax import cli, plotting
from vision_jax.config import bound
from vision_jax.tasks import GANTask
from vision_jax.train.feature_classifier import ensure_feature_classifier
from vision_jax.train.metric_writers import read_metrics

# Each method's training signal: what its critic minimises, as the loop logs it.
SIGNALS = {
  "dcgan": "train/loss",
  "wgan": "train/wasserstein_estimate",
  "wgan_gp": "train/wasserstein_estimate",
}


def method_config(config, method: str):
  """The config of one method: its paper's loss and optimizer, the shared networks and budget."""
  c = gan_config(method, "mnist")
  c.name = f"gan_stability_{method}"
  c.data = copy.deepcopy(config.data)
  c.gan.classifier = copy.deepcopy(config.gan.classifier)
  c.gan.latent_dim = config.gan.latent_dim
  c.model = copy.deepcopy(config.model)
  c.model.critic.norm = config.stability.critic_norm
  for key in (
    "steps",
    "log_every",
    "eval_every",
    "visuals_every",
    "checkpoint_every",
    "eval_batch_size",
    "seed",
  ):
    c.train[key] = config.train[key]
  c.train.batch_size = config.stability.images_per_update * c.gan.n_critic
  c.wandb = copy.deepcopy(config.wandb)
  c.wandb.group = config.name
  return c


RULES = {**GANTask.RULES, "stability.images_per_update": bound(1, integer=True)}


def run(config, workdir: str) -> dict:
  fc = config.gan.classifier
  if fc.config and not fc.directory:
    fc.directory = ensure_feature_classifier(fc.config, fc.steps, tuple(fc.overrides))
  split = config.data.eval_splits[0]
  quality = f"{split}/frechet_distance" if fc.directory else f"{split}/loss"
  by_method, curves = {}, {}
  for method in config.stability.methods:
    out = run_gan(method_config(config, method), os.path.join(workdir, method))
    records = read_metrics(os.path.join(workdir, method))
    signal = {r["step"]: r[SIGNALS[method]] for r in records if SIGNALS[method] in r}
    evals = {r["step"]: r[quality] for r in records if quality in r}
    steps = sorted(set(signal) & set(evals))
    xs, ys = [signal[s] for s in steps], [evals[s] for s in steps]
    # Needs at least 3 evaluations, and a signal that varies; None otherwise (JSON has no NaN).
    rho = float(scipy.stats.spearmanr(xs, ys)[0]) if len(steps) > 2 else float("nan")
    rho = None if not np.isfinite(rho) else round(rho, 3)
    curves[method] = (steps, xs, ys)
    by_method[method] = {
      "final": out["value"],
      "signal": SIGNALS[method],
      "spearman_signal_vs_quality": rho,
      "train_wall_s": out["train_wall_s"],
      "steps": out["steps"],
    }

  path = os.path.join(workdir, "loss_vs_quality.png")
  plotting.twin_axis_panels(
    {m: curves[m] for m in curves},
    path,
    left_label="training signal",
    right_label=quality.split("/")[1],
    titles={
      m: f"{m}: {SIGNALS[m].split('/')[1]} (rho={by_method[m]['spearman_signal_vs_quality']})"
      for m in curves
    },
  )
  last = config.stability.methods[-1]
  return {
    "value": by_method[last]["spearman_signal_vs_quality"],
    "steps": sum(v["steps"] for v in by_method.values()),
    "quality_metric": quality,
    "by_method": by_method,
  }


if __name__ == "__main__":
  cli.main(
    "gan_stability",
    run,
    paper="Arjovsky et al. 2017 Figs. 3-4; Gulrajani et al. 2017 Section 5.3",
    metric="Spearman rho, WGAN-GP Wasserstein estimate vs Fréchet distance",
    paper_value=None,
  )
