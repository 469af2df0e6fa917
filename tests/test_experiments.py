"""Each experiment's command runs end to end (smoke variants), writing result.json and its files."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import require_dataset

from vision_jax import cli, sweeps
from vision_jax.data.augment import make_preprocess
from vision_jax.data.formats.base import DatasetSpec
from vision_jax.tasks import ClassificationTask

RESULT_KEYS = {
  "experiment",
  "paper",
  "metric",
  "paper_value",
  "value",
  "steps",
  "wall_s",
  "hardware",
  "command",
}


def run_experiment(name, workdir, *argv):
  module = __import__(f"experiments.{name}", fromlist=["run"])
  return cli.main(
    name,
    module.run,
    paper="p",
    metric="m",
    paper_value=None,
    argv=["--workdir", str(workdir), *argv],
  )


def test_demo_job_end_to_end(tmp_path, monkeypatch, capsys):
  """`make demo`'s job, shortened: data, training, held-out eval, checkpoint, W&B offline, pictures."""
  monkeypatch.delenv("WANDB_API_KEY", raising=False)
  monkeypatch.setenv("HOME", str(tmp_path))
  workdir = tmp_path / "demo"
  result = run_experiment(
    "lenet5_digits",
    workdir,
    "--config.train.steps=40",
    "--config.train.eval_every=20",
    "--config.train.checkpoint_every=20",
    "--config.train.visuals_every=20",
    "--config.train.log_every=10",
  )
  out = capsys.readouterr().out
  assert (
    "lenet5_digits: m = " in out and "after 40 steps" in out
  )  # the one-line result (metric "m" as passed above)
  on_disk = json.load(open(workdir / "result.json"))
  assert RESULT_KEYS <= set(on_disk) and on_disk["steps"] == 40 and 0 <= on_disk["value"] < 90
  assert on_disk["command"].startswith("python -m experiments.lenet5_digits --workdir")
  for f in (
    "metrics.jsonl",
    "config.json",
    "curves.png",
    "pictures/final_predictions.png",
    "pictures/step0000020_predictions.png",
    "checkpoints/40",
  ):
    assert (workdir / f).exists(), f
  assert any(d.startswith("offline-run-") for d in os.listdir(workdir / "wandb"))
  assert result["value"] == on_disk["value"]


def test_bad_settings_and_missing_data_found_during_a_run_are_one_line_errors(
  tmp_path, monkeypatch, capsys
):
  """ConfigError and DatasetError raised inside an experiment end it with 'error: ...', no traceback."""
  with pytest.raises(SystemExit, match=r"^error: unknown optimizer 'adamz'; valid: sgd, momentum"):
    run_experiment(
      "lenet5_digits", tmp_path / "a", "--variant", "smoke", "--config.optim.name=adamz"
    )
  # A model that does not exist, or a model setting it does not have, found when the model is built.
  with pytest.raises(
    SystemExit, match=r"^error: unknown model 'lenet6' \(model.name\); registered models: .*lenet5"
  ):
    run_experiment(
      "lenet5_digits", tmp_path / "m", "--variant", "smoke", "--config.model.name=lenet6"
    )
  with pytest.raises(
    SystemExit, match=r"^error: pooling must be 'max', 'avg' or 'subsample', got 'median'"
  ):
    run_experiment(
      "lenet5_digits", tmp_path / "p", "--variant", "smoke", "--config.model.pooling=median"
    )
  with pytest.raises(
    SystemExit,
    match=r"^error: model 'resnet20' has no setting 'activation', 'partial_c3', 'pooling' "
    r"\(model\.\* in the config\); it takes: depth, dropout, dtype, num_classes, shortcut$",
  ):
    run_experiment(
      "lenet5_digits", tmp_path / "r", "--variant", "smoke", "--config.model.name=resnet20"
    )
  # An impossible setting, found before the data are read: nothing is written.
  with pytest.raises(
    SystemExit,
    match=r"^error: impossible settings:\n  train.batch_size must be an integer >= 1, "
    r"got 0\n  optim.learning_rate must be a number >= 0, got -0.1$",
  ):
    run_experiment(
      "lenet5_digits",
      tmp_path / "i",
      "--variant",
      "smoke",
      "--config.train.batch_size=0",
      "--config.optim.learning_rate=-0.1",
    )
  assert not (tmp_path / "i").exists()
  with pytest.raises(
    SystemExit, match=r"^error: train.batch_size \d+ is larger than the 10 training examples"
  ):
    run_experiment(
      "lenet5_digits", tmp_path / "t", "--variant", "smoke", "--config.data.train_size=10"
    )
  # Saved variables that are not there or do not read; a run that diverges.
  with pytest.raises(
    SystemExit, match=r"^error: no saved variables at .*nowhere: expected a directory written by"
  ):
    run_experiment(
      "lenet5_digits",
      tmp_path / "n",
      "--variant",
      "smoke",
      f"--config.init_from={tmp_path / 'nowhere'}",
    )
  (tmp_path / "junk").mkdir()
  (tmp_path / "junk" / "file").write_text("not a checkpoint")
  with pytest.raises(
    SystemExit,
    match=r"^error: .*junk does not read as saved variables \(.*\); expected a directory",
  ):
    run_experiment(
      "lenet5_digits",
      tmp_path / "j",
      "--variant",
      "smoke",
      f"--config.init_from={tmp_path / 'junk'}",
    )
  with pytest.raises(
    SystemExit, match=r"^error: non-finite loss at step \d+ .*Lower the learning rate"
  ):
    run_experiment(
      "lenet5_digits",
      tmp_path / "d",
      "--variant",
      "smoke",
      "--config.optim.name=sgd",
      "--config.optim.learning_rate=1e30",
    )
  # A metric name that no evaluation produces, found before the first step: nothing trained, nothing saved.
  with pytest.raises(
    SystemExit,
    match=r"^error: train.best_metric 'test/eror' is not an eval metric; "
    r"have \['test/accuracy', 'test/error', 'test/loss'\]",
  ):
    run_experiment(
      "lenet5_digits", tmp_path / "e", "--variant", "smoke", "--config.train.best_metric=test/eror"
    )
  assert (
    not (tmp_path / "e" / "metrics.jsonl").exists()
    or not (tmp_path / "e" / "metrics.jsonl").read_text().strip()
  )
  assert not (tmp_path / "e" / "checkpoints").exists() or not os.listdir(
    tmp_path / "e" / "checkpoints"
  )
  with pytest.raises(
    SystemExit, match=r"^error: train.early_stopping.metric 'val/error' is not an eval metric"
  ):
    run_experiment(
      "lenet5_digits",
      tmp_path / "v",
      "--variant",
      "smoke",
      "--config.train.early_stopping.metric=val/error",
    )
  from vision_jax.data.sources import get_source

  monkeypatch.setenv("VISION_JAX_DATASETS", str(tmp_path / "nowhere"))
  get_source.cache_clear()  # a source opened by an earlier test is remembered by name
  with pytest.raises(
    SystemExit,
    match=r"^error: idx:mnist: .*nowhere/mnist does not exist; set \$VISION_JAX_DATASETS",
  ):
    run_experiment("lenet5_mnist", tmp_path / "b", "--variant", "smoke")
  # A misspelt model or model setting is found before the data are looked for (or prepared).
  with pytest.raises(SystemExit, match=r"^error: unknown model 'lenet6' \(model.name\)"):
    run_experiment(
      "lenet5_mnist", tmp_path / "b", "--variant", "smoke", "--config.model.name=lenet6"
    )
  with pytest.raises(SystemExit, match=r"^error: unknown model 'dcgan_critik' \(model.name\)"):
    run_experiment(
      "dcgan_mnist", tmp_path / "g", "--variant", "smoke", "--config.model.critic.name=dcgan_critik"
    )


def test_an_early_stopped_run_reports_the_step_it_ended_on(tmp_path):
  """result.json of a loop-trained experiment: with early stopping, the best step and whether it stopped."""
  # "Best" by the highest test error: the first evaluation's, so patience 1 stops at the second.
  result = run_experiment(
    "lenet5_digits",
    tmp_path / "e",
    "--variant",
    "smoke",
    "--config.wandb.mode=disabled",
    "--config.train.early_stopping.metric=test/error",
    "--config.train.early_stopping.mode=max",
    "--config.train.early_stopping.patience=1",
  )
  assert (result["steps"], result["best_step"], result["early_stopped"]) == (20, 10, True)
  logged = [r for r in map(json.loads, open(tmp_path / "e" / "metrics.jsonl")) if "test/error" in r]
  assert (
    result["value"] == pytest.approx(100 * logged[0]["test/error"], abs=1e-3)
    and logged[0]["step"] == 10
  )
  assert json.load(open(tmp_path / "e" / "result.json"))["best_step"] == 10
  plain = run_experiment(
    "lenet5_digits", tmp_path / "p", "--variant", "smoke", "--config.wandb.mode=disabled"
  )
  assert "best_step" not in plain and "early_stopped" not in plain


def test_unknown_config_key_is_one_clear_error(tmp_path):
  with pytest.raises(SystemExit, match="unknown config key 'train.stepz'"):
    run_experiment("lenet5_digits", tmp_path, "--config.train.stepz=3")


def test_lenet5_mnist_smoke(tmp_path):
  require_dataset("mnist")
  result = run_experiment("lenet5_mnist", tmp_path / "run", "--variant", "smoke")
  assert result["steps"] == 20 and 0 < result["value"] < 90


def test_mlp_vs_cnn_smoke(tmp_path):
  require_dataset("mnist")
  result = run_experiment("mlp_vs_cnn", tmp_path / "run", "--variant", "smoke", "--config.shift=3")
  table = result["table"]
  assert table["mlp"]["params"] == 60040 and table["lenet5"]["params"] == 60806
  assert (tmp_path / "run" / "table.md").exists() and (
    tmp_path / "run" / "shift_errors.png"
  ).exists()
  # The shift the run used, not the default's, names what was measured.
  assert result["metric"] == "LeNet-5 test error on 3-px shifted MNIST (%)"
  assert "shifted by 3 px" in (tmp_path / "run" / "table.md").read_text()


def test_resnet_cifar10_smoke(tmp_path):
  require_dataset("cifar10")
  result = run_experiment(
    "resnet_cifar10",
    tmp_path / "run",
    "--variant",
    "smoke,model=resnet32",
    "--config.wandb.mode=disabled",
  )
  assert result["steps"] == 4 and result["model"] == "resnet32" and result["paper_value"] == 7.51
  assert set(result["eval"]) == {"test/accuracy", "test/error", "test/loss"}
  assert 0 <= result["value"] <= 100 and result["value"] == pytest.approx(
    100 * result["eval"]["test/error"], abs=1e-3
  )


def test_vgg_cifar10_smoke(tmp_path):
  require_dataset("cifar10")
  result = run_experiment("vgg_cifar10", tmp_path / "run", "--variant", "smoke")
  # The smoke variant evaluates on held-out training images: a test-set pass of VGG-16 costs minutes here.
  assert result["steps"] == 2 and result["split"] == "validation" and 0 <= result["value"] <= 100
  assert result["model"] == "vgg16_bn_cifar" and set(result["eval"]) == {
    "validation/accuracy",
    "validation/error",
    "validation/loss",
  }


@pytest.mark.parametrize("aux", [True, False])
def test_googlenet_cifar10_aux_sweep_points_train_what_they_say(aux):
  """Each point of the `aux` sweep, traced on CIFAR-shaped batches rather than run: XLA takes
  minutes to compile GoogLeNet's training step on a 2-core CPU (the end-to-end smoke variant
  measured 566 s there under load, against 77 s for VGG-16's), and its forward pass is
  already in tests/test_models.py. With the heads: their weighted losses are part of the
  training loss, and they have parameters; never in evaluation."""
  config = sweeps.point_config("googlenet_cifar10", "smoke", [], {"model.aux_logits": aux})
  task = ClassificationTask(
    config, DatasetSpec((32, 32, 3), tuple("abcdefghij"), ("train", "test"))
  )
  train_fn, eval_fn = make_preprocess(config.data)
  batch = {
    "image": jax.ShapeDtypeStruct((8, 32, 32, 3), jnp.uint8),
    "label": jax.ShapeDtypeStruct((8,), jnp.int32),
  }
  rng = jax.random.key(0)
  state = jax.eval_shape(
    lambda b: task.init_state(rng, eval_fn(b), total_steps=config.train.steps), batch
  )
  _, metrics = jax.eval_shape(lambda s, b: task.train_step(s, train_fn(b, rng), rng), state, batch)
  evaluated = jax.eval_shape(
    lambda s, b: task.eval_step(s, {**eval_fn(b), "mask": jnp.ones(8, bool)}), state, batch
  )
  aux_losses = {"loss_classification", "loss_aux1", "loss_aux2"}
  assert set(metrics) == ({"loss", "accuracy"} | (aux_losses if aux else set()))
  assert set(evaluated) == {"loss", "accuracy", "error"}
  count = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))
  assert count == (9_841_470 if aux else 5_490_986)  # tests/test_models.py pins both
  assert config.loss.aux_weight == 0.3 and config.data.dataset == "image_folder:cifar10"


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
  assert (
    table["scratch"]["trained_params"]
    == table["finetune"]["trained_params"]
    == table["scratch"]["params"]
  )
  assert [table[a]["init"] for a in table] == ["random", "pretrained", "pretrained"]
  assert result["steps"] == 12 and result["pretrain"]["steps"] == 4 and 0 <= result["value"] <= 100
  for f in (
    "table.md",
    "test_accuracy.png",
    "pretrain_cifar10/checkpoints/4",
    "finetune/checkpoints/4",
  ):
    assert (workdir / f).exists(), f
  assert (
    (workdir / "table.md")
    .read_text()
    .startswith("resnet20 (depth=8) on oxford_pets_3breeds (16x16), 4 steps per arm")
  )
  pre = read_state(str(workdir / "pretrain_cifar10" / "checkpoints" / "4" / "state"))
  probe = read_state(str(workdir / "linear_probe" / "checkpoints" / "4" / "state"))
  frozen = {k: v for k, v in pre["params"].items() if k != "head"}
  for (path, a), b in zip(
    jax.tree_util.tree_leaves_with_path(frozen),
    jax.tree.leaves({k: probe["params"][k] for k in frozen}),
  ):
    np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))
  for a, b in zip(jax.tree.leaves(pre["model_state"]), jax.tree.leaves(probe["model_state"])):
    np.testing.assert_array_equal(a, b)  # BatchNorm statistics frozen too
  # A finished pretraining is reused, not run again.
  monkeypatch.setattr(
    transfer_pets, "train_and_evaluate", lambda *a: pytest.fail("pretraining ran again")
  )
  again = transfer_pets.pretrain(
    load_config("transfer_pets", "smoke"), str(workdir / "pretrain_cifar10")
  )
  assert again["steps"] == 4 and again["error"] == result["pretrain"]["error"]


def test_transfer_pets_repeats_each_arm_over_seeds(tmp_path):
  """`seeds` runs of an arm, each in its own directory with its own train.seed; the table reports their mean."""
  require_dataset("oxford_pets_3breeds")
  import numpy as np

  from vision_jax.train.checkpoint import read_state

  workdir = tmp_path / "run"
  result = run_experiment(
    "transfer_pets", workdir, "--variant", "smoke", "--config.arms=('scratch',)", "--config.seeds=2"
  )
  row = result["table"]["scratch"]
  assert result["seeds"] == 2 and result["steps"] == 8 and "mean of 2 seeds" in result["metric"]
  assert len(row["seed_test_accuracies"]) == 2
  assert row["test_accuracy"] == pytest.approx(np.mean(row["seed_test_accuracies"]), abs=1e-3)
  assert row["test_accuracy_std"] == pytest.approx(
    np.std(row["seed_test_accuracies"], ddof=1), abs=1e-3
  )
  assert result["value"] == pytest.approx(100 - row["test_accuracy"], abs=0.01)
  configs = [
    json.loads((workdir / "scratch" / f"seed{i}" / "config.json").read_text()) for i in range(2)
  ]
  assert [c["train"]["seed"] for c in configs] == [0, 1]
  first, second = (
    read_state(str(workdir / "scratch" / f"seed{i}" / "checkpoints" / "4" / "state"))
    for i in range(2)
  )
  assert not np.array_equal(first["params"]["head"]["kernel"], second["params"]["head"]["kernel"])
  assert "± " in (workdir / "table.md").read_text() and (workdir / "test_accuracy.png").exists()


def test_transfer_pets_rejects_a_non_positive_number_of_seeds(tmp_path):
  with pytest.raises(
    SystemExit, match="^error: impossible setting: seeds must be an integer >= 1, got 0$"
  ):
    run_experiment("transfer_pets", tmp_path / "run", "--variant", "smoke", "--config.seeds=0")


def test_transfer_pets_asks_for_weights_for_an_imagenet_backbone(tmp_path):
  with pytest.raises(
    SystemExit,
    match=r"error: .*not 'resnet18'.*--config.init_from=DIR.*import_torchvision resnet18",
  ):
    run_experiment("transfer_pets", tmp_path / "run", "--variant", "imagenet,smoke")


def test_yolov1_mnist_detection_smoke(tmp_path):
  """The detection experiment runs end to end: result.json with its mAP on canvases without a
  shared cell beside the all-canvas one, curves, pictures and a COCO results file; a rerun
  resumes and reports the same."""
  require_dataset("mnist")
  workdir = tmp_path / "run"
  result = run_experiment("yolov1_mnist_detection", workdir, "--variant", "smoke")
  assert result["steps"] == 4 and 0 <= result["value"] <= 100
  assert 0 < result["canvases_without_a_shared_cell"] <= result["canvases"] == 32
  assert {"test/mAP50", "test/coco_AP", "test/loss_xy"} <= set(result["eval"])
  assert result["forward_gflop_per_image"] > 0
  assert set(result["inference_images_per_s"]) == {"batch_1", "batch_32"}
  detections = json.loads((workdir / "test_detections.json").read_text())
  assert all({"image_id", "category_id", "bbox", "score"} <= set(d) for d in detections)
  assert (workdir / "curves.png").exists()
  assert any(p.name.endswith(".png") for p in (workdir / "pictures").iterdir())
  again = run_experiment("yolov1_mnist_detection", workdir, "--variant", "smoke")
  assert again["map50_all_canvases"] == result["map50_all_canvases"]


def test_a_cell_shared_by_two_centres_is_found():
  from experiments.yolov1_mnist_detection import shares_a_cell

  boxes = np.zeros((3, 2, 4), np.float32)
  boxes[0] = [[0, 0, 10, 10], [2, 2, 12, 12]]  # centres 5 and 7 px: one cell of 128 / 7 px
  boxes[1] = [[0, 0, 10, 10], [100, 100, 120, 120]]  # far apart
  boxes[2] = [[0, 0, 10, 10], [2, 2, 12, 12]]  # as the first, but the second box is padding
  valid = np.array([[True, True], [True, True], [True, False]])
  np.testing.assert_array_equal(shares_a_cell(boxes, valid, 128, 7), [True, False, False])


def test_yolov1_pets_smoke(tmp_path):
  """YOLOv1 on real photos: the pets' whole-pet boxes, flipped and zoomed with their images."""
  require_dataset("oxford_pets_3breeds")
  result = run_experiment("yolov1_pets", tmp_path / "run", "--variant", "smoke")
  assert result["steps"] == 4 and 0 <= result["value"] <= 100
  assert {"test/mAP50", "test/coco_AP"} <= set(result["eval"])
