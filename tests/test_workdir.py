"""A command's flags, paths and workdir: each wrong one is one clear error before anything is
computed, one run at a time per workdir, a run continued only with its own settings (unless asked),
and the progress messages printed."""

import errno
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest
from conftest import REPO, run_env

from scripts import report as report_script
from scripts import sweep as sweep_script
from vision_jax import cli
from vision_jax.train import mesh
from vision_jax.train.metric_writers import read_metrics

QUIET = ("--variant", "smoke", "--config.wandb.mode=disabled")
# vision_jax.train.workdir's files, named here so that these tests also run (and fail) on a
# checkout from before it.
LOCK_FILE, SEGMENTS_FILE = "run.lock", "segments.jsonl"


def read_segments(workdir):
  path = os.path.join(workdir, SEGMENTS_FILE)
  return [json.loads(line) for line in open(path)] if os.path.exists(path) else []


def run_digits(workdir, *argv):
  """lenet5_digits' command, in this process."""
  from experiments import lenet5_digits  # pylint: disable=g-import-not-at-top

  return cli.main(
    "lenet5_digits",
    lenet5_digits.run,
    paper="p",
    metric="m",
    paper_value=None,
    argv=["--workdir", str(workdir), *QUIET, *argv],
  )


def digits_command(workdir, *argv):
  return [
    sys.executable,
    "-m",
    "experiments.lenet5_digits",
    "--workdir",
    str(workdir),
    *QUIET,
    *argv,
  ]


def run_command(workdir, *argv, timeout=600):
  """lenet5_digits' command as its own process: its CompletedProcess, output captured."""
  return subprocess.run(
    digits_command(workdir, *argv),
    cwd=REPO,
    env=run_env(),
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def assert_one_error_line(stderr: str, pattern: str) -> str:
  """The command ended with one "error: ..." line matching `pattern`, and no traceback."""
  import re  # pylint: disable=g-import-not-at-top

  assert "Traceback" not in stderr, stderr[-3000:]
  last = stderr.strip().splitlines()[-1]
  assert re.match(pattern, last), stderr[-3000:]
  return last


# --- 1. multi-process flags ------------------------------------------------------------------


def test_a_multi_process_run_without_its_flags_is_one_error_before_joining(tmp_path):
  # Before: ValueError: coordinator_address should be defined (a traceback from jax.distributed).
  with pytest.raises(
    SystemExit,
    match=r"^error: --num_processes 2 needs --coordinator_address HOST:PORT .* and --process_id I "
    r"\(0 to 1;",
  ):
    run_digits(tmp_path / "a", "--num_processes=2")
  for flags, message in (
    (
      ["--num_processes=2", "--process_id=0"],
      r"^error: --num_processes 2 needs --coordinator_address HOST:PORT",
    ),
    (
      ["--num_processes=2", "--coordinator_address=127.0.0.1:1"],
      r"^error: --num_processes 2 needs --process_id I \(0 to 1;",
    ),
    (
      ["--num_processes=2", "--coordinator_address=127.0.0.1:1", "--process_id=2"],
      r"^error: --process_id must be 0 to 1, got 2",
    ),
    (
      ["--num_processes=2", "--coordinator_address=localhost", "--process_id=1"],
      r"^error: --coordinator_address must be HOST:PORT",
    ),
    (["--num_processes=0"], r"^error: --num_processes must be at least 1, got 0"),
    (
      ["--coordinator_address=127.0.0.1:1", "--process_id=0"],
      r"^error: --coordinator_address and --process_id given without --num_processes N",
    ),
  ):
    with pytest.raises(SystemExit, match=message):
      run_digits(tmp_path / "a", *flags)
  assert not (tmp_path / "a").exists()  # nothing is written
  assert mesh.check_distributed_flags(None, None, None) is False
  assert mesh.check_distributed_flags(None, 1, 0) is False
  assert mesh.check_distributed_flags("h:1", 2, 1) is True
  assert mesh.check_distributed_flags(None, None, None, auto_detect=True) is True


def test_the_command_line_of_a_multi_process_run_without_its_address_ends_in_one_line(tmp_path):
  done = run_command(tmp_path / "a", "--num_processes=2", timeout=300)
  assert done.returncode != 0
  assert_one_error_line(done.stderr, r"^error: --num_processes 2 needs --coordinator_address")
  # --distributed where there is no cluster to detect: JAX's ValueError, in one line.
  env = {
    k: v for k, v in run_env().items() if not k.startswith(("SLURM_", "JAX_COORDINATOR", "OMPI_"))
  }
  done = subprocess.run(
    digits_command(tmp_path / "b", "--distributed"),
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert done.returncode != 0
  assert_one_error_line(
    done.stderr, r"^error: cannot join a multi-process run: coordinator_address should be defined"
  )


# --- 2. paths ----------------------------------------------------------------------------------


def test_a_workdir_or_cache_that_is_not_a_writable_directory_is_one_error(tmp_path, monkeypatch):
  # Before: NotADirectoryError tracebacks, once the data were prepared and the model built.
  a_file = tmp_path / "a_file"
  a_file.write_text("not a directory")
  for workdir, message in (
    (a_file, r"^error: --workdir .*a_file is a file; expected a directory this process can write"),
    ("/dev/null", r"^error: --workdir /dev/null is a character device; expected a directory"),
    (
      a_file / "run",
      r"^error: --workdir .*a_file/run cannot be made: .*a_file is a file; expected a directory",
    ),
  ):
    with pytest.raises(SystemExit, match=message):
      run_digits(workdir)
  os.symlink(tmp_path / "gone", tmp_path / "link")
  with pytest.raises(
    SystemExit, match=r"^error: --workdir .*link is a symbolic link to .*gone, which does not exist"
  ):
    run_digits(tmp_path / "link")
  monkeypatch.setenv("VISION_JAX_CACHE", str(a_file))
  with pytest.raises(SystemExit, match=r"^error: \$VISION_JAX_CACHE .*a_file is a file; expected"):
    run_digits(tmp_path / "run")
  monkeypatch.setenv("VISION_JAX_CACHE", str(a_file / "cache"))
  with pytest.raises(
    SystemExit, match=r"^error: \$VISION_JAX_CACHE .* cannot be made: .*a_file is"
  ):
    run_digits(tmp_path / "run")
  assert a_file.read_text() == "not a directory"
  assert not (tmp_path / "run").exists()  # the workdir is not made when the cache is wrong


def test_a_read_only_file_system_is_named(tmp_path, monkeypatch):
  """Deterministic, wherever the tests run: the write that fails is the check's own."""
  from vision_jax.errors import PathError  # pylint: disable=g-import-not-at-top
  from vision_jax.train import workdir as workdir_lib  # pylint: disable=g-import-not-at-top

  real_mkstemp = tempfile.mkstemp

  def read_only(*args, dir=None, **kwargs):  # pylint: disable=redefined-builtin
    if dir and str(dir).startswith(str(tmp_path / "ro")):
      raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.path.join(dir, ".write-test-x"))
    return real_mkstemp(*args, dir=dir, **kwargs)

  (tmp_path / "ro").mkdir()
  monkeypatch.setattr(tempfile, "mkstemp", read_only)
  with pytest.raises(
    PathError, match=r"^--workdir .*ro cannot be written in: Read-only file system"
  ):
    workdir_lib.writable_directory(str(tmp_path / "ro"), "--workdir")
  assert workdir_lib.writable_directory(str(tmp_path / "rw" / "run"), "--workdir") == str(
    tmp_path / "rw" / "run"
  )


@pytest.fixture
def mounted_tmpfs(tmp_path):
  """A tmpfs mounted at tmp_path/mnt (root only; skipped where mounting is not allowed), and a
  function that remounts it read-only. A real read-only file system: root ignores permissions."""
  mnt = tmp_path / "mnt"
  mnt.mkdir()
  mounted = subprocess.run(
    ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)], capture_output=True, text=True
  )
  if mounted.returncode != 0:
    pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); see the test above")

  def read_only():
    subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True, capture_output=True)

  try:
    yield mnt, read_only
  finally:
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_workdir_or_cache_on_a_read_only_file_system_is_one_error(mounted_tmpfs, monkeypatch):
  # Before: OSError: [Errno 30] Read-only file system, a traceback.
  mnt, read_only = mounted_tmpfs
  run_digits(mnt / "finished")
  (mnt / "empty").mkdir()
  (mnt / "cache").mkdir()
  read_only()
  for name in ("finished", "empty"):
    with pytest.raises(
      SystemExit,
      match=rf"^error: --workdir .*{name} cannot be written in: Read-only file system .*expected a "
      "directory this process can write in",
    ):
      run_digits(mnt / name)
  with pytest.raises(
    SystemExit, match=r"^error: --workdir .*new cannot be made: Read-only file system"
  ):
    run_digits(mnt / "new")
  monkeypatch.setenv("VISION_JAX_CACHE", str(mnt / "cache"))
  with pytest.raises(
    SystemExit, match=r"^error: \$VISION_JAX_CACHE .*cache cannot be written in: Read-only file"
  ):
    run_digits(mnt.parent / "elsewhere")


def test_sweep_and_report_directories_that_cannot_be_written_are_one_error(tmp_path, capsys):
  a_file = tmp_path / "a_file"
  a_file.write_text("")
  # Before: NotADirectoryError tracebacks when sweep.json or the report was first written.
  for workdir in (a_file, "/dev/null"):
    assert sweep_script.main(["lenet5_mnist", "--sweep", "losses", "--workdir", str(workdir)]) == 2
    assert capsys.readouterr().err.startswith(f"error: --workdir {workdir}/lenet5_mnist/losses")
  sweep_dir = tmp_path / "sweep"
  (sweep_dir / "base").mkdir(parents=True)
  (sweep_dir / "base" / "metrics.jsonl").write_text(
    json.dumps({"step": 1, "train/loss": 1.0}) + "\n" + json.dumps({"step": 1, "test/error": 0.5})
  )
  (sweep_dir / "base" / "result.json").write_text(
    json.dumps({"value": 50.0, "steps": 1, "wall_s": 1.0, "eval": {"test/error": 0.5}})
  )
  (sweep_dir / "sweep.json").write_text(
    json.dumps(
      {
        "experiment": "lenet5_mnist",
        "sweep": "losses",
        "points": [{"name": "base", "overrides": {}, "workdir": "base", "status": "done"}],
      }
    )
  )
  assert report_script.main([str(sweep_dir), "--out", str(a_file)]) == 2
  assert capsys.readouterr().err.startswith(f"error: --out {a_file} is a file; expected")
  assert report_script.main([str(tmp_path / "nowhere")]) == 2
  assert "sweep.json not found" in capsys.readouterr().err
  assert report_script.main([str(sweep_dir), "--out", str(tmp_path / "report")]) == 0


# --- 3. one run per workdir ----------------------------------------------------------------------


def _wait_for(condition, what, timeout=300):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if condition():
      return
    time.sleep(0.05)
  raise AssertionError(f"timed out waiting for {what}")


def _holder(workdir):
  try:
    return json.loads((workdir / LOCK_FILE).read_text())
  except (OSError, ValueError):
    return {}


def _finished_steps(workdir):
  ckpt = workdir / "checkpoints"
  return sorted(int(s) for s in os.listdir(ckpt) if s.isdigit()) if ckpt.exists() else []


def _train_steps(workdir):
  return [r["step"] for r in read_metrics(workdir) if "train/loss" in r]


def test_a_second_run_on_a_workdir_is_refused_and_a_killed_one_leaves_no_lock(tmp_path):
  # Before: both ran to the end, and metrics.jsonl held duplicated, out-of-order records.
  workdir = tmp_path / "run"
  argv = ["--config.train.steps=200", "--config.train.eval_every=100"]
  first = subprocess.Popen(
    digits_command(workdir, *argv),
    cwd=REPO,
    env=run_env(),
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  try:
    # Stopped once it holds the workdir and has a checkpoint: it holds them as long as needed.
    _wait_for(lambda: _finished_steps(workdir) and first.poll() is None, "a first checkpoint")
    first.send_signal(signal.SIGSTOP)
    second = run_command(workdir, *argv)
    assert second.returncode != 0, "the second run ran"
    assert _holder(workdir).get("pid") == first.pid
    line = assert_one_error_line(
      second.stderr,
      rf"^error: --workdir .*run is in use by another run: pid {first.pid} on "
      rf"{socket.gethostname()}, started \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d \(\d+ s ago\): "
      r"python -m experiments.lenet5_digits .*--config.train.steps=200",
    )
    assert "wait for it to end or stop it, or give another --workdir" in line
    assert len(read_segments(str(workdir))) == 1  # the refused run wrote nothing
    killed_at = _finished_steps(workdir)[-1]
    first.send_signal(signal.SIGKILL)
    first.wait()
  finally:
    if first.poll() is None:
      first.kill()
      first.wait()
  # The kernel released the dead run's lock: the same command resumes it.
  third = run_command(workdir, *argv)
  assert third.returncode == 0, third.stderr[-3000:]
  assert f"resumed from step {killed_at} in " in third.stderr
  segments = read_segments(str(workdir))
  assert [s["from_step"] for s in segments] == [0, killed_at]
  assert [s["pid"] for s in segments] == [first.pid, _holder(workdir)["pid"]]
  assert _train_steps(workdir) == list(range(10, 201, 10))  # in order, each once
  result = json.loads((workdir / "result.json").read_text())
  assert [s["from_step"] for s in result["segments"]] == [0, killed_at]


def test_the_same_command_started_twice_at_once_runs_once(tmp_path):
  workdir = tmp_path / "run"
  procs = []
  for _ in range(2):
    procs.append(
      subprocess.Popen(
        digits_command(workdir),
        cwd=REPO,
        env=run_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
      )
    )
    time.sleep(0.5)
  outs = [p.communicate(timeout=600) for p in procs]
  codes = [p.returncode for p in procs]
  assert sorted(codes) == [0, 1], [err[-2000:] for _, err in outs]
  winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
  assert_one_error_line(
    outs[loser][1], rf"^error: --workdir .*run is in use by another run: pid {procs[winner].pid} "
  )
  assert _train_steps(workdir) == [10, 20]
  assert len(read_segments(str(workdir))) == 1


def test_the_processes_of_a_run_stop_together_when_its_workdir_is_in_use(tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  holder = open(workdir / LOCK_FILE, "a+")  # another run, as far as they can tell
  fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
  holder.write(
    json.dumps({"pid": 4321, "host": "elsewhere", "started": time.time(), "command": "x"})
  )
  holder.flush()
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  try:
    procs = [
      subprocess.Popen(
        digits_command(
          workdir,
          "--coordinator_address",
          f"127.0.0.1:{port}",
          "--num_processes=2",
          f"--process_id={i}",
        ),
        cwd=REPO,
        env=run_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
      )
      for i in range(2)
    ]
    errs = [p.communicate(timeout=600)[1] for p in procs]
  finally:
    holder.close()
  assert [p.returncode for p in procs] == [1, 1], [e[-2000:] for e in errs]
  assert_one_error_line(
    errs[0], r"^error: --workdir .* in use by another run: pid 4321 on elsewhere"
  )
  assert_one_error_line(errs[1], r"^error: process 0 of this run could not start")
  assert not os.path.exists(workdir / "metrics.jsonl")


# --- 4. settings of a continued run ------------------------------------------------------------


def test_a_run_continues_only_with_its_own_settings_unless_asked(tmp_path):
  # Before: the changed command resumed the finished run silently, and config.json and result.json
  # said it had run with the new settings throughout.
  workdir = tmp_path / "run"
  run_digits(workdir)
  before = {f: (workdir / f).read_text() for f in ("config.json", "result.json", "metrics.jsonl")}
  changes = [
    "--config.optim.learning_rate=0.5",
    "--config.train.steps=40",
    "--config.model.activation=tanh",
  ]
  with pytest.raises(SystemExit) as refused:
    run_digits(workdir, *changes)
  message = str(refused.value)
  assert message.startswith(f"error: --workdir {workdir} holds a run started with other settings")
  assert (
    "\n  model.activation: 'relu' -> 'tanh'\n  optim.learning_rate: 0.002 -> 0.5\n"
    "  train.steps: 20 -> 40\n" in message
  )
  assert "--allow_changed_config" in message
  assert {f: (workdir / f).read_text() for f in before} == before  # nothing was touched
  assert len(read_segments(str(workdir))) == 1

  result = run_digits(workdir, *changes, "--allow_changed_config")
  assert result["steps"] == 40
  first, second = result["segments"]
  assert (first["from_step"], first["changed"]) == (0, [])
  assert second["from_step"] == 20 and second["command"].endswith(
    "--config.model.activation=tanh --allow_changed_config"
  )
  assert second["changed"] == [
    "model.activation: 'relu' -> 'tanh'",
    "optim.learning_rate: 0.002 -> 0.5",
    "train.steps: 20 -> 40",
  ]
  assert json.loads((workdir / "config.json").read_text())["model"]["activation"] == "tanh"
  # The run now has the new settings: the same command continues it without the flag ...
  assert len(run_digits(workdir, *changes)["segments"]) == 3
  # ... and the old ones are a change.
  with pytest.raises(SystemExit, match=r"train.steps: 40 -> 20"):
    run_digits(workdir)


def test_a_workdir_from_before_the_records_is_compared_with_its_config_json(tmp_path):
  workdir = tmp_path / "run"
  run_digits(workdir)
  os.remove(workdir / SEGMENTS_FILE)
  with pytest.raises(SystemExit, match=r"holds a run started with other settings.*\n  train.steps"):
    run_digits(workdir, "--config.train.steps=30")
  assert run_digits(workdir)["segments"][0]["from_step"] == 20


def test_starts_that_wrote_nothing_are_no_run_to_continue(tmp_path):
  workdir = tmp_path / "run"
  # Refused before the first step, having written nothing but the record of its start.
  with pytest.raises(SystemExit, match=r"^error: train.best_metric 'test/eror' is not an eval"):
    run_digits(workdir, "--config.train.best_metric=test/eror")
  result = run_digits(workdir, "--config.train.steps=10")
  assert result["steps"] == 10
  assert [s["changed"] for s in result["segments"]] == [[], []]


# --- 5. progress messages ---------------------------------------------------------------------


def test_a_resumed_command_says_so(tmp_path):
  # Before: "resumed from step N" (logging.info) never appeared: importing orbax had configured
  # the root logger, at WARNING, before the command's logging.basicConfig.
  first = run_command(tmp_path / "run")
  assert first.returncode == 0, first.stderr[-3000:]
  assert "resumed from step" not in first.stderr
  again = run_command(tmp_path / "run")
  assert again.returncode == 0, again.stderr[-3000:]
  assert f"INFO resumed from step 20 in {tmp_path / 'run' / 'checkpoints'}" in again.stderr
  assert "Traceback" not in again.stderr
