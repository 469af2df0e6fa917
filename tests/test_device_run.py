"""scripts.device_run: what it carries to an accelerator machine, and how it runs jobs there
within a time budget (here on the CPU, with the project's own environment)."""

import importlib
import json
import os
import tarfile

import pytest

from scripts import device_run
from vision_jax.data.sources import get_source


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
  """Runs and carried files in tmp_path, not the repository's."""
  monkeypatch.setattr(device_run, "DEVICE_DIR", str(tmp_path / "device"))
  monkeypatch.setattr(device_run, "RUNS_DIR", str(tmp_path / "runs"))
  monkeypatch.setenv("VISION_JAX_CACHE", str(tmp_path / "cache"))
  get_source.cache_clear()  # sources opened earlier are remembered by name, with their old cache
  yield tmp_path
  get_source.cache_clear()


def test_carries_what_the_device_lacks_and_not_what_it_has():
  wanted = device_run.wanted_requirements(
    device_run._requirements(os.path.join(device_run.REPO_ROOT, "requirements.txt"))
  )
  names = {device_run._requirement_name(r) for r in wanted}
  assert {"tensorflow-datasets", "grain", "ml-collections", "array-record"} <= names
  assert not names & {
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "numpy",
    "scipy",
    "wandb",
  }


def test_every_job_names_a_runnable_module():
  for name, job in device_run.JOBS.items():
    module = job.command.split()[2]
    assert job.command.startswith("python -m ") and "{workdir}" in job.command, name
    assert os.path.exists(os.path.join(device_run.REPO_ROOT, *module.split(".")) + ".py"), name
    if module == "scripts.sweep":  # ... and a sweep its config has
      words = job.command.split()
      experiment, sweep = words[3], words[words.index("--sweep") + 1]
      assert sweep in importlib.import_module(f"configs.{experiment}").get_sweeps(), name


def test_runs_a_job_and_writes_the_summary_and_its_results(sandbox):
  out = sandbox / "out"
  entries = device_run.run(["smoke"], str(out), budget_s=600)
  assert [e["status"] for e in entries] == ["done"]
  assert sorted(os.listdir(out)) == ["results.tar.gz", "run.log", "summary.json"]
  summary = json.loads((out / "summary.json").read_text())
  assert (
    summary["jobs"][0]["result"]["experiment"] == "lenet5_digits"
    and summary["jobs"][0]["wall_s"] > 0
  )
  with tarfile.open(out / "results.tar.gz") as tar:
    names = tar.getnames()
  assert "runs/device/smoke/result.json" in names and "runs/device/smoke/log.txt" in names
  assert not any("checkpoints" in n for n in names)  # a finished job needs none


def test_a_job_past_the_budget_is_stopped_and_keeps_its_checkpoints(sandbox, monkeypatch):
  slow = device_run.Job(
    "python -c \"import os,time; os.makedirs('{workdir}/checkpoints/5'); "
    "open('{workdir}/checkpoints/5/x','w').write('1'); time.sleep(120)\"",
    "sleeps",
    0.1,
  )
  monkeypatch.setitem(device_run.JOBS, "slow", slow)
  out = sandbox / "out"
  entries = device_run.run(["slow", "smoke"], str(out), budget_s=15, reserve_s=0)
  assert [e["status"] for e in entries] == ["timed out", "not started"]
  assert entries[0]["wall_s"] < 60
  with tarfile.open(out / "results.tar.gz") as tar:
    assert "runs/device/slow/checkpoints/5/x" in tar.getnames()  # to resume in a later session


def test_a_carried_run_is_where_its_job_resumes(sandbox):
  carried = sandbox / "device" / "runs" / "smoke"
  carried.mkdir(parents=True)
  (carried / "marker").write_text("from an earlier session")
  device_run.run(["smoke"], str(sandbox / "out"), budget_s=600)
  assert (sandbox / "runs" / "smoke" / "marker").read_text() == "from an earlier session"


def test_bad_arguments_are_clear_errors(capsys):
  with pytest.raises(SystemExit):
    device_run.main(["run", "--out", "/tmp/x", "nosuchjob"])
  assert "unknown job(s) nosuchjob" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    device_run.main(["run", "--out", "/tmp/x", "--budget-s", "5", "smoke"])
  assert "at least 60" in capsys.readouterr().err


def test_a_jobs_environment_reaches_it_and_its_record(sandbox, monkeypatch):
  job = device_run.Job(
    "python -c \"import json,os; json.dump(dict(flags=os.environ['XLA_FLAGS']), "
    "open('{workdir}/bench.json', 'w'))\"",
    "echoes its flags",
    0.1,
    env=(("XLA_FLAGS", "--xla_cpu_fake=1"),),
  )
  monkeypatch.setitem(device_run.JOBS, "flags", job)
  [entry] = device_run.run(["flags"], str(sandbox / "out"), budget_s=120)
  assert entry["status"] == "done" and entry["bench"] == {"flags": "--xla_cpu_fake=1"}
  assert entry["command"].startswith("XLA_FLAGS=--xla_cpu_fake=1 python -c")


def test_a_prepared_dataset_is_carried_for_its_job(sandbox):
  """transfer_pets' pets travel prepared (598 images of 64x64x3 bytes, not 60 MB of JPEGs); its job reads that copy."""
  from conftest import require_dataset

  from vision_jax.config import load_config

  require_dataset("oxford_pets_3breeds")
  dest = sandbox / "device" / "prepared"
  device_run.carry_prepared(["transfer_pets"], str(dest))
  size = sum(f.stat().st_size for f in (dest / "transfer_pets").iterdir())
  assert 598 * 64 * 64 * 3 <= size < 8 * 2**20
  job = device_run.JOBS["transfer_pets"]
  assert job.prepared == ("transfer_pets",)
  command = job.command.format(workdir="w", device=str(sandbox / "device"))
  dataset = next(a for a in command.split() if a.startswith("--config.data.dataset=")).split(
    "=", 1
  )[1]
  assert dataset == f"prepared:{dest / 'transfer_pets'}"
  data = load_config("transfer_pets").data
  carried = get_source(dataset, **data.format_options.to_dict())
  assert carried.spec.image_shape == (64, 64, 3) and len(carried.split("test")) == 298
  assert carried.origin == data.dataset  # what the table names, not .device/prepared/transfer_pets


def test_preparing_a_missing_dataset_is_one_clear_error(sandbox, monkeypatch):
  monkeypatch.setenv("VISION_JAX_DATASETS", str(sandbox / "nowhere"))
  with pytest.raises(
    SystemExit, match=r"error: --prepared transfer_pets: .*does not exist.*--prepared ''"
  ):
    device_run.carry_prepared(["transfer_pets"], str(sandbox / "device" / "prepared"))
