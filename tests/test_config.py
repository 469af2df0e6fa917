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


def test_optimizer_and_transfer_keys_are_settable_in_every_experiment():
  # Read by vision_jax/train/optimizers.py and ClassificationTask; in base_config(), so the
  # command line can set them where an experiment's config does not.
  config = load_config("lenet5_mnist")
  apply_overrides(config, ["optim.eps=1e-4", "optim.rmsprop_momentum=0.9", "optim.head=F6/",
                           "optim.backbone_lr_scale=0.1", "optim.frozen=('C1/',)", "train.frozen_batch_stats=true"])
  assert config.optim.eps == 1e-4 and config.optim.rmsprop_momentum == 0.9 and config.optim.head == "F6/"
  assert config.optim.backbone_lr_scale == 0.1 and config.optim.frozen == ("C1/",)
  assert config.train.frozen_batch_stats is True
