"""The VAE on dynamically binarised MNIST: Burda, Grosse & Salakhutdinov 2015, "Importance
weighted autoencoders", Table 1 (VAE, one stochastic layer, k = 1 training): test negative
log-likelihood 86.76 nats, estimated with the importance-weighted bound at k = 5000.
Model: Kingma & Welling 2013, "Auto-encoding variational Bayes".

    python -m experiments.vae_mnist --workdir runs/vae_mnist                       # CPU budget
    python -m experiments.vae_mnist --workdir runs/vae_mnist_paper --variant paper  # the paper's 3280 epochs
    python -m experiments.vae_mnist --workdir runs/vae_mnist_1093 \
        --variant epochs=1093,batch_size=20,test_size=0 --config.evaluation.chunk=1000   # 87.39 nats, 2-core CPU, 1.9 h

After training: -L_5000 on the test images (`--variant test_size=0` for all 10,000), the 2-D
latent space (principal components above 2 dimensions) coloured by digit, and with
`--variant latent=2` the decoder's manifold.
"""

from __future__ import annotations

import logging
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from vision_jax import cli
from vision_jax.config import bound, checked_where_used
from vision_jax.data.augment import make_preprocess
from vision_jax.data.pipeline import get_splits
from vision_jax.tasks.autoencoding import AutoencodingTask
from vision_jax.train.loop import train_and_evaluate
from vision_jax.train.metric_writers import Progress

RULES = {
  **AutoencodingTask.RULES,
  "evaluation.iw_samples": bound(1, integer=True),
  "evaluation.test_size": bound(0, integer=True),
  "evaluation.batch_size": bound(1, integer=True),
  "evaluation.chunk": bound(1, integer=True),
  "evaluation.seed": checked_where_used("any integer"),
}


def test_log_likelihood(
  task: AutoencodingTask,
  state,
  images: np.ndarray,
  num_samples: int,
  batch_size: int = 100,
  chunk: int = 500,
) -> np.ndarray:
  """-L_k (nats) of each uint8 test image [n, h, w, c] -> [n]: its importance-weighted NLL bound."""
  _, eval_fn = make_preprocess(task.config.data)

  @jax.jit
  def bound(params, raw):
    x, keys = task.eval_targets(eval_fn({"image": raw})["image"])
    return -task.importance_weighted_bound(params, x, keys, num_samples, chunk)

  out, total = [], 0.0
  progress = Progress(-(-len(images) // batch_size), 0, batch_size, desc=f"test -L_{num_samples}")
  for start in range(0, len(images), batch_size):
    batch = images[start : start + batch_size]
    pad = batch_size - len(batch)  # one compiled shape: pad the last batch, drop its padding
    padded = np.concatenate([batch, np.repeat(batch[:1], pad, 0)]) if pad else batch
    out.append(np.asarray(jax.device_get(bound(state.params, jnp.asarray(padded))))[: len(batch)])
    total += float(out[-1].sum())
    progress.update(1, nll=total / (start + len(batch)))
  progress.close()
  return np.concatenate(out)


def run(config, workdir: str) -> dict:
  summary = train_and_evaluate(config, workdir, AutoencodingTask)
  task, state = summary["task"], summary["state"]
  ev = config.evaluation
  _, splits = get_splits(config.data)
  test = splits["test"].arrays()
  n = ev.test_size or len(test["image"])
  t0 = time.perf_counter()
  nll = test_log_likelihood(task, state, test["image"][:n], ev.iw_samples, ev.batch_size, ev.chunk)
  iw_wall = time.perf_counter() - t0
  logging.info(
    "test NLL (k=%d, %d images): %.3f nats in %.0fs", ev.iw_samples, n, nll.mean(), iw_wall
  )
  pictures = os.path.join(workdir, "pictures")
  task.latent_scatter(
    state, test["image"][:5000], test["label"][:5000], os.path.join(pictures, "latent_space.png")
  )
  if config.model.latent_dim == 2:
    task.manifold(state, os.path.join(pictures, "manifold.png"))
  return {
    "value": round(float(nll.mean()), 3),
    **cli.loop_result(config, summary),
    "nll_std_error": round(float(nll.std(ddof=1) / math.sqrt(n)), 3) if n > 1 else None,
    "iw_samples": ev.iw_samples,
    "test_images": n,
    "iw_wall_s": round(iw_wall, 1),
    "epochs": round(
      summary["step"] * config.train.batch_size / len(splits[config.data.train_split]), 2
    ),
  }


if __name__ == "__main__":
  cli.main(
    "vae_mnist",
    run,
    paper="Burda et al. 2015, Table 1 (VAE, 1 stochastic layer, k=1)",
    metric="test NLL (nats, -L_5000)",
    paper_value=86.76,
  )
