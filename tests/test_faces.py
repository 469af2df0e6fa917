"""Face recognition: metric-learning losses, batch-hard mining, PCA, ROC/AUC, protocols, the two
ORL experiments end to end (smoke variants; skipped where the ORL folder is absent)."""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from sklearn import decomposition
from sklearn import metrics as sk_metrics
from sklearn.datasets import load_digits

from vision_jax.classical import pca as pca_lib
from vision_jax.data import face_protocols
from vision_jax.data.augment import make_preprocess
from vision_jax.errors import ConfigError
from vision_jax.losses import metric_learning
from vision_jax.metrics import identification, verification

DATASETS = os.environ.setdefault(
  "VISION_JAX_DATASETS",
  os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "shared",
    "datasets",
  ),
)
HAS_ORL = os.path.exists(os.path.join(DATASETS, "orl_faces"))
needs_orl = pytest.mark.skipif(
  not HAS_ORL, reason=f"ORL faces not found under $VISION_JAX_DATASETS ({DATASETS})"
)

LABELS = jnp.array([0, 0, 1, 1, 2, 2])


def _ideal_embeddings():
  """Each person's images at one point, the people orthonormal (sqrt(2) apart)."""
  return jax.nn.one_hot(LABELS, 4)


def _bad_embeddings():
  """Pairs of one person orthogonal, and each image identical to another person's."""
  return jax.nn.one_hot(jnp.array([0, 1, 1, 2, 2, 0]), 4)


def test_contrastive_loss_zero_for_ideal_embedding_larger_for_bad():
  ideal = metric_learning.contrastive_loss(_ideal_embeddings(), LABELS, margin=1.0)
  bad = metric_learning.contrastive_loss(_bad_embeddings(), LABELS, margin=1.0)
  assert float(ideal) == pytest.approx(0.0, abs=1e-6)
  assert float(bad) > 1.0
  # Same pairs cost d^2 (here 2 each); different pairs (margin - d)^2: 3 of the 12 coincide (1 each).
  assert float(bad) == pytest.approx(2.0 + 3 / 12, rel=1e-5)


def test_triplet_loss_zero_for_ideal_embedding_margin_for_collapsed():
  ideal = metric_learning.batch_hard_triplet_loss(_ideal_embeddings(), LABELS, margin=0.2)
  collapsed = metric_learning.batch_hard_triplet_loss(jnp.ones((6, 4)) / 2, LABELS, margin=0.2)
  bad = metric_learning.batch_hard_triplet_loss(_bad_embeddings(), LABELS, margin=0.2)
  assert float(ideal) == pytest.approx(0.0, abs=1e-6)
  assert float(collapsed) == pytest.approx(0.2, abs=1e-6)
  assert float(bad) == pytest.approx(np.sqrt(2) + 0.2, rel=1e-5)


def test_arcface_loss_minimal_for_ideal_embedding_and_margin_raises_it():
  ideal = jax.nn.one_hot(LABELS, 3)  # each embedding on its class centre
  bad = jax.nn.one_hot((LABELS + 1) % 3, 3)  # each on another class's centre
  ideal_loss = metric_learning.arcface_loss(ideal, LABELS, scale=30.0, margin=0.3)
  assert float(ideal_loss) < 1e-6
  assert float(metric_learning.arcface_loss(bad, LABELS, scale=30.0, margin=0.3)) > 30.0
  # Without margin, the logits are s cos(theta); the margin makes the target logit smaller.
  cos = jnp.array([[0.5, 0.2, -0.1]])
  np.testing.assert_allclose(
    metric_learning.arcface_logits(cos, jnp.array([0]), 10.0, 0.0), 10.0 * cos, atol=1e-5
  )
  with_margin = metric_learning.arcface_logits(cos, jnp.array([0]), 10.0, 0.3)
  np.testing.assert_allclose(with_margin[0, 0], 10.0 * np.cos(np.arccos(0.5) + 0.3), rtol=1e-5)
  np.testing.assert_allclose(with_margin[0, 1:], 10.0 * cos[0, 1:], atol=1e-6)
  assert metric_learning.arcface_loss(
    cos, jnp.array([0]), 10.0, 0.3
  ) > metric_learning.arcface_loss(cos, jnp.array([0]), 10.0, 0.0)


def test_batch_hard_mining_picks_hardest_positive_and_negative():
  # On a line: person 0 at 0, 1 and 3; person 1 at 2.5 and 10; person 2 alone at 20.
  points = jnp.array([0.0, 1.0, 3.0, 2.5, 10.0, 20.0])[:, None]
  labels = jnp.array([0, 0, 0, 1, 1, 2])
  distances = metric_learning.pairwise_distances(points)
  pos, neg, valid = metric_learning.batch_hard_mining(distances, labels)
  assert pos[0] == 2 and neg[0] == 3  # farthest own image 3.0 away; nearest other 2.5 away
  assert pos[1] == 2 and neg[1] == 3
  assert pos[2] == 0 and neg[2] == 3
  assert pos[3] == 4 and neg[3] == 2  # 7.5 to its own, 0.5 to person 0's at 3
  assert pos[4] == 3 and neg[4] == 2
  assert list(np.asarray(valid)) == [
    True,
    True,
    True,
    True,
    True,
    False,
  ]  # person 2 has no positive
  expected = np.mean(
    [
      max(0, d_ap - d_an + 1.0)
      for d_ap, d_an in [(3, 2.5), (2, 1.5), (3, 0.5), (7.5, 0.5), (7.5, 7)]
    ]
  )
  loss = metric_learning.batch_hard_triplet_loss(points, labels, margin=1.0)
  assert float(loss) == pytest.approx(expected, rel=1e-5)
  # A masked-out example is neither anchor, positive nor negative.
  mask = jnp.array([True, True, True, False, True, True])
  _, neg, valid = metric_learning.batch_hard_mining(distances, labels, mask)
  assert neg[0] == 4 and not valid[3] and not valid[4]


def test_losses_have_finite_gradients_at_coinciding_embeddings():
  grad = jax.grad(
    lambda e: (
      metric_learning.batch_hard_triplet_loss(e, LABELS)
      + metric_learning.contrastive_loss(e, LABELS)
    )
  )(jnp.ones((6, 4)) / 2)
  assert np.all(np.isfinite(grad))


def test_pca_components_orthonormal_sorted_and_match_sklearn():
  x = load_digits().data[:300].astype(np.float32) / 16.0  # real data: 300 x 64
  pca = pca_lib.fit_pca(x)
  components = np.asarray(pca.components)
  np.testing.assert_allclose(components @ components.T, np.eye(64), atol=1e-4)
  variance = np.asarray(pca.explained_variance)
  assert np.all(np.diff(variance) <= 1e-6)
  reference = decomposition.PCA(svd_solver="full").fit(x)
  np.testing.assert_allclose(
    variance[:40], reference.explained_variance_[:40], rtol=2e-3, atol=1e-6
  )
  np.testing.assert_allclose(
    pca.explained_variance_ratio[:40],
    reference.explained_variance_ratio_[:40],
    rtol=2e-3,
    atol=1e-6,
  )
  # The leading components agree up to sign; all of them reconstruct the data exactly.
  np.testing.assert_allclose(
    np.abs(np.sum(components[:10] * reference.components_[:10], axis=1)), 1.0, atol=1e-3
  )
  np.testing.assert_allclose(pca.inverse_transform(pca.transform(x)), x, atol=1e-4)
  with pytest.raises(ValueError, match="num_components"):
    pca_lib.fit_pca(x, num_components=65)


def test_roc_and_auc_agree_with_sklearn():
  rng = np.random.default_rng(0)
  same = rng.random(500) < 0.2
  scores = np.round(rng.normal(same * 1.0, 1.0), 1)  # rounded: many ties
  fpr, tpr, thresholds = verification.roc_curve(scores, same)
  ref_fpr, ref_tpr, ref_thresholds = sk_metrics.roc_curve(same, scores, drop_intermediate=False)
  np.testing.assert_allclose(fpr, ref_fpr)
  np.testing.assert_allclose(tpr, ref_tpr)
  np.testing.assert_allclose(thresholds[1:], ref_thresholds[1:])
  assert verification.auc(fpr, tpr) == pytest.approx(
    sk_metrics.roc_auc_score(same, scores), abs=1e-12
  )
  # TAR at FAR 1%: the best rate over thresholds accepting at most 1% of different pairs.
  brute = max(
    np.mean(scores[same] >= t) for t in np.unique(scores) if np.mean(scores[~same] >= t) <= 0.01
  )
  assert verification.tar_at_far(fpr, tpr, 0.01) == pytest.approx(brute)
  threshold, accuracy = verification.best_threshold(scores, same)
  brute_accuracy = max(np.mean((scores >= t) == same) for t in np.r_[np.unique(scores), np.inf])
  assert accuracy == pytest.approx(brute_accuracy)
  assert verification.verification_accuracy(scores, same, threshold) == pytest.approx(accuracy)
  with pytest.raises(ValueError, match="both same and different"):
    verification.roc_curve(scores, np.ones_like(same))


def test_pairs_scores_and_nearest_neighbour():
  first, second, same = verification.all_pairs(np.array([0, 1, 0]))
  assert list(zip(first, second, same)) == [(0, 1, False), (0, 2, True), (1, 2, False)]
  embeddings = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
  np.testing.assert_allclose(
    verification.pair_scores(embeddings, first, second),
    [0.0, 1 / np.sqrt(2), 1 / np.sqrt(2)],
    atol=1e-6,
  )
  np.testing.assert_allclose(
    verification.pair_scores(embeddings, first, second, "euclidean"),
    [-np.sqrt(5), -1.0, -np.sqrt(2)],
    atol=1e-6,
  )
  gallery = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 3.0]])
  queries = np.array([[9.0, 1.0], [0.2, 2.0], [1.0, 0.0]])
  assert list(identification.nearest_neighbour(gallery, queries)) == [1, 2, 0]
  assert identification.identification_accuracy(
    gallery, [0, 1, 2], queries, [1, 2, 2]
  ) == pytest.approx(2 / 3)
  # Cosine ignores length: [1, 0] is nearest in angle to [10, 0], not to the origin-like [0, 3].
  assert list(identification.nearest_neighbour(gallery[1:], queries[2:], "cosine")) == [0]


def _orl_like_labels(seed=0):
  return np.random.default_rng(seed).permutation(np.repeat(np.arange(40), 10))


def test_identification_split_and_leave_k_out_folds():
  labels = _orl_like_labels()
  split = face_protocols.identification_split(labels, test_per_person=5, seed=3)
  assert np.all(np.bincount(labels[split["train"]]) == 5) and np.all(
    np.bincount(labels[split["test"]]) == 5
  )
  assert not set(split["train"]) & set(split["test"])
  assert sorted(np.r_[split["train"], split["test"]]) == list(range(400))
  again = face_protocols.identification_split(labels, test_per_person=5, seed=3)
  other = face_protocols.identification_split(labels, test_per_person=5, seed=4)
  assert np.array_equal(split["test"], again["test"]) and not np.array_equal(
    split["test"], other["test"]
  )
  # Leave-one-out: the ten folds test every image exactly once.
  tested = np.concatenate(
    [
      face_protocols.identification_split(labels, test_per_person=1, fold=f)["test"]
      for f in range(10)
    ]
  )
  assert sorted(tested) == list(range(400))
  with pytest.raises(ValueError, match="valid folds are 0 .. 1"):
    face_protocols.identification_split(labels, test_per_person=5, fold=2)
  with pytest.raises(
    ValueError, match="test_per_person must be at most 9 so that one trains, got 10"
  ):
    face_protocols.identification_split(labels, test_per_person=10)


def test_a_protocol_this_dataset_cannot_meet_is_a_config_error():
  labels = _orl_like_labels()
  protocol = ml_collections.ConfigDict({"name": "verification", "num_unseen": 40, "seed": 0})
  with pytest.raises(
    ConfigError, match=r"^data.protocol \(verification\): num_unseen must be between 1 and 39"
  ):
    face_protocols.apply_protocol(protocol, labels)
  with pytest.raises(
    ConfigError, match="unknown data.protocol.name 'closed'; valid: identification, verification"
  ):
    face_protocols.apply_protocol(ml_collections.ConfigDict({"name": "closed"}), labels)


@pytest.mark.parametrize("test_per_person", [0, 5])
def test_verification_split_never_trains_on_unseen_people(test_per_person):
  labels = _orl_like_labels()
  for seed in range(5):
    split = face_protocols.verification_split(
      labels, num_unseen=10, test_per_person=test_per_person, seed=seed
    )
    unseen = set(labels[split["unseen"]])
    assert len(unseen) == 10 and len(split["unseen"]) == 100
    assert not unseen & set(labels[split["train"]])
    assert set(labels[split["train"]]) | unseen == set(range(40))
    if test_per_person:
      assert not unseen & set(labels[split["test"]]) and len(split["test"]) == 150
  with pytest.raises(ValueError, match="num_unseen"):
    face_protocols.verification_split(labels, num_unseen=40)


def test_brightness_augmentation_keeps_other_augmentations_and_shifts_whole_images():
  data = ml_collections.ConfigDict(
    {
      "pad_to": 0,
      "mean": (0.5,),
      "std": (0.25,),
      "augment": {"crop_padding": 2, "flip": True, "noise_std": 0.0},
    }
  )
  images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 12, 10, 1)), jnp.uint8)
  rng = jax.random.key(7)
  plain = make_preprocess(data)[0]({"image": images}, rng)["image"]
  data.augment.brightness = 0.0
  np.testing.assert_array_equal(make_preprocess(data)[0]({"image": images}, rng)["image"], plain)
  data.augment.brightness = 0.2
  bright = make_preprocess(data)[0]({"image": images}, rng)["image"]
  offsets = np.asarray(bright - plain)  # one offset per image, in standardised units (/ std)
  np.testing.assert_allclose(offsets, np.broadcast_to(offsets[:, :1, :1], offsets.shape), atol=1e-4)
  assert np.all(np.abs(offsets[:, 0, 0]) <= 0.2 / 0.25 + 1e-5) and np.ptp(offsets[:, 0, 0]) > 0


@pytest.mark.parametrize("loss", metric_learning.EMBEDDING_LOSSES)
def test_embedding_task_trains_each_loss(loss):
  from configs.face_embedding_orl import get_config  # pylint: disable=g-import-not-at-top
  from vision_jax.data.formats.base import DatasetSpec  # pylint: disable=g-import-not-at-top
  from vision_jax.tasks import EmbeddingTask  # pylint: disable=g-import-not-at-top

  config = get_config("smoke")
  config.loss.name = loss
  config.optim.learning_rate = 1e-2
  spec = DatasetSpec((32, 32, 1), tuple(f"s{i}" for i in range(4)), ("train",))
  task = EmbeddingTask(config, spec)
  rng = np.random.default_rng(0)
  # Four "people", each a fixed random pattern plus noise.
  patterns = rng.normal(size=(4, 32, 32, 1))
  labels = np.repeat(np.arange(4), 4)
  images = jnp.asarray(patterns[labels] + 0.3 * rng.normal(size=(16, 32, 32, 1)), jnp.float32)
  batch = {"image": images, "label": jnp.asarray(labels, jnp.int32)}
  state = task.init_state(jax.random.key(0), batch, total_steps=20)
  step = jax.jit(task.train_step)
  first = None
  for i in range(8):
    state, metrics = step(state, batch, jax.random.key(i))
    first = metrics["loss"] if first is None else first
  assert np.isfinite(metrics["loss"]) and metrics["loss"] < first
  embedding = task.embed(state, images)
  np.testing.assert_allclose(jnp.linalg.norm(embedding, axis=-1), 1.0, atol=1e-5)
  sums = task.eval_step(state, {**batch, "mask": jnp.ones(16, bool)})
  assert set(sums) == {"nn_accuracy", "nn_error", "same_cosine", "different_cosine"}
  assert float(sums["nn_accuracy"][1]) == 16 and float(sums["same_cosine"][1]) == 16 * 3


def test_embedding_task_rejects_unknown_loss():
  from configs.face_embedding_orl import get_config  # pylint: disable=g-import-not-at-top
  from vision_jax.data.formats.base import DatasetSpec  # pylint: disable=g-import-not-at-top
  from vision_jax.tasks import EmbeddingTask  # pylint: disable=g-import-not-at-top

  config = get_config("smoke")
  config.loss.name = "center"
  with pytest.raises(ValueError, match="unknown embedding loss 'center'"):
    EmbeddingTask(config, DatasetSpec((8, 8, 1), ("a", "b"), ("train",)))


@needs_orl
def test_orl_protocol_splits_through_the_data_pipeline():
  from configs.face_embedding_orl import get_config  # pylint: disable=g-import-not-at-top
  from vision_jax.data.pipeline import get_splits  # pylint: disable=g-import-not-at-top

  config = get_config("smoke")
  config.data.protocol.name = "verification"
  config.data.eval_splits = ("unseen",)
  spec, splits = get_splits(config.data)
  assert spec.num_classes == 40 and spec.image_shape == (112, 92, 1)
  train, unseen = splits["train"].arrays()["label"], splits["unseen"].arrays()["label"]
  assert len(train) == 300 and len(unseen) == 100
  assert not set(train) & set(unseen)


@needs_orl
def test_eigenfaces_experiment_smoke(tmp_path):
  from experiments import eigenfaces_orl  # pylint: disable=g-import-not-at-top
  from vision_jax import cli  # pylint: disable=g-import-not-at-top

  result = cli.main(
    "eigenfaces_orl",
    eigenfaces_orl.run,
    paper="",
    metric="accuracy",
    paper_value=None,
    argv=["--workdir", str(tmp_path), "--variant", "smoke"],
  )
  assert 80.0 < result["value"] <= 100.0  # 20 eigenfaces name most ORL faces
  assert set(result["accuracy_vs_components"]) == {1, 5, 20, 50}
  for name in ("accuracy_vs_components", "mean_face", "eigenfaces", "reconstructions"):
    assert os.path.exists(tmp_path / f"{name}.png")
  assert os.path.exists(tmp_path / "result.json")


@needs_orl
def test_face_embedding_experiment_smoke(tmp_path):
  from experiments import face_embedding_orl  # pylint: disable=g-import-not-at-top
  from vision_jax import cli  # pylint: disable=g-import-not-at-top

  result = cli.main(
    "face_embedding_orl",
    face_embedding_orl.run,
    paper="",
    metric="auc",
    paper_value=None,
    argv=["--workdir", str(tmp_path), "--variant", "smoke"],
  )
  rows = {row["method"]: row for row in result["table"]}
  assert set(rows) == {"eigenfaces", "triplet"}
  for row in rows.values():
    assert 0.0 <= row["identification_accuracy"] <= 100.0 and 0.0 <= row["auc"] <= 1.0
    assert 0.0 <= row["tar_at_far"] <= 100.0
  assert os.path.exists(tmp_path / "roc.png") and os.path.exists(tmp_path / "table.md")
