"""scripts.bench: times the loop's own train step on synthetic data and reports it as JSON."""
import json
import math
import sys

import jax
import pytest

from scripts import bench


def test_bench_lenet5_json(tmp_path, capsys, monkeypatch):
  monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed: a quick, certain skip
  path = tmp_path / "bench.json"
  result = bench.main(["lenet5", "--batch", "4", "--channels", "1", "--steps", "2", "--steps-per-call", "1",
                       "--json", str(path), "--compare-torch"])
  written = json.loads(path.read_text())
  assert written["model"] == "lenet5" and written["batch"] == 4 and written["backend"]
  assert written["images_per_s"] > 0 and written["compile_s"] > 0 and written["peak_memory_bytes"] > 0
  assert written["timed_steps"] == 2
  assert written["images_per_s"] == pytest.approx(4 * written["steps_per_s"])
  assert math.isfinite(written["final_loss"])
  # Without torch the comparison is skipped with a reason; the JAX numbers stand.
  assert "needs torch" in written["torch"]["skipped"]
  line = capsys.readouterr().out
  assert "lenet5 batch 4" in line and "images/s" in line and "torch comparison skipped" in line
  assert result["images_per_s"] == written["images_per_s"]


def test_bench_rejects_bad_settings():
  with pytest.raises(ValueError, match="at least 1"):
    bench.bench("lenet5", batch=0)
  with pytest.raises(KeyError, match="registered models"):
    bench.bench("no_such_model", batch=4)


def test_bench_steps_per_call_follows_the_loop_on_this_backend():
  result = bench.bench("lenet5", batch=2, channels=1, steps=2)
  # The loop scans 10 steps per call everywhere but on CPUs (train.scan_steps "auto").
  assert result["steps_per_call"] == (1 if jax.default_backend() == "cpu" else 10)
  assert result["timed_steps"] == (2 if jax.default_backend() == "cpu" else 10)
