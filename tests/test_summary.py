"""vision_jax.summary: the lecture's worked example and LeNet-5's paper numbers, read from the modules."""

import json
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from vision_jax import summary
from vision_jax.models import get_model


def by_name(rows):
  return {r["name"]: r for r in rows}


def test_lecture_worked_example():
  rows = by_name(summary.layer_table(get_model("lecture_convnet", num_classes=10), (256, 256, 3)))
  conv1, conv2 = rows["conv1"], rows["conv2"]
  # 64 filters of 3x3, stride 2, zero padding: 128x128x64, each output 3·3·3 weights and a bias.
  assert conv1["output_shape"] == (128, 128, 64)
  assert conv1["multiplications"] == 128 * 128 * 28 * 64
  # 128 filters of 5x5 over 64 channels, stride 2: 64x64x128 at 1601 each.
  assert conv2["output_shape"] == (64, 64, 128)
  assert conv2["multiplications"] == 64 * 64 * 1601 * 128
  # k' filters of h x h over k channels: k'(k·h² + 1) parameters.
  assert conv1["params"] == 64 * (3 * 3**2 + 1)
  assert conv2["params"] == 128 * (64 * 5**2 + 1)
  assert conv1["kernel_shape"] == (3, 3, 3, 64) and conv1["strides"] == (2,) and conv1["bias"]


def test_lecture_cli_prints_the_numbers(capsys):
  assert summary.main(["lecture_convnet", "--input-shape", "256,256,3"]) == 0
  text = capsys.readouterr().out
  assert "128x128x64" in text and f"{128 * 128 * 28 * 64:,}" in text
  assert "64x64x128" in text and f"{64 * 64 * 1601 * 128:,}" in text
  assert text.splitlines()[-1].startswith("total")


def test_lenet5_table_matches_the_paper():
  rows = summary.layer_table(get_model("lenet5", num_classes=10), (32, 32, 1))
  named = by_name(rows)
  assert named["C1"]["output_shape"] == (28, 28, 6)
  assert named["C1"]["params"] == 156
  assert named["C1"]["multiplications"] == 28 * 28 * 6 * 26 == 122_304
  assert named["C3"]["type"] == "PartialConv"
  assert named["C3"]["params"] == 1_516  # Table I: only the connected weights
  assert named["C3"]["multiplications"] == 151_600  # the paper's connections
  assert named["C5"]["params"] == 48_120
  assert named["F6"]["params"] == 10_164
  assert summary.totals(rows)["params"] == 60_806
  # The parameter-free max pooling shows its shape change.
  pools = [r for r in rows if r["type"] == "max_pool"]
  assert [p["output_shape"] for p in pools] == [(14, 14, 6), (5, 5, 16)]
  assert all(p["params"] == 0 and p["multiplications"] == 0 for p in pools)


def test_lenet5_full_c3_and_paper_subsampling():
  full = summary.layer_table(get_model("lenet5", num_classes=10, partial_c3=False), (32, 32, 1))
  assert by_name(full)["C3"]["params"] == 16 * (6 * 25 + 1)
  assert summary.totals(full)["params"] == 61_706
  paper = by_name(
    summary.layer_table(get_model("lenet5", num_classes=10, pooling="subsample"), (32, 32, 1))
  )
  # The paper: S2 has 12 trainable parameters and 5,880 connections, S4 32 and 2,000.
  assert (paper["S2"]["params"], paper["S2"]["multiplications"]) == (12, 5_880)
  assert (paper["S4"]["params"], paper["S4"]["multiplications"]) == (32, 2_000)
  assert "S2/avg_pool" not in paper  # the subsampling's own pooling is part of its row


@pytest.mark.parametrize("name", ["lenet5", "mlp", "lecture_convnet"])
def test_rows_sum_to_the_parameter_tree(name):
  model = get_model(name, num_classes=7)
  variables = jax.eval_shape(
    lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 1)), train=False)
  )
  expected = sum(math.prod(v.shape) for v in jax.tree.leaves(variables["params"]))
  rows = summary.layer_table(model, (32, 32, 1))
  assert "(other parameters)" not in by_name(
    rows
  )  # every parameter belongs to a called module's row
  assert summary.totals(rows)["params"] == expected


class _Custom(nn.Module):
  """A grouped bias-free conv, a conv called twice (shared weights), and a module with no rule."""

  @nn.compact
  def __call__(self, x, *, train=False):
    x = nn.Conv(8, (3, 3), feature_group_count=2, use_bias=False, padding="VALID", name="grouped")(
      x
    )
    shared = nn.Conv(8, (1, 1), name="shared")
    x = shared(shared(x))
    return _Scale(name="scale")(x), {}


class _Scale(nn.Module):
  @nn.compact
  def __call__(self, x):
    return x * self.param("gain", nn.initializers.ones, (x.shape[-1],))


def test_groups_bias_shared_weights_and_unknown_modules():
  rows = summary.layer_table(_Custom(), (6, 6, 4))
  grouped = rows[0]
  assert (
    grouped["kernel_shape"] == (3, 3, 2, 8)
    and grouped["feature_group_count"] == 2
    and not grouped["bias"]
  )
  assert grouped["multiplications"] == 4 * 4 * 8 * (3 * 3 * 4 // 2)
  first, second = rows[1], rows[2]
  assert first["name"] == second["name"] == "shared"
  assert (first["params"], second["params"]) == (8 * 8 + 8, 0)  # the same weights counted once
  assert first["multiplications"] == second["multiplications"] == 4 * 4 * 8 * 9
  scale = rows[3]
  assert scale["params"] == 8 and scale["multiplications"] is None
  total = summary.totals(rows)
  assert total["params"] == 3 * 3 * 2 * 8 + 72 + 8
  assert total["unknown_multiplications"] == ["scale"]
  text = summary.format_table(rows)
  assert "?" in text and "groups=2" in text


def test_json_and_bad_input(capsys):
  assert summary.main(["lenet5", "--kw", "partial_c3=False", "--json"]) == 0
  result = json.loads(capsys.readouterr().out)
  assert result["total"]["params"] == 61_706 and result["layers"][0]["output_shape"] == [28, 28, 6]
  assert summary.main(["no_such_model"]) == 2
  assert "registered models" in capsys.readouterr().err
  assert summary.main(["lenet5", "--input-shape", "28,28,1"]) == 2  # LeNet-5 wants 32x32
  assert "32, 32" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    summary.main(["lenet5", "--input-shape", "a,b"])
  with pytest.raises(ValueError, match="KEY=VALUE"):
    summary.parse_kwargs(["pooling"])
