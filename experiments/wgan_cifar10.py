"""WGAN on CIFAR-10: Arjovsky, Chintala & Bottou 2017, "Wasserstein GAN" (Algorithm 1: a critic
without sigmoid, weight clipping at 0.01, RMSprop 5e-5, 5 critic updates per generator update;
DCGAN networks). The paper's claim is qualitative: the critic's Wasserstein estimate falls as the
samples improve (Figs. 3-4). Gulrajani et al. 2017 (Table 3) report an Inception score of 6.58
for WGAN with weight clipping and DCGAN networks; that needs Inception-v3's weights, not here.

    python -m experiments.wgan_cifar10 --workdir runs/wgan_cifar10

Reported: the Fréchet distance on the features of a small CNN trained in this project on CIFAR-10
(see experiments/dcgan_cifar10.py), and train/wasserstein_estimate in metrics.jsonl.
"""

from __future__ import annotations

from experiments.dcgan_mnist import RULES, run  # noqa: F401  (RULES: config.experiment_rules)
from vision_jax import cli

if __name__ == "__main__":
  cli.main(
    "wgan_cifar10",
    run,
    paper="Arjovsky et al. 2017; Inception score 6.58 in Gulrajani et al. 2017, Table 3",
    metric="Fréchet distance, small-CNN features (not FID)",
    paper_value=None,
  )
