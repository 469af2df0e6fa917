"""How useful a frozen representation is: the test accuracy of a linear classifier on its codes."""

from __future__ import annotations

import numpy as np
import sklearn.linear_model
import sklearn.preprocessing


def linear_probe_accuracy(
  train_codes: np.ndarray,
  train_labels: np.ndarray,
  test_codes: np.ndarray,
  test_labels: np.ndarray,
  max_iter: int = 1000,
  l2: float = 1.0,
) -> float:
  """Fraction of test codes that multinomial logistic regression, fit on the training codes, gets right.

  The codes are standardised with the training codes' statistics first, so that codes of
  different scales (a sigmoid code, a linear code) meet the same regularisation `l2` (sklearn's 1 / C).
  train_codes: [n, d]; train_labels: int [n]; test_codes: [m, d]; test_labels: int [m].
  """
  if train_codes.ndim != 2 or test_codes.ndim != 2 or train_codes.shape[1] != test_codes.shape[1]:
    raise ValueError(
      f"codes must be [n, d] with the same d, got {train_codes.shape} and {test_codes.shape}"
    )
  if len(train_codes) != len(train_labels) or len(test_codes) != len(test_labels):
    raise ValueError("one label per code is expected")
  scaler = sklearn.preprocessing.StandardScaler().fit(train_codes)
  classifier = sklearn.linear_model.LogisticRegression(C=1.0 / l2, max_iter=max_iter)
  classifier.fit(scaler.transform(train_codes), train_labels)
  return float(np.mean(classifier.predict(scaler.transform(test_codes)) == test_labels))
