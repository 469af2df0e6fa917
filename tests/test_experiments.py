"""Each experiment's command runs end to end (smoke variants), writing result.json and its files."""
import json
import os

import pytest

from conftest import require_dataset
from vision_jax import cli

RESULT_KEYS = {"experiment", "paper", "metric", "paper_value", "value", "steps", "wall_s", "hardware", "command"}


def run_experiment(name, workdir, *argv):
  module = __import__(f"experiments.{name}", fromlist=["run"])
  return cli.main(name, module.run, paper="p", metric="m", paper_value=None,
                  argv=["--workdir", str(workdir), *argv])


def test_demo_job_end_to_end(tmp_path, monkeypatch, capsys):
  """`make demo`'s job, shortened: data, training, held-out eval, checkpoint, W&B offline, pictures."""
  monkeypatch.delenv("WANDB_API_KEY", raising=False)
  monkeypatch.setenv("HOME", str(tmp_path))
  workdir = tmp_path / "demo"
  result = run_experiment("lenet5_digits", workdir, "--config.train.steps=40", "--config.train.eval_every=20",
                          "--config.train.checkpoint_every=20", "--config.train.visuals_every=20",
                          "--config.train.log_every=10")
  out = capsys.readouterr().out
  assert "lenet5_digits: m = " in out and "after 40 steps" in out  # the one-line result (metric "m" as passed above)
  on_disk = json.load(open(workdir / "result.json"))
  assert RESULT_KEYS <= set(on_disk) and on_disk["steps"] == 40 and 0 <= on_disk["value"] < 90
  assert on_disk["command"].startswith("python -m experiments.lenet5_digits --workdir")
  for f in ("metrics.jsonl", "config.json", "curves.png", "pictures/final_predictions.png",
            "pictures/step0000020_predictions.png", "checkpoints/40"):
    assert (workdir / f).exists(), f
  assert any(d.startswith("offline-run-") for d in os.listdir(workdir / "wandb"))
  assert result["value"] == on_disk["value"]


def test_unknown_config_key_is_one_clear_error(tmp_path):
  with pytest.raises(SystemExit, match="unknown config key 'train.stepz'"):
    run_experiment("lenet5_digits", tmp_path, "--config.train.stepz=3")


def test_lenet5_mnist_smoke(tmp_path):
  require_dataset("mnist")
  result = run_experiment("lenet5_mnist", tmp_path / "run", "--variant", "smoke")
  assert result["steps"] == 20 and 0 < result["value"] < 90


def test_mlp_vs_cnn_smoke(tmp_path):
  require_dataset("mnist")
  result = run_experiment("mlp_vs_cnn", tmp_path / "run", "--variant", "smoke")
  table = result["table"]
  assert table["mlp"]["params"] == 60040 and table["lenet5"]["params"] == 60806
  assert (tmp_path / "run" / "table.md").exists() and (tmp_path / "run" / "shift_errors.png").exists()


def test_transfer_pets_smoke(tmp_path, monkeypatch):
  """CIFAR-10 pretraining, then the three arms on the pets; the probe's backbone stays the pretrained one."""
  require_dataset("oxford_pets_3breeds")
  require_dataset("cifar10")
  import jax
  import numpy as np
  from experiments import transfer_pets
  from vision_jax.config import load_config
  from vision_jax.train.checkpoint import read_state
  workdir = tmp_path / "run"
  result = run_experiment("transfer_pets", workdir, "--variant", "smoke")
  table = result["table"]
  assert list(table) == ["scratch", "linear_probe", "finetune"] and result["arm"] == "finetune"
  assert table["linear_probe"]["trained_params"] == 64 * 3 + 3  # the new head alone
  assert table["scratch"]["trained_params"] == table["finetune"]["trained_params"] == table["scratch"]["params"]
  assert [table[a]["init"] for a in table] == ["random", "pretrained", "pretrained"]
  assert result["steps"] == 12 and result["pretrain"]["steps"] == 4 and 0 <= result["value"] <= 100
  for f in ("table.md", "test_accuracy.png", "pretrain_cifar10/checkpoints/4", "finetune/checkpoints/4"):
    assert (workdir / f).exists(), f
  pre = read_state(str(workdir / "pretrain_cifar10" / "checkpoints" / "4" / "state"))
  probe = read_state(str(workdir / "linear_probe" / "checkpoints" / "4" / "state"))
  frozen = {k: v for k, v in pre["params"].items() if k != "head"}
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(frozen),
                          jax.tree.leaves({k: probe["params"][k] for k in frozen})):
    np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))
  for a, b in zip(jax.tree.leaves(pre["model_state"]), jax.tree.leaves(probe["model_state"])):
    np.testing.assert_array_equal(a, b)  # BatchNorm statistics frozen too
  # A finished pretraining is reused, not run again.
  monkeypatch.setattr(transfer_pets, "train_and_evaluate", lambda *a: pytest.fail("pretraining ran again"))
  again = transfer_pets.pretrain(load_config("transfer_pets", "smoke"), str(workdir / "pretrain_cifar10"))
  assert again["steps"] == 4 and again["error"] == result["pretrain"]["error"]


def test_transfer_pets_asks_for_weights_for_an_imagenet_backbone(tmp_path):
  with pytest.raises(ValueError, match=r"not 'resnet18'.*--config.init_from=DIR.*import_torchvision resnet18"):
    run_experiment("transfer_pets", tmp_path / "run", "--variant", "imagenet,smoke")
