"""WGAN-GP on CIFAR-10: Gulrajani, Ahmed, Arjovsky, Dumoulin & Courville 2017, "Improved training
of Wasserstein GANs" (Algorithm 1: gradient penalty lambda = 10 on random interpolates, Adam 1e-4
with betas (0, 0.9), 5 critic updates, no BatchNorm in the critic). Table 3: Inception score 7.86
for its unsupervised ResNet (6.68 with DCGAN networks), 200,000 generator updates. The Inception
score needs Inception-v3's ImageNet weights, which are not available offline here, so it is not
reproduced; this run uses DCGAN networks with LayerNorm in the critic, as the paper's Section 4
suggests.

    python -m experiments.wgan_gp_cifar10 --workdir runs/wgan_gp_cifar10

Reported: the Fréchet distance on the features of a small CNN trained in this project on CIFAR-10
(see experiments/dcgan_cifar10.py); compare it across dcgan/wgan/wgan_gp, not with papers.
"""

from __future__ import annotations

from experiments.dcgan_mnist import RULES, run  # noqa: F401  (RULES: config.experiment_rules)
from vision_jax import cli

if __name__ == "__main__":
  cli.main(
    "wgan_gp_cifar10",
    run,
    paper="Gulrajani et al. 2017, Table 3 (Inception score 7.86, ResNet; needs Inception-v3)",
    metric="Fréchet distance, small-CNN features (not FID)",
    paper_value=None,
  )
