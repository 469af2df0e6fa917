"""scripts.bench: times the loop's own train step on synthetic data and reports it as JSON."""

import json
import math
import sys

import jax
import pytest

from scripts import bench
from vision_jax.errors import ConfigError


def test_bench_lenet5_json(tmp_path, capsys, monkeypatch):
  monkeypatch.setitem(
    sys.modules, "torch", None
  )  # as if torch were not installed: a quick, certain skip
  path = tmp_path / "bench.json"
  result = bench.main(
    [
      "lenet5",
      "--batch",
      "4",
      "--channels",
      "1",
      "--steps",
      "2",
      "--steps-per-call",
      "1",
      "--json",
      str(path),
      "--compare-torch",
    ]
  )
  written = json.loads(path.read_text())
  assert written["model"] == "lenet5" and written["batch"] == 4 and written["backend"]
  assert (
    written["images_per_s"] > 0 and written["compile_s"] > 0 and written["peak_memory_bytes"] > 0
  )
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
  with pytest.raises(ConfigError, match="registered models"):
    bench.bench("no_such_model", batch=4)


def test_bench_steps_per_call_follows_the_loop_on_this_backend():
  result = bench.bench("lenet5", batch=2, channels=1, steps=2)
  # The loop scans 10 steps per call everywhere but on CPUs (train.scan_steps "auto").
  assert result["steps_per_call"] == (1 if jax.default_backend() == "cpu" else 10)
  assert result["timed_steps"] == (2 if jax.default_backend() == "cpu" else 10)


def test_bench_profile_summarises_where_the_step_time_went(tmp_path, capsys):
  result = bench.main(
    [
      "lenet5",
      "--batch",
      "4",
      "--channels",
      "1",
      "--steps",
      "1",
      "--steps-per-call",
      "1",
      "--profile",
      str(tmp_path / "trace"),
    ]
  )
  profile = result["profile"]
  assert profile["steps"] == 2 and profile["trace"].startswith(str(tmp_path / "trace"))
  [(device, p)] = profile["devices"].items()  # the one device (on a CPU, the host)
  assert 0 < p["busy_fraction"] <= 1 and 0 < p["busy_s"] <= p["span_s"]
  assert p["ops_per_step"] >= 5  # LeNet-5's forward alone has 5 layers
  shares = [o["share"] for o in p["top_ops"]]
  assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1 + 1e-9
  assert any("conv" in o["hlo_op"] for o in p["top_ops"])
  assert f"profile {device}: busy" in capsys.readouterr().out
  with pytest.raises(FileNotFoundError, match="create_perfetto_trace=True"):
    bench.profile_summary(str(tmp_path / "empty"), 1)


def test_union_of_intervals_and_the_gaps_between_them():
  busy, gaps = bench._union([(10, 20), (0, 5), (15, 30), (40, 41)])
  assert busy == 5 + 20 + 1 and gaps == [5, 10]
