"""Gaussian mixtures by EM: against scikit-learn, monotone log-likelihood, sampling, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SklearnMixture

from vision_jax.classical import gmm
from vision_jax.classical.pca import fit_pca


def _blobs(n=600, dim=4, seed=0):
  """Three anisotropic, overlapping clusters: EM needs many iterations on them."""
  rng = np.random.default_rng(seed)
  centres = rng.normal(0.0, 3.0, (3, dim))
  parts = []
  for i, c in enumerate(centres):
    a = rng.normal(size=(dim, dim)) * (0.5 + i * 0.4)
    parts.append(rng.normal(size=(n // 3, dim)) @ a + c)
  return np.concatenate(parts).astype(np.float32)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_matches_sklearn_from_the_same_initialisation(covariance_type):
  x = _blobs()
  init = gmm.init_kmeans_plusplus(jax.random.key(1), x, 3, covariance_type, reg=1e-6)
  ours, history = gmm.fit(x, init, max_iter=200, tol=1e-6, reg=1e-6)
  weights = np.asarray(init.weights, np.float64)
  reference = SklearnMixture(
    3,
    covariance_type=covariance_type,
    reg_covar=1e-6,
    max_iter=200,
    tol=1e-6,
    weights_init=weights / weights.sum(),  # float32 sums to 1 within 1e-7 only
    means_init=np.asarray(init.means, np.float64),
    precisions_init=init.precisions,
  ).fit(x.astype(np.float64))
  ours_ll, their_ll = history[-1], reference.score(x.astype(np.float64))
  assert abs(ours_ll - their_ll) <= 0.01 * abs(their_ll), (ours_ll, their_ll)
  # The last value of the history is the fitted mixture's own log-likelihood.
  np.testing.assert_allclose(float(jnp.mean(gmm.score_samples(ours, x))), ours_ll, rtol=1e-5)
  assert len(history) > 5  # it really iterated


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_log_likelihood_never_decreases(covariance_type):
  # The same shapes as the other tests (the jitted steps compile once). A component that shrinks
  # onto ~dim points reaches covariance condition numbers ~1e7 without a floor, and float32
  # rounding then makes the log-likelihood wobble by ~1e-3: the floor keeps EM monotone in float32.
  x = _blobs(seed=3)
  init = gmm.init_kmeans_plusplus(jax.random.key(0), x, 3, covariance_type, reg=1e-3)
  _, history = gmm.fit(x, init, max_iter=60, tol=0.0, reg=1e-3)
  steps = np.diff(history)
  # float32 rounding only: a few 1e-6 of the ~10-nat log-likelihood.
  assert np.all(steps >= -1e-5 * abs(history[-1])), steps.min()
  assert history[-1] > history[0] and len(history) == 61  # tol=0: every iteration ran


def test_kmeans_plusplus_picks_distinct_data_points():
  x = _blobs()
  centres = np.asarray(gmm.kmeans_plusplus(jax.random.key(0), x, 6))
  assert len({tuple(c) for c in centres}) == 6
  assert all(np.any(np.all(x == c, axis=1)) for c in centres)


def test_covariance_floor_keeps_collapsed_components_invertible():
  # Ten copies of two points: each component's empirical covariance is exactly zero.
  x = np.repeat(np.array([[0.0, 0.0], [5.0, 5.0]], np.float32), 10, axis=0)
  init = gmm.init_kmeans_plusplus(jax.random.key(0), x, 2, "full", reg=1e-3)
  mixture, history = gmm.fit(x, init, max_iter=5, reg=1e-3)
  np.testing.assert_allclose(np.linalg.eigvalsh(np.asarray(mixture.covariances)), 1e-3, rtol=1e-3)
  assert np.all(np.isfinite(history))


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_samples_follow_the_mixture(covariance_type):
  x = _blobs()
  mixture, _ = gmm.fit(
    x, gmm.init_kmeans_plusplus(jax.random.key(0), x, 3, covariance_type), max_iter=50
  )
  samples, components = gmm.sample(jax.random.key(5), mixture, 20000)
  counts = np.bincount(np.asarray(components), minlength=3) / 20000
  np.testing.assert_allclose(counts, np.asarray(mixture.weights), atol=0.02)
  k = int(np.argmax(np.asarray(mixture.weights)))
  mine = np.asarray(samples)[np.asarray(components) == k]
  np.testing.assert_allclose(mine.mean(0), np.asarray(mixture.means[k]), atol=0.15)
  cov = np.asarray(mixture.covariances[k])
  np.testing.assert_allclose(
    np.cov(mine.T) if covariance_type == "full" else mine.var(0), cov, atol=0.1 * np.abs(cov).max()
  )


def test_pca_reconstructs_data_in_its_subspace():
  rng = np.random.default_rng(0)
  x = (rng.normal(size=(200, 3)) @ rng.normal(size=(3, 10)) + 2.0).astype(np.float32)
  pca = fit_pca(x, 3)
  np.testing.assert_allclose(np.asarray(pca.inverse_transform(pca.transform(x))), x, atol=1e-3)
  np.testing.assert_allclose(np.asarray(pca.components @ pca.components.T), np.eye(3), atol=1e-5)
  assert np.all(np.diff(np.asarray(pca.explained_variance)) <= 0)


def test_bad_input_is_a_clear_error():
  x = _blobs()
  with pytest.raises(ValueError, match="covariance_type"):
    gmm.init_kmeans_plusplus(jax.random.key(0), x, 3, "spherical")
  with pytest.raises(ValueError, match="n_components"):
    gmm.init_kmeans_plusplus(jax.random.key(0), x, 0)
  with pytest.raises(ValueError, match=r"\[examples, dim\]"):
    gmm.init_kmeans_plusplus(jax.random.key(0), x[None], 3)
  init = gmm.init_kmeans_plusplus(jax.random.key(0), x, 3)
  with pytest.raises(ValueError, match="dimensions"):
    gmm.fit(x[:, :2], init)
  with pytest.raises(ValueError, match="num_components"):
    fit_pca(x, 10)
