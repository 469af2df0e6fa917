"""DCGAN on CIFAR-10: Radford, Metz & Chintala 2015 (Adam 2e-4, beta1 0.5; BatchNorm in both
networks). The paper evaluates CIFAR-10 through discriminator features for classification, not a
sample-quality number.

    python -m experiments.dcgan_cifar10 --workdir runs/dcgan_cifar10

Reported: the Fréchet distance between the features (84-d) of a small CNN trained in this project
on CIFAR-10 (LeNet-5's layout, 3 channels, full C3; trained on first use) for the test images and
as many generated ones, and the Inception-style score; not comparable with papers' FID or
Inception scores (no Inception-v3 weights offline). The CIFAR-10 copy here is JPEG re-encoded
(see the datasets README).
"""

from __future__ import annotations

from experiments.dcgan_mnist import RULES, run  # noqa: F401  (RULES: config.experiment_rules)
from vision_jax import cli

if __name__ == "__main__":
  cli.main(
    "dcgan_cifar10",
    run,
    paper="Radford et al. 2015 (no CIFAR-10 sample-quality number)",
    metric="Fréchet distance, small-CNN features (not FID)",
    paper_value=None,
  )
