"""Shared test set-up: quiet progress bars, the real datasets (skip only where they are absent)."""

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("VISION_JAX_NO_PROGRESS", "1")
os.environ.setdefault("WANDB_SILENT", "true")
# One XLA compilation cache for the whole session, subprocesses included: the many short runs of
# the same small models compile each program once. Every compilation is cached, however quick.
os.environ.setdefault(
  "JAX_COMPILATION_CACHE_DIR",
  os.path.join(
    os.environ.get("VISION_JAX_CACHE")
    or os.path.join(os.path.expanduser("~"), ".cache", "vision_jax"),
    "xla-tests",
  ),
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

from vision_jax.data.sources import datasets_dir  # noqa: E402


def require_dataset(name: str) -> str:
  """The path of a real dataset under $VISION_JAX_DATASETS, or skip saying why."""
  path = os.path.join(datasets_dir(), name)
  if not os.path.exists(path):
    pytest.skip(
      f"real dataset {name!r} not found at {path} (set $VISION_JAX_DATASETS to ../shared/datasets)"
    )
  return path


@pytest.fixture(scope="module")
def fast_compilation():
  """XLA's optimisations off for a module (`pytestmark = pytest.mark.usefixtures("fast_compilation")`):
  its many large models compile in a fraction of the time, and run once each."""
  import jax  # pylint: disable=g-import-not-at-top

  previous = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", previous)


def run_env(**extra) -> dict:
  """The environment for a subprocess running the project's commands."""
  env = {**os.environ, "PYTHONPATH": REPO, "VISION_JAX_NO_PROGRESS": "1", **extra}
  return env
