"""Sweeps: expanding get_sweeps(), naming points, running them as processes, and the report."""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import threading
import time

import pytest

from scripts import report as report_script
from scripts import sweep as sweep_script
from vision_jax import plotting, sweeps
from vision_jax.errors import ConfigError

# The smallest real run: LeNet-5 on scikit-learn's digits (no files needed), a few steps.
TINY = [
  "--variant",
  "smoke",
  "--config.data.dataset=sklearn:digits",
  "--config.data.pad_to=0",
  "--config.train.steps=4",
  "--config.train.log_every=2",
  "--config.train.eval_every=2",
  "--config.train.checkpoint_every=0",
  "--config.wandb.mode=disabled",
]
SAFE_NAME = re.compile(r"^[A-Za-z0-9._+\-=,]+$")


@pytest.fixture
def two_losses(monkeypatch):
  """lenet5_mnist's "losses" sweep cut to its first two points (cross-entropy, MSE), so that
  these tests do not grow with the config's sweep."""
  get = sweeps.get_sweeps

  def cut(experiment):
    available = dict(get(experiment))
    if experiment == "lenet5_mnist":
      available["losses"] = available["losses"][:2]
    return available

  monkeypatch.setattr(sweeps, "get_sweeps", cut)


def test_expand_list_keeps_points_in_order():
  spec = [{"optim.name": "sgd", "optim.learning_rate": 0.1}, {"optim.name": "adam"}, {}]
  assert sweeps.expand_sweep(spec) == [
    {"optim.name": "sgd", "optim.learning_rate": 0.1},
    {"optim.name": "adam"},
    {},
  ]


def test_expand_grid_is_the_product_first_key_slowest():
  points = sweeps.expand_sweep(
    {"grid": {"optim.name": ["adam", "sgd"], "optim.learning_rate": [1e-3, 1e-2, 0.1]}}
  )
  assert len(points) == 6
  assert points[:3] == [
    {"optim.name": "adam", "optim.learning_rate": lr} for lr in (1e-3, 1e-2, 0.1)
  ]
  assert points[3] == {"optim.name": "sgd", "optim.learning_rate": 1e-3}


@pytest.mark.parametrize(
  "spec, message",
  [
    ({"grid": {"optim.name": "adam"}}, "non-empty list"),
    ({"grid": {"optim.name": []}}, "non-empty list"),
    ({"pointz": [{}]}, "list of override dicts"),
    (
      {"common": {"train.steps": 3}, "points": [{}], "grid": {"optim.name": ["sgd"]}},
      "list of override dicts",
    ),
    (["optim.name=sgd"], "must be a dict"),
    ([], "no points"),
    ([{"optim.name": "sgd"}, {"optim.name": "sgd"}], "same run"),
    ([{"wandb.name": "x"}], "cannot be swept"),
  ],
)
def test_expand_rejects_malformed_sweeps(spec, message):
  with pytest.raises(ConfigError, match=message):
    sweeps.expand_sweep(spec)


def test_common_overrides_apply_to_every_point_and_stay_out_of_names(tmp_path, monkeypatch):
  spec = {
    "common": {"train.steps": 7, "data.train_size": 100},
    "points": [{}, {"model.dropout": 0.5}],
  }
  assert sweeps.expand_sweep(spec) == [{}, {"model.dropout": 0.5}]
  assert sweeps.sweep_common(spec) == {"train.steps": 7, "data.train_size": 100}
  assert sweeps.expand_sweep(
    {"common": {"train.steps": 7}, "grid": {"model.dropout": [0.0, 0.5]}}
  ) == [{"model.dropout": 0.0}, {"model.dropout": 0.5}]
  monkeypatch.setattr(sweeps, "get_sweeps", lambda experiment: {"reg": spec})
  points = sweep_script.plan_sweep("lenet5_mnist", "reg", str(tmp_path), "smoke", ["train.steps=3"])
  assert [p.name for p in points] == ["base", "model.dropout=0.5"]
  # The sweep's common overrides, then the command line's (which may change them), then the point's.
  assert [p.config.train.steps for p in points] == [3, 3]
  assert [p.config.data.train_size for p in points] == [100, 100]
  assert [p.config.model.dropout for p in points] == [0.0, 0.5]
  assert points[1].common == ["train.steps=7", "data.train_size=100", "train.steps=3"]
  assert "--config.data.train_size=100" in points[1].flags
  for bad, message in [
    ({"common": ["train.steps=3"], "points": [{}]}, "must be a dict"),
    ({"common": {"wandb.name": "x"}, "points": [{}]}, "cannot be set"),
  ]:
    with pytest.raises(ConfigError, match=message):
      sweeps.sweep_common(bad)


def test_point_names_are_readable_safe_and_unique():
  assert (
    sweeps.point_name({"optim.name": "sgd", "optim.learning_rate": 0.1})
    == "optim.name=sgd,optim.learning_rate=0.1"
  )
  assert sweeps.point_name({}) == "base"
  points = [
    {"data.dataset": "sklearn:digits"},
    {"data.dataset": "sklearn_digits"},
    {"data.dataset": "image_folder:a/b"},
    {"data.mean": (0.5, 0.5)},
    {"data.mean": (0.5, 0.25)},
    {"loss.name": "a,b=c"},
    {"loss.name": "a_b_c"},
    {"loss.name": "x" * 400},
    {"loss.name": "x" * 401},
    {"train.scan_steps": True},
    {"optim.learning_rate": 1e-5},
  ]
  names = [sweeps.point_name(p) for p in points]
  assert len(set(names)) == len(names), names
  for name in names:
    assert SAFE_NAME.match(name) and len(name) <= 150 and name not in (".", ".."), name
  assert names[0].startswith(
    "data.dataset=sklearn_digits-"
  )  # readable, with a hash for the changed ":"


def test_lenet5_sweeps_apply_to_the_config():
  available = sweeps.get_sweeps("lenet5_mnist")
  assert {"optimizers", "losses", "regularisation"} <= set(available)
  for spec in available.values():
    common = sweeps.point_overrides(sweeps.sweep_common(spec))
    for point in sweeps.expand_sweep(spec):
      config = sweeps.point_config("lenet5_mnist", "smoke", [*common, "train.steps=3"], point)
      assert config.train.steps == 3
      for key, value in {**sweeps.sweep_common(spec), **point}.items():
        if key != "train.steps":
          assert functools.reduce(lambda node, part: node[part], key.split("."), config) == value, (
            key
          )


def test_point_is_finished_only_with_its_result_and_its_config(tmp_path):
  config = sweeps.point_config("lenet5_mnist", "smoke", [], {"optim.name": "sgd"})
  workdir = str(tmp_path / "point")
  assert sweeps.point_finished(workdir, config) == (False, [])
  sweeps.save_point(workdir, {"optim.name": "sgd"}, config)
  assert sweeps.point_finished(workdir, config) == (False, [])  # started, not finished: resume it
  (tmp_path / "point" / "result.json").write_text("{}")
  assert sweeps.point_finished(workdir, config) == (True, [])
  config.wandb.mode = "offline"  # where a run is logged does not make it another run
  assert sweeps.point_finished(workdir, config) == (True, [])
  config.optim.learning_rate = 0.5
  finished, diffs = sweeps.point_finished(workdir, config)
  assert not finished and diffs == ["optim.learning_rate: 0.002 -> 0.5"]


def test_a_key_the_base_config_gained_since_a_point_ran_is_no_difference(tmp_path):
  from configs.common import base_config  # pylint: disable=g-import-not-at-top

  config = sweeps.point_config("lenet5_mnist", "smoke", [], {"optim.name": "rmsprop"})
  workdir = tmp_path / "point"
  sweeps.save_point(str(workdir), {"optim.name": "rmsprop"}, config)
  (workdir / "result.json").write_text("{}")
  record = json.loads((workdir / sweeps.POINT_FILE).read_text())
  del record["config"]["optim"]["rmsprop_momentum"]  # as saved before the key joined base_config()
  (workdir / sweeps.POINT_FILE).write_text(json.dumps(record))
  assert sweeps.point_finished(str(workdir), config, base_config()) == (True, [])
  # Without the defaults, or when the point now asks for another value, it is a different run.
  assert sweeps.point_finished(str(workdir), config)[1] == [
    "optim.rmsprop_momentum: '<missing>' -> 0.0"
  ]
  config.optim.rmsprop_momentum = 0.9
  assert sweeps.point_finished(str(workdir), config, base_config())[1] == [
    "optim.rmsprop_momentum: '<missing>' -> 0.9"
  ]


def test_unknown_sweep_lists_the_configs_sweeps(capsys, tmp_path):
  assert sweep_script.main(["lenet5_mnist", "--sweep", "nope", "--workdir", str(tmp_path)]) == 2
  err = capsys.readouterr().err
  assert "unknown sweep 'nope'" in err and "losses, optimizers" in err


def test_swept_key_on_the_command_line_is_an_error(capsys, tmp_path):
  assert (
    sweep_script.main(
      ["lenet5_mnist", "--sweep", "losses", "--workdir", str(tmp_path), "--config.loss.name=mse"]
    )
    == 2
  )
  assert "set by the sweep" in capsys.readouterr().err
  assert not os.listdir(tmp_path)


def test_an_impossible_setting_stops_the_sweep_before_any_point_runs(capsys, tmp_path):
  assert (
    sweep_script.main(
      [
        "lenet5_mnist",
        "--sweep",
        "losses",
        "--workdir",
        str(tmp_path / "s"),
        "--config.train.batch_size=0",
      ]
    )
    == 2
  )
  assert (
    "impossible setting: train.batch_size must be an integer >= 1, got 0" in capsys.readouterr().err
  )
  assert not (tmp_path / "s").exists()


def test_failed_point_does_not_stop_the_sweep(monkeypatch, tmp_path, capsys, two_losses):
  calls = []

  def fake_call(command, **kwargs):
    calls.append(command)
    if len(calls) == 1:
      return 1  # the first point crashes
    workdir = command[command.index("--workdir") + 1]
    with open(os.path.join(workdir, "result.json"), "w") as f:
      json.dump({"value": 1.0, "steps": 4, "wall_s": 2.0, "eval": {"test/error": 0.01}}, f)
    return 0

  monkeypatch.setattr(subprocess, "call", fake_call)
  assert (
    sweep_script.main(["lenet5_mnist", "--sweep", "losses", "--workdir", str(tmp_path), *TINY]) == 1
  )
  out = capsys.readouterr().out
  assert "loss.name=cross_entropy: failed (exit status 1)" in out
  assert "loss.name=mse: done" in out and "1 done, 0 skipped, 1 failed" in out
  record = json.load(open(tmp_path / "lenet5_mnist" / "losses" / "sweep.json"))
  assert [p["status"] for p in record["points"]] == ["failed", "done"]
  assert len(calls) == 2 and all("--config.wandb.group=lenet5_mnist/losses" in c for c in calls)


def test_jobs_run_points_at_once(monkeypatch, tmp_path):
  running, most = [], []
  lock = threading.Lock()

  def fake_call(command, **kwargs):
    with lock:
      running.append(command)
      most.append(len(running))
    time.sleep(0.3)
    workdir = command[command.index("--workdir") + 1]
    with open(os.path.join(workdir, "result.json"), "w") as f:
      json.dump({"value": 1.0, "steps": 4, "wall_s": 2.0, "eval": {"test/error": 0.01}}, f)
    with lock:
      running.remove(command)
    return 0

  monkeypatch.setattr(subprocess, "call", fake_call)
  assert (
    sweep_script.main(
      ["lenet5_mnist", "--sweep", "optimizers", "--workdir", str(tmp_path), "--jobs", "2", *TINY]
    )
    == 0
  )
  n = len(sweeps.expand_sweep(sweeps.get_sweeps("lenet5_mnist")["optimizers"]))
  assert max(most) == 2 and len(most) == n
  record = json.load(open(tmp_path / "lenet5_mnist" / "optimizers" / "sweep.json"))
  assert [p["status"] for p in record["points"]] == ["done"] * n


def test_tiny_sweep_runs_skips_and_reports(monkeypatch, tmp_path, capsys, two_losses):
  """Two real points (cross-entropy and MSE) as processes; a rerun skips both; the report."""
  monkeypatch.setenv("VISION_JAX_NO_PROGRESS", "1")
  argv = ["lenet5_mnist", "--sweep", "losses", "--workdir", str(tmp_path), *TINY]
  # Both at once: most of a tiny point is start-up and compilation, on one core each.
  assert sweep_script.main([*argv, "--jobs", "2"]) == 0, capsys.readouterr().out
  sweep_dir = tmp_path / "lenet5_mnist" / "losses"
  names = ["loss.name=cross_entropy", "loss.name=mse"]
  record = json.load(open(sweep_dir / "sweep.json"))
  assert [(p["name"], p["status"]) for p in record["points"]] == [(n, "done") for n in names]
  for name, loss in zip(names, ("cross_entropy", "mse")):
    config = json.load(open(sweep_dir / name / "config.json"))
    assert config["loss"]["name"] == loss and config["train"]["steps"] == 4
    assert config["wandb"]["group"] == "lenet5_mnist/losses" and config["wandb"]["name"] == name
    assert json.load(open(sweep_dir / name / "result.json"))["steps"] == 4

  # A rerun starts no process: both points are finished with the same config.
  monkeypatch.setattr(
    subprocess, "call", lambda *a, **k: pytest.fail("a finished point was run again")
  )
  capsys.readouterr()
  assert sweep_script.main(argv) == 0
  out = capsys.readouterr().out
  assert out.count(": skipped") == 2 and "0 done, 2 skipped, 0 failed" in out
  # Another budget in the same directory is not mistaken for these runs, nor resumed from them.
  before = open(sweep_dir / "sweep.json").read()
  assert sweep_script.main([*argv, "--config.train.steps=6"]) == 1
  out = capsys.readouterr().out
  assert out.count("train.steps: 4 -> 6") == 2 and "nothing run" in out
  assert open(sweep_dir / "sweep.json").read() == before

  out_dir = tmp_path / "report"
  path = report_script.write_report(
    str(sweep_dir), "test/error", str(out_dir), image_prefix="docs/x/"
  )
  text = open(path).read()
  rows = [line for line in text.splitlines() if line.startswith("| `")]
  assert [row.split(" | ")[1] for row in rows] == ["cross_entropy", "mse"]
  assert all(row.split(" | ")[-3] == "4" for row in rows)  # steps
  assert "test/error (%)" in text and "![curves](docs/x/curves.png)" in text
  for png in ("curves.png", "final_test_error.png"):
    assert open(out_dir / png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
  with pytest.raises(KeyError, match="test/error"):
    report_script.write_report(str(sweep_dir), "test/nope", str(out_dir))


def _fake_point(point_dir, train_error, test_error, steps=(1000, 2000, 3000, 4000)):
  """A finished point's files: metrics.jsonl records as the loop writes them, and result.json."""
  os.makedirs(point_dir)
  with open(os.path.join(point_dir, "metrics.jsonl"), "w") as f:
    for i, step in enumerate(steps):
      f.write(
        json.dumps(
          {"step": step, "train/accuracy": 1 - train_error[i], "train/loss": 1.0 / (i + 1)}
        )
        + "\n"
      )
      f.write(
        json.dumps({"step": step, "test/accuracy": 1 - test_error[i], "test/error": test_error[i]})
        + "\n"
      )
  with open(os.path.join(point_dir, "result.json"), "w") as f:
    json.dump(
      {
        "value": 100 * test_error[-1],
        "steps": steps[-1],
        "wall_s": 1.0,
        "eval": {"test/error": test_error[-1], "test/accuracy": 1 - test_error[-1]},
      },
      f,
    )


def test_report_shows_the_step_an_early_stopped_point_ended_on(tmp_path):
  sweep_dir = tmp_path / "lenet5_mnist" / "regularisation"
  entries = []
  for name, best in (("base", None), ("early", 3000)):
    _fake_point(
      str(sweep_dir / name), train_error=[0.5, 0.2, 0.1, 0.05], test_error=[0.5, 0.25, 0.15, 0.2]
    )
    if best:
      result = json.load(open(sweep_dir / name / "result.json"))
      json.dump(
        {**result, "best_step": best, "early_stopped": True},
        open(sweep_dir / name / "result.json", "w"),
      )
    entries.append(
      {
        "name": name,
        "overrides": {"train.early_stopping.patience": 1} if best else {},
        "workdir": name,
        "status": "done",
      }
    )
  with open(sweep_dir / "sweep.json", "w") as f:
    json.dump({"experiment": "lenet5_mnist", "sweep": "regularisation", "points": entries}, f)
  rows = {
    line.split(" | ")[0]: line
    for line in open(report_script.write_report(str(sweep_dir)))
    if line.startswith("| `")
  }
  assert " | 4000 (best: 3000) | " in rows["| `early`"] and " | 4000 | " in rows["| `base`"]


def test_report_draws_the_configs_figure6_for_degradation(tmp_path, monkeypatch, capsys):
  """resnet_cifar10's degradation sweep: its config's get_sweep_plots() asks for Figure 6."""
  points = sweeps.expand_sweep(sweeps.get_sweeps("resnet_cifar10")["degradation"])
  sweep_dir = tmp_path / "resnet_cifar10" / "degradation"
  entries = []
  for i, point in enumerate(points):
    name = sweeps.point_name(point)
    entries.append({"name": name, "overrides": point, "workdir": name, "status": "done"})
    _fake_point(
      str(sweep_dir / name),
      train_error=[0.5, 0.2, 0.1, 0.05 + 0.01 * i],
      test_error=[0.5, 0.25, 0.15, 0.1 + 0.01 * i],
    )
  with open(sweep_dir / "sweep.json", "w") as f:
    json.dump({"experiment": "resnet_cifar10", "sweep": "degradation", "points": entries}, f)

  drawn = []
  real_plot_panels = report_script.plotting.plot_panels

  def spy(panels, curves, path, **kwargs):
    drawn.append((panels, curves, kwargs))
    return real_plot_panels(panels, curves, path, **kwargs)

  monkeypatch.setattr(report_script.plotting, "plot_panels", spy)
  text = open(report_script.write_report(str(sweep_dir))).read()
  assert "figure6.png)" in text
  assert open(sweep_dir / "figure6.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
  ((panels, curves, kwargs),) = drawn
  assert {panel: sorted(runs) for panel, runs in panels.items()} == {
    "plain": ["plain20", "plain56"],
    "ResNet": ["resnet20", "resnet56"],
  }
  assert kwargs["scale"] == 100.0 and kwargs["ylim"] == (0, 20)
  # Training error is 1 - train/accuracy, dashed; test error is test/error itself, bold.
  train, test = curves
  assert train["style"] == "dashed" and test["style"] == "bold"
  records = panels["ResNet"]["resnet56"]
  steps, train_error = plotting.curve_points(
    records, train["key"], train.get("complement", False), 100.0
  )
  assert steps == [1000, 2000, 3000, 4000] and train_error == pytest.approx([50, 20, 10, 8])
  assert plotting.curve_points(records, test["key"], test.get("complement", False), 100.0)[
    1
  ] == pytest.approx([50, 25, 15, 13])
  # A short run's errors lie above the paper's 0-20% axis: --ylim replaces it.
  drawn.clear()
  assert report_script.main([str(sweep_dir), "--ylim", "30,70"]) == 0
  assert drawn[0][2]["ylim"] == (30.0, 70.0)
  for bad, message in (
    ("30", "expected LOW,HIGH"),
    ("70,30", "LOW must be below HIGH"),
    ("a,b", "expected LOW,HIGH"),
  ):
    with pytest.raises(SystemExit):
      report_script.main([str(sweep_dir), "--ylim", bad])
    assert message in capsys.readouterr().err


def test_sweep_plots_are_checked():
  good = {"file": "f.png", "curves": [{"key": "test/error"}]}
  sweeps.check_plot(good, "here")
  for bad, message in [
    ({**good, "colour": "red"}, "unknown plot keys"),
    ({**good, "file": "a/f.png"}, "file name"),
    ({**good, "curves": []}, "at least one curve"),
    ({**good, "curves": [{"key": "x", "style": "wavy"}]}, "style must be"),
    ({**good, "panels": {"a": {"model.name": "plain20"}}}, "lists of values"),
  ]:
    with pytest.raises(ConfigError, match=message):
      sweeps.check_plot(bad, "here")


def test_googlenet_aux_sweep_is_with_and_without_the_heads(tmp_path, capsys):
  points = sweep_script.plan_sweep("googlenet_cifar10", "aux", str(tmp_path), None, [])
  assert [p.name for p in points] == ["model.aux_logits=True", "model.aux_logits=False"]
  assert [p.config.model.aux_logits for p in points] == [True, False]
  assert sweeps.config_differences(
    json.loads(points[0].config.to_json_best_effort()), points[1].config
  ) == ["model.aux_logits: True -> False"]
  assert (
    sweep_script.main(
      ["googlenet_cifar10", "--sweep", "aux", "--workdir", str(tmp_path), "--dry-run"]
    )
    == 0
  )
  out = capsys.readouterr().out
  assert out.count("would run: python -m experiments.googlenet_cifar10") == 2 and not os.listdir(
    tmp_path
  )


def test_every_configs_sweeps_plan_with_valid_keys(tmp_path):
  """Each sweep of each config expands, and every point's overrides are keys its config has."""
  names = sorted(
    f[:-3]
    for f in os.listdir(os.path.join(sweep_script.REPO_ROOT, "experiments"))
    if f.endswith(".py") and f != "__init__.py"
  )
  planned = 0
  for name in names:
    for sweep in sweeps.get_sweeps(name):
      planned += len(sweep_script.plan_sweep(name, sweep, str(tmp_path), None, []))
  assert planned >= 30 and not os.listdir(tmp_path)
