"""Devices: the data-parallel mesh, its shardings, and multi-process start-up."""

from __future__ import annotations

import os

import jax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from vision_jax.errors import ConfigError


def check_distributed_flags(
  coordinator_address: str | None,
  num_processes: int | None,
  process_id: int | None,
  auto_detect: bool = False,
) -> bool:
  """Whether the flags ask for a multi-process run; ConfigError saying what is expected when they
  ask for one that cannot start. Checked before `initialize_distributed`, which with missing
  flags would fail with JAX's own error, or wait for processes that will never come.

  With `auto_detect` (--distributed) the missing ones are JAX's to find on a cluster (SLURM,
  Cloud TPU, ...); without it a run of several processes needs all three: the address process 0
  listens on ($JAX_COORDINATOR_ADDRESS, if set, stands for the flag), the number of processes, and
  this process's index.
  """
  if num_processes is not None and num_processes < 1:
    raise ConfigError(f"--num_processes must be at least 1, got {num_processes}")
  if process_id is not None and (
    process_id < 0 or (num_processes is not None and process_id >= num_processes)
  ):
    upto = f" to {num_processes - 1}" if num_processes else " or more"
    raise ConfigError(f"--process_id must be 0{upto}, got {process_id}")
  if auto_detect:
    return True
  if num_processes is None:
    given = [
      flag
      for flag, value in (
        ("--coordinator_address", coordinator_address),
        ("--process_id", process_id),
      )
      if value is not None
    ]
    if given:
      raise ConfigError(
        f"{' and '.join(given)} given without --num_processes N, the number of processes in the "
        "run (or --distributed, to detect them all on a cluster)"
      )
    return False
  if num_processes == 1:
    return False
  coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
  missing = []
  if not coordinator_address:
    missing.append(
      "--coordinator_address HOST:PORT (where process 0 listens; the same for every process)"
    )
  if process_id is None:
    missing.append(
      f"--process_id I (0 to {num_processes - 1}; this process's index, a different one for each)"
    )
  if missing:
    raise ConfigError(
      f"--num_processes {num_processes} needs {' and '.join(missing)}; or --distributed, to "
      "detect them on a cluster (SLURM, Cloud TPU, ...)"
    )
  host, _, port = coordinator_address.rpartition(":")
  if not host or not port.isdigit():
    raise ConfigError(
      f"--coordinator_address must be HOST:PORT (process 0's), got {coordinator_address!r}"
    )
  return True


def initialize_distributed(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
) -> None:
  """Joins a multi-process run (`jax.distributed.initialize`).

  With no arguments JAX detects the cluster (Cloud TPU, SLURM, ...). On CPU processes the
  collectives go through gloo, so several processes on one machine make a real multi-host run.
  """
  if jax.config.jax_platforms in (None, "", "cpu") or "cpu" in str(jax.config.jax_platforms):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    jax.distributed.initialize(
      coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
    )
  except ValueError as e:  # what JAX could not find (with --distributed, no cluster detected)
    raise ConfigError(
      f"cannot join a multi-process run: {e} Give --coordinator_address HOST:PORT, "
      "--num_processes N and --process_id I, or run where --distributed detects them "
      "(SLURM, Cloud TPU, ...)"
    ) from None


def make_mesh() -> Mesh:
  """A 1-D mesh over every device of every process, axis "data"."""
  return jax.make_mesh((jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P("data"))
