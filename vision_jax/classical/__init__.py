"""The non-neural methods of the lecture: PCA and eigenfaces (`pca`), Gaussian mixtures fitted by
EM (`gmm`). Pure JAX functions over arrays; the experiments that use them need no training loop."""
