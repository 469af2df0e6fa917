"""DCGAN on MNIST: Radford, Metz & Chintala 2015, "Unsupervised representation learning with deep
convolutional generative adversarial networks" (strided convolutions, BatchNorm, ReLU/LeakyReLU,
tanh; Adam 2e-4, beta1 0.5). The paper shows MNIST samples but reports no MNIST number.

    python -m experiments.dcgan_mnist --workdir runs/dcgan_mnist

Reported: the Fréchet distance between LeNet-5 features (84-d, F6) of the 10,000 test digits and
of 10,000 generated digits, and the Inception-style score of both, with a LeNet-5 trained in this
project (trained on first use, cached under $VISION_JAX_CACHE/feature_classifiers). These are not
FID or Inception-score numbers comparable with papers: those need Inception-v3's ImageNet weights
(see vision_jax/metrics/sample_quality.py). Pictures: pictures/step*_samples.png at every
evaluation, pictures/final_interpolation.png (latent walks) and pictures/real.png.
"""

from __future__ import annotations

from vision_jax import cli
from vision_jax.tasks import GANTask
from vision_jax.train.feature_classifier import ensure_feature_classifier
from vision_jax.train.loop import train_and_evaluate

RULES = GANTask.RULES  # the bounds of this experiment's settings: its task's


def run(config, workdir: str) -> dict:
  """Trains the GAN of `config` (after its feature classifier, if one is configured and missing)."""
  fc = config.gan.classifier
  if fc.config and not fc.directory:
    fc.directory = ensure_feature_classifier(fc.config, fc.steps, tuple(fc.overrides))
  summary = train_and_evaluate(config, workdir, GANTask)
  task = summary["task"]
  split = config.data.eval_splits[0]
  out = {
    "value": round(summary["eval"][f"{split}/{task.primary_metric}"], 4),
    **cli.loop_result(config, summary),
  }
  if (
    task.classifier is None
  ):  # no Fréchet distance without features: the value is the critic's loss
    out["metric"] = f"{split} critic loss (no feature classifier configured)"
  else:
    out["feature_classifier"] = {
      k: task.classifier.info[k] for k in ("config", "steps", "test_error", "dataset")
    }
    if (
      task.classifier.info["model"]["name"] == "inception_v3_fid"
    ):  # imported FID weights: the standard numbers
      out["metric"] = "FID (Inception-v3, the FID weights)"
  return out


if __name__ == "__main__":
  cli.main(
    "dcgan_mnist",
    run,
    paper="Radford et al. 2015 (MNIST samples only; no number)",
    metric="Fréchet distance, LeNet-5 features (not FID)",
    paper_value=None,
  )
