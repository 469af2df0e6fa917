import pytest

from vision_jax.config import ConfigError, apply_overrides, load_config, parse_arg


def test_overrides_convert_to_the_defaults_type():
  c = load_config("lenet5_mnist")
  apply_overrides(c, ["train.steps=7", "optim.learning_rate=0.5", "model.partial_c3=false",
                      "data.mean=(0.5,)", "optim.name=sgd"])
  assert c.train.steps == 7 and isinstance(c.train.steps, int)
  assert c.optim.learning_rate == 0.5
  assert c.model.partial_c3 is False
  assert tuple(c.data.mean) == (0.5,)
  assert c.optim.name == "sgd"


def test_unknown_key_lists_the_valid_ones():
  c = load_config("lenet5_mnist")
  with pytest.raises(ConfigError) as e:
    apply_overrides(c, ["train.stepz=3"])
  assert "train.stepz" in str(e.value) and "train.steps" in str(e.value) and "optim.name" in str(e.value)


def test_bad_value_names_key_and_type():
  c = load_config("lenet5_mnist")
  with pytest.raises(ConfigError, match="train.steps.*int"):
    apply_overrides(c, ["train.steps=many"])


def test_variants():
  assert parse_arg("smoke,model=resnet56", smoke=False, model="resnet20").model == "resnet56"
  assert parse_arg("smoke", smoke=False).smoke is True
  with pytest.raises(ConfigError, match="unknown variant"):
    parse_arg("smok", smoke=False)
  assert load_config("lenet5_mnist", "smoke").train.steps < load_config("lenet5_mnist").train.steps


def test_missing_config_file():
  with pytest.raises(ConfigError, match="configs/nope.py"):
    load_config("nope")
