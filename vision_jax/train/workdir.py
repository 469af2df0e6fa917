"""A run's workdir: checked before anything is computed, held by one run at a time, and a record
of every start.

    directory = writable_directory(path, "--workdir")          # PathError if it cannot be
    with Workdir.claim(path, config, command) as workdir:        # WorkdirError if it cannot be
      ...                                                        # workdir.segments() for result.json

`writable_directory` makes sure a directory a user named (a flag, an environment variable) is
one this process can create and write in, and says what is wrong with it otherwise: a file, a
device, a parent that is a file, a read-only file system.

`Workdir.claim` (the command line's, `cli.main`, for every experiment):

- takes `run.lock` in the workdir with `fcntl.flock`: a second run on the same workdir is refused
  at once, with the holder's pid, host, start time and command (written into the lock file). The
  kernel releases the lock when its process ends, however it ends, so a run killed with SIGKILL
  leaves no lock behind (the file stays, with the dead run's details, until the next run takes it).
  flock is advisory and per machine on some network file systems; Linux's NFS client takes it as
  a lock on the server.
- compares the settings with those the workdir's run was started with (the last record of
  `segments.jsonl`, or the `config.json` of a workdir written before there were records). A
  difference is refused, listing each key as "key: old -> new", unless the command asks to carry
  on with them (`allow_changed`, `--allow_changed_config`). W&B settings do not count: they change
  where a run is logged, not what it computes.
- appends one record to `segments.jsonl` per start: when, where, the command, the step it starts
  from and the settings, with the changes it was allowed to make. result.json lists them, so that
  a run trained partly under other settings says so.

A multi-process run shares one workdir: process 0 claims it, the others only check that they can
write there, and all of them stop when any could not (`cli.main` gathers the outcomes after
joining the run, so that none is left waiting for the others).
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import logging
import os
import socket
import stat
import tempfile
import time
from typing import Any

import ml_collections

from vision_jax.errors import PathError, WorkdirError

LOCK_FILE = "run.lock"
SEGMENTS_FILE = "segments.jsonl"
ALLOW_FLAG = "--allow_changed_config"


def _kind(path: str) -> str:
  """What a path that is not a directory is, in words: 'a file', 'a character device', ..."""
  mode = os.stat(path).st_mode
  for test, name in (
    (stat.S_ISREG, "a file"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
  ):
    if test(mode):
      return name
  return "not a directory"


def writable_directory(path: str, what: str) -> str:
  """`path`, absolute, as a directory this process can write in, created if it is missing.

  Raises PathError naming `what` (say "--workdir") and what is wrong: a file or device where the
  directory should be, a parent that is not a directory, a directory that cannot be created or
  written in (permissions, a read-only file system). Writing is tried, not inferred from the
  permission bits, which do not stop root and do not show a read-only mount.
  """
  expected = "expected a directory this process can write in, or a path where it can make one"
  if not path:
    raise PathError(f"{what} is empty; {expected}")
  full = os.path.abspath(path)
  if os.path.exists(full) and not os.path.isdir(full):
    raise PathError(f"{what} {path} is {_kind(full)}; {expected}")
  if os.path.islink(full) and not os.path.exists(full):
    raise PathError(
      f"{what} {path} is a symbolic link to {os.readlink(full)}, which does not exist; {expected}"
    )
  if not os.path.isdir(full):
    parent = os.path.dirname(full)
    while not os.path.exists(parent):
      parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
      raise PathError(f"{what} {path} cannot be made: {parent} is {_kind(parent)}; {expected}")
    try:
      os.makedirs(full, exist_ok=True)
    except OSError as e:
      raise PathError(f"{what} {path} cannot be made: {_reason(e)}; {expected}") from None
  try:
    fd, probe = tempfile.mkstemp(dir=full, prefix=".write-test-")
    os.close(fd)
    os.remove(probe)
  except OSError as e:
    raise PathError(f"{what} {path} cannot be written in: {_reason(e)}; {expected}") from None
  return full


def _reason(e: OSError) -> str:
  """An OSError in words: 'Read-only file system (/mnt/ro/run)'."""
  reason = e.strerror or str(e)
  if e.filename:
    reason += f" ({e.filename})"
  return reason


def _describe_holder(holder: dict[str, Any]) -> str:
  started = holder.get("started")
  when = ""
  if isinstance(started, (int, float)):
    stamp = datetime.datetime.fromtimestamp(started).strftime("%Y-%m-%d %H:%M:%S")
    when = f", started {stamp} ({time.time() - started:.0f} s ago)"
  return (
    f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}{when}: "
    f"{holder.get('command', '(command unknown)')}"
  )


def config_json(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """A config as the JSON the records and config.json hold."""
  return json.loads(config.to_json_best_effort(sort_keys=True))


def read_segments(workdir: str) -> list[dict[str, Any]]:
  """The records of `segments.jsonl`, one per start of the run in `workdir`, oldest first."""
  path = os.path.join(workdir, SEGMENTS_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def latest_checkpoint_step(workdir: str) -> int | None:
  """The last finished step in `workdir/checkpoints` (orbax renames a step's directory when it is
  complete), which a resumed run starts from; None when there is none."""
  directory = os.path.join(workdir, "checkpoints")
  try:
    steps = [int(s) for s in os.listdir(directory) if s.isdigit()]
  except OSError:
    return None
  return max(steps) if steps else None


class Workdir:
  """A workdir held by this process (see the module docstring). Use `claim`; `close` releases."""

  def __init__(self, directory: str, lock_file: Any, segments: list[dict[str, Any]]):
    self.directory = directory
    self._lock_file = lock_file
    self._segments = segments

  @classmethod
  def claim(
    cls,
    workdir: str,
    config: ml_collections.ConfigDict,
    command: str,
    *,
    allow_changed: bool = False,
    defaults: ml_collections.ConfigDict | None = None,
  ) -> "Workdir":
    """Checks and locks `workdir`, compares its settings and records this start (module docstring).

    `defaults`: the base config, for records that predate a key (`sweeps.config_differences`).
    Raises PathError or WorkdirError, having changed nothing in the workdir but the lock file.
    """
    directory = writable_directory(workdir, "--workdir")
    lock_file = _lock(directory, workdir, command)
    try:
      changes = _changed_settings(directory, config, defaults)
      if changes and not allow_changed:
        raise WorkdirError(
          f"--workdir {workdir} holds a run started with other settings; continuing it with "
          f"these would mix the two in one run:\n  "
          + "\n  ".join(changes)
          + f"\nRun the same settings again to resume it, use another --workdir for a new run, "
          f"or add {ALLOW_FLAG} to continue it with the new settings (recorded in "
          f"{SEGMENTS_FILE} and result.json)"
        )
      if changes:
        logging.warning(
          "continuing the run in %s with changed settings (%s):\n  %s",
          workdir,
          ALLOW_FLAG,
          "\n  ".join(changes),
        )
      record = {
        "started": time.time(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "command": command,
        "from_step": latest_checkpoint_step(directory) or 0,
        "changed": changes,
        "config": config_json(config),
      }
      path = os.path.join(directory, SEGMENTS_FILE)
      with open(path, "a") as f:
        f.write(json.dumps(record, default=str) + "\n")
      segments = read_segments(directory)
    except BaseException:
      lock_file.close()
      raise
    return cls(directory, lock_file, segments)

  def segments(self) -> list[dict[str, Any]]:
    """Each start of this run, oldest first, without its config: for result.json."""
    return [
      {
        "started": datetime.datetime.fromtimestamp(s["started"]).isoformat(timespec="seconds"),
        "from_step": s.get("from_step"),
        "command": s.get("command"),
        "changed": s.get("changed", []),
      }
      for s in self._segments
    ]

  def close(self) -> None:
    """Releases the lock (the kernel does so too when the process ends)."""
    if self._lock_file is not None:
      self._lock_file.close()
      self._lock_file = None

  def __enter__(self) -> "Workdir":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def _lock(directory: str, workdir: str, command: str):
  """The open lock file, locked by this process with its details in it; WorkdirError naming the
  holder if another process has it."""
  path = os.path.join(directory, LOCK_FILE)
  try:
    f = open(path, "a+")
  except OSError as e:
    raise PathError(
      f"--workdir {workdir}: cannot open its lock file {path}: {_reason(e)}"
    ) from None
  try:
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError as e:
    if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
      # A file system without locks: run, but say that nothing stops a second run.
      logging.warning(
        "cannot lock %s (%s); nothing stops a second run on this workdir", path, _reason(e)
      )
      return f
    holder = _read_holder(f)
    f.close()
    raise WorkdirError(
      f"--workdir {workdir} is in use by another run: {_describe_holder(holder)}. One run at a "
      "time per workdir: wait for it to end or stop it, or give another --workdir"
    ) from None
  f.seek(0)
  f.truncate()
  json.dump(
    {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "command": command},
    f,
  )
  f.flush()
  return f


def _read_holder(f) -> dict[str, Any]:
  """The holder's details; it writes them just after taking the lock, so an empty file is given a
  moment to fill."""
  for _ in range(20):
    f.seek(0)
    text = f.read()
    if text.strip():
      try:
        return json.loads(text)
      except ValueError:
        pass
    time.sleep(0.05)
  return {}


def _changed_settings(
  directory: str,
  config: ml_collections.ConfigDict,
  defaults: ml_collections.ConfigDict | None,
) -> list[str]:
  """ "key: old -> new" for each setting that differs from the run the workdir holds; [] when it
  holds none.

  The run's settings are those of the last start recorded in segments.jsonl, or for a workdir
  written before there were records, its config.json. A workdir holding nothing but the lock and
  the records (every start so far failed before writing anything, say for a missing dataset)
  holds no run: a start with other settings is a new run, not a continuation.

  Any difference counts, `train.steps` included: a longer run is the common case of continuing
  with a change, but the learning-rate schedule is laid out over the total steps, so the resumed
  steps are not those of a run started with the new number, and the flag says the user knows.
  """
  from vision_jax.sweeps import config_differences  # pylint: disable=g-import-not-at-top

  if not set(os.listdir(directory)) - {LOCK_FILE, SEGMENTS_FILE}:
    return []
  segments = read_segments(directory)
  if segments:
    saved = segments[-1]["config"]
  else:
    path = os.path.join(directory, "config.json")
    if not os.path.exists(path):
      return []
    try:
      with open(path) as f:
        saved = json.load(f)
    except ValueError:
      return []
  return config_differences(saved, config, defaults)
