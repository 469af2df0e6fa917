"""GAN on MNIST: Goodfellow et al. 2014, "Generative adversarial nets": fully connected generator
and discriminator, the non-saturating generator loss (Section 3), one discriminator update per
generator update (k = 1, as in the paper's experiments). The paper reports a Parzen-window
log-likelihood on MNIST (225 +- 2, Table 1), an estimate it calls unreliable in high dimension;
it is not reproduced. Reported instead: the Fréchet distance on LeNet-5 features and the
Inception-style score, as for dcgan_mnist (not FID; see vision_jax/metrics/sample_quality.py).

    python -m experiments.gan_mnist --workdir runs/gan_mnist
"""

from __future__ import annotations

from experiments.dcgan_mnist import RULES, run  # noqa: F401  (RULES: config.experiment_rules)
from vision_jax import cli

if __name__ == "__main__":
  cli.main(
    "gan_mnist",
    run,
    paper="Goodfellow et al. 2014 (Parzen estimate 225, Table 1; not reproduced)",
    metric="Fréchet distance, LeNet-5 features (not FID)",
    paper_value=None,
  )
