"""The split-level evaluation path (`Task.eval_outputs` -> `Task.evaluate_outputs`): a metric that
is not a mean, computed exactly over a split that the eval batches do not divide, without the
padding rows, on one device and on several."""

import json
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
from conftest import REPO, run_env

from vision_jax.config import apply_overrides, load_config
from vision_jax.data.augment import make_preprocess
from vision_jax.data.pipeline import get_splits
from vision_jax.tasks import ClassificationTask
from vision_jax.train.loop import train_and_evaluate
from vision_jax.train.metric_writers import read_metrics

# 359 test digits in batches of 100: the last batch holds 41 copies of the first example.
OVERRIDES = (
  "train.steps=10",
  "train.eval_every=10",
  "train.checkpoint_every=10",
  "train.eval_batch_size=100",
  "train.best_metric=test/median_loss",
)


class MedianLossTask(ClassificationTask):
  """Classification, plus the median of the per-example losses over the split (not a mean of
  per-batch values), and what was scored, to check that each example is scored once."""

  scored: dict[str, dict[str, np.ndarray]] = {}

  def eval_outputs(self, state, batch):
    logits = self.predict(state, batch["image"])
    return {"loss": self._loss(logits, batch["label"]), "label": batch["label"]}

  def evaluate_outputs(self, outputs, split):
    MedianLossTask.scored[split] = outputs
    return {
      "median_loss": float(np.median(outputs["loss"])),
      "examples_scored": float(len(outputs["loss"])),
    }

  def eval_metric_names(self, state, batch):
    return sorted(super().eval_metric_names(state, batch) + ["examples_scored", "median_loss"])


def _config():
  return apply_overrides(load_config("lenet5_digits", "smoke"), list(OVERRIDES))


def _expected(config, state):
  """Every test example's loss, computed directly from the split (no batching, no padding)."""
  spec, splits = get_splits(config.data)
  _, eval_fn = make_preprocess(config.data)
  split = splits["test"]
  host = split.read(np.arange(len(split)))
  task = MedianLossTask(config, spec)
  logits = task.predict(state, eval_fn({"image": jnp.asarray(host["image"])})["image"])
  return host["label"], np.asarray(task._loss(logits, jnp.asarray(host["label"])))


def test_a_split_metric_is_computed_over_every_example_once(tmp_path):
  config = _config()
  summary = train_and_evaluate(config, str(tmp_path / "run"), MedianLossTask)
  labels, losses = _expected(config, summary["state"])
  assert len(labels) % config.train.eval_batch_size  # the last batch is padded
  scored = MedianLossTask.scored["test"]
  # Every example once, in order: the first is not scored again for the padding rows.
  np.testing.assert_array_equal(scored["label"], labels)
  np.testing.assert_allclose(scored["loss"], losses, rtol=1e-5, atol=1e-6)
  assert summary["eval"]["test/examples_scored"] == len(labels)
  np.testing.assert_allclose(summary["eval"]["test/median_loss"], np.median(losses), rtol=1e-5)
  # Merged with the means into the same records; the best checkpoint is chosen by it.
  record = [r for r in read_metrics(tmp_path / "run") if "test/median_loss" in r][0]
  assert (
    "test/error" in record and record["test/median_loss"] == summary["eval"]["test/median_loss"]
  )
  assert summary["best_value"] == summary["eval"]["test/median_loss"]


MULTI_DEVICE = """
import json, sys
sys.path.insert(0, "tests")
import jax
from test_eval_outputs import MedianLossTask, _config
from vision_jax.train.loop import train_and_evaluate
assert jax.device_count() == 4
summary = train_and_evaluate(_config(), sys.argv[1], MedianLossTask)
scored = MedianLossTask.scored["test"]
print(json.dumps({"eval": summary["eval"], "labels": scored["label"].tolist(),
                  "losses": scored["loss"].tolist()}))
"""


def test_outputs_sharded_over_four_devices_are_gathered_alike(tmp_path):
  """Per-example outputs come from the devices holding each row; with the batch of 100 split
  four ways, the same examples are scored, once each, in the same order as on one device."""
  env = run_env(XLA_FLAGS="--xla_force_host_platform_device_count=4")
  out = subprocess.run(
    [sys.executable, "-c", MULTI_DEVICE, str(tmp_path / "d4")],
    cwd=REPO,
    env=env,
    check=True,
    capture_output=True,
    text=True,
    timeout=600,
  )
  got = json.loads(out.stdout.strip().splitlines()[-1])
  config = _config()
  summary = train_and_evaluate(config, str(tmp_path / "d1"), MedianLossTask)
  labels, losses = _expected(config, summary["state"])
  np.testing.assert_array_equal(got["labels"], labels)
  np.testing.assert_allclose(got["losses"], losses, rtol=1e-4, atol=1e-5)
  assert got["eval"]["test/examples_scored"] == len(labels)
  np.testing.assert_allclose(
    got["eval"]["test/median_loss"], summary["eval"]["test/median_loss"], rtol=1e-4
  )
