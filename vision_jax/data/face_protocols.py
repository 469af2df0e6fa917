"""Face-recognition protocols: which images of which people train, and which test.

A face database (ORL: 40 people x 10 images, read as one "train" split whose label is the
person) is divided by one of two protocols, deterministically by seed:

- "identification" (closed set): every person appears in training and in test. Of each person's
  images, `test_per_person` are held out, the rest train. The images of a person are put in a
  fixed random order (by seed and person); fold f holds out positions [f k, (f + 1) k), so the
  folds f = 0 .. n/k - 1 are the leave-k-out cross-validation (k = 5: the usual 5 train / 5 test;
  k = 1: leave-one-out).
- "verification" (open set): `num_unseen` people are drawn by seed and never appear in
  training; their images form split "unseen", on which every pair is a same or different pair
  (`vision_jax.metrics.verification.all_pairs`). The other people's images train (all of them, or `test_per_person` of each
  held out as "test" for closed-set identification among the seen people).

Select one with `config.data.protocol` (see `apply_protocol`); the data pipeline then reads the
returned splits like any other.
"""

from __future__ import annotations

import ml_collections
import numpy as np

from vision_jax.errors import ConfigError

PROTOCOLS = ("identification", "verification")


def _person_order(labels: np.ndarray, person: int, seed: int) -> np.ndarray:
  """The positions of `person`'s images, in a random order fixed by (seed, person)."""
  positions = np.flatnonzero(labels == person)
  return positions[np.random.default_rng([seed, int(person)]).permutation(len(positions))]


def identification_split(
  labels: np.ndarray, *, test_per_person: int = 5, fold: int = 0, seed: int = 0
) -> dict[str, np.ndarray]:
  """Closed-set identification: {"train", "test"} positions into `labels` [n], each sorted.

  Raises ValueError when a person has too few images for the fold.
  """
  labels = np.asarray(labels)
  if test_per_person < 1:
    raise ValueError(f"test_per_person must be at least 1, got {test_per_person}")
  train, test = [], []
  for person in np.unique(labels):
    order = _person_order(labels, person, seed)
    lo, hi = fold * test_per_person, (fold + 1) * test_per_person
    if len(order) - test_per_person < 1:
      raise ValueError(
        f"person {person} has {len(order)} images: test_per_person must be at most "
        f"{len(order) - 1} so that one trains, got {test_per_person}"
      )
    if fold < 0 or hi > len(order):
      raise ValueError(
        f"person {person} has {len(order)} images: cannot hold out images [{lo}, {hi}) of them "
        f"and train on the rest (fold {fold}, test_per_person {test_per_person}); "
        f"valid folds are 0 .. {len(order) // test_per_person - 1}"
      )
    test.append(order[lo:hi])
    train.append(np.concatenate([order[:lo], order[hi:]]))
  return {"train": np.sort(np.concatenate(train)), "test": np.sort(np.concatenate(test))}


def unseen_people(labels: np.ndarray, num_unseen: int, seed: int = 0) -> np.ndarray:
  """The `num_unseen` people (labels) held out of training, sorted; fixed by seed."""
  people = np.unique(labels)
  if not 0 < num_unseen < len(people):
    raise ValueError(
      f"num_unseen must be between 1 and {len(people) - 1} (there are {len(people)} people), "
      f"got {num_unseen}"
    )
  return np.sort(np.random.default_rng(seed).permutation(people)[:num_unseen])


def verification_split(
  labels: np.ndarray, *, num_unseen: int = 10, test_per_person: int = 0, seed: int = 0
) -> dict[str, np.ndarray]:
  """Open-set verification: {"train", "unseen"[, "test"]} positions into `labels` [n], sorted.

  No image of an unseen person is in "train" or "test". With `test_per_person` > 0, that many
  images of each seen person are held out as "test" (fold 0 of `identification_split`).
  """
  labels = np.asarray(labels)
  unseen = unseen_people(labels, num_unseen, seed)
  is_unseen = np.isin(labels, unseen)
  seen = np.flatnonzero(~is_unseen)
  splits = {"unseen": np.flatnonzero(is_unseen)}
  if test_per_person:
    inner = identification_split(labels[seen], test_per_person=test_per_person, seed=seed)
    splits.update(train=seen[inner["train"]], test=seen[inner["test"]])
  else:
    splits["train"] = seen
  return splits


def apply_protocol(
  protocol: ml_collections.ConfigDict, labels: np.ndarray
) -> dict[str, np.ndarray]:
  """The splits of `config.data.protocol` as positions into `labels` (the source's train split).

  protocol: name ("identification" | "verification"), seed, test_per_person and fold
  (identification), num_unseen and seen_test_per_person (verification; default 0: the seen
  people's images all train).
  """
  name = protocol.name
  try:
    if name == "identification":
      return identification_split(
        labels,
        test_per_person=protocol.test_per_person,
        fold=protocol.get("fold", 0),
        seed=protocol.seed,
      )
    if name == "verification":
      return verification_split(
        labels,
        num_unseen=protocol.num_unseen,
        test_per_person=protocol.get("seen_test_per_person", 0),
        seed=protocol.seed,
      )
  except ValueError as e:  # settings this dataset cannot meet: the config's error, not a traceback
    raise ConfigError(f"data.protocol ({name}): {e}") from None
  raise ConfigError(f"unknown data.protocol.name {name!r}; valid: {', '.join(PROTOCOLS)}")
