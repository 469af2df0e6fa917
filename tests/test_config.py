import pytest

from vision_jax.config import (
  apply_overrides,
  check_config,
  experiment_rules,
  load_config,
  parse_arg,
)
from vision_jax.errors import ConfigError


def test_overrides_convert_to_the_defaults_type():
  c = load_config("lenet5_mnist")
  apply_overrides(
    c,
    [
      "train.steps=7",
      "optim.learning_rate=0.5",
      "model.partial_c3=false",
      "data.mean=(0.5,)",
      "optim.name=sgd",
    ],
  )
  assert c.train.steps == 7 and isinstance(c.train.steps, int)
  assert c.optim.learning_rate == 0.5
  assert c.model.partial_c3 is False
  assert tuple(c.data.mean) == (0.5,)
  assert c.optim.name == "sgd"


def test_unknown_key_lists_the_valid_ones():
  c = load_config("lenet5_mnist")
  with pytest.raises(ConfigError) as e:
    apply_overrides(c, ["train.stepz=3"])
  assert (
    "train.stepz" in str(e.value) and "train.steps" in str(e.value) and "optim.name" in str(e.value)
  )


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
  apply_overrides(
    config,
    [
      "optim.eps=1e-4",
      "optim.rmsprop_momentum=0.9",
      "optim.head=F6/",
      "optim.backbone_lr_scale=0.1",
      "optim.frozen=('C1/',)",
      "train.frozen_batch_stats=true",
    ],
  )
  assert (
    config.optim.eps == 1e-4 and config.optim.rmsprop_momentum == 0.9 and config.optim.head == "F6/"
  )
  assert config.optim.backbone_lr_scale == 0.1 and config.optim.frozen == ("C1/",)
  assert config.train.frozen_batch_stats is True


def _shipped_configs():
  """(name, config) of every experiment's config, default and smoke variant."""
  import glob
  import os

  for path in sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "configs", "*.py"))):
    name = os.path.basename(path)[:-3]
    if name not in ("__init__", "common", "gan_base"):
      for variant in (None, "smoke"):
        yield name, load_config(name, variant)


def test_every_config_and_variant_meets_the_bounds():
  """The shipped configs are possible settings under the common rules and their experiment's."""
  for name, config in _shipped_configs():
    check_config(config, experiment_rules(name))


def _is_numeric(value):
  """A number or a tuple of numbers, not a boolean."""
  values = value if isinstance(value, (tuple, list)) and value else (value,)
  return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def test_every_numeric_setting_has_bounds_or_says_where_they_are_checked():
  """A new number in a config gets a rule: in the common RULES (or OPTIM_RULES), its task's
  `RULES`, or its experiment's `RULES` (a `checked_where_used` one names where it is checked),
  so `--config.model.widths=(0, 8)` is refused with what it expects, not met by a traceback."""
  import functools

  from vision_jax.config import all_rules, flat_keys

  unruled = set()
  for name, config in _shipped_configs():
    rules = all_rules(config, experiment_rules(name))
    for key in flat_keys(config):
      if _is_numeric(functools.reduce(getattr, key.split("."), config)) and key not in rules:
        unruled.add(f"{name}: {key}")
  assert not unruled, "numeric settings with no bounds anywhere:\n" + "\n".join(sorted(unruled))


def test_a_task_declares_its_own_settings_rules_and_the_loop_checks_them(tmp_path):
  """A task's own setting (gan.latent_dim) is refused by the loop before any data are read, with
  what it expects, though the common RULES know nothing of it."""
  from vision_jax.config import RULES
  from vision_jax.tasks import GANTask
  from vision_jax.train.loop import train_and_evaluate

  assert "gan.latent_dim" not in RULES and "gan.latent_dim" in GANTask.RULES
  config = load_config("dcgan_mnist", "smoke")
  config.gan.latent_dim = 0
  config.data.dataset = "idx:/nonexistent/never/read"
  with pytest.raises(ConfigError, match=r"gan.latent_dim must be an integer >= 1, got 0"):
    train_and_evaluate(config, str(tmp_path / "run"), GANTask)
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
  "override, message",
  [
    ("train.batch_size=0", "train.batch_size must be an integer >= 1, got 0"),
    ("train.steps=-5", "train.steps must be an integer >= 0, got -5"),
    (
      "train.early_stopping.mode=mni",
      "train.early_stopping.mode must be one of 'min', 'max', got 'mni'",
    ),
    (
      "data.std=(0.2, 0.0, 0.2)",
      r"data.std must be one positive number per channel \(or one for all\), got \(0.2, 0.0, 0.2\)",
    ),
    ("data.augment.crop_padding=-1", "data.augment.crop_padding must be an integer >= 0, got -1"),
    ("data.on_device=maybe", "data.on_device must be one of 'auto', 'yes', 'no', got 'maybe'"),
    ("loss.label_smoothing=1.0", r"loss.label_smoothing must be a number in \[0, 1\), got 1.0"),
    ("optim.learning_rate=-0.1", "optim.learning_rate must be a number >= 0, got -0.1"),
    ("optim.momentum=1.5", r"optim.momentum must be a number in \[0, 1\), got 1.5"),
    (
      "optim.eps=0.0",
      r"optim.eps must be None \(the optimizer's default\) or a number > 0, got 0.0",
    ),
  ],
)
def test_an_impossible_setting_is_refused_with_what_it_expects(override, message):
  with pytest.raises(ConfigError, match=f"^impossible setting: {message}$"):
    apply_overrides(load_config("resnet_cifar10"), [override])


def test_every_impossible_setting_is_listed_and_each_player_s_optimizer_is_checked():
  with pytest.raises(ConfigError) as e:
    apply_overrides(
      load_config("dcgan_mnist"),
      ["optim.critic.learning_rate=-1", "optim.generator.b1=1.0", "data.mean=(0.5, 0.5)"],
    )
  assert str(e.value).splitlines() == [
    "impossible settings:",
    "  optim.critic.learning_rate must be a number >= 0, got -1.0",
    "  optim.generator.b1 must be a number in [0, 1), got 1.0",
    "  data.mean and data.std must have one value each per channel, got 2 and 1",
  ]
  # A config built in code meets the same bounds when the loop starts.
  from vision_jax.tasks import ClassificationTask
  from vision_jax.train.loop import train_and_evaluate

  config = load_config("lenet5_digits", "smoke")
  config.train.batch_size = -1
  with pytest.raises(ConfigError, match="train.batch_size must be an integer >= 1, got -1"):
    train_and_evaluate(config, "/nonexistent/never/written", ClassificationTask)


@pytest.mark.parametrize(
  "name, override, message",
  [
    (
      "gmm_mnist",
      "gmm.components=(0, 3)",
      r"gmm.components must be values, each an integer >= 1, got \(0, 3\)",
    ),
    ("face_embedding_orl", "face.far=2.0", r"face.far must be a number in \[0, 1\], got 2.0"),
    (
      "vae_mnist",
      "evaluation.iw_samples=0",
      "evaluation.iw_samples must be an integer >= 1, got 0",
    ),
    ("gan_mnist", "gan.latent_dim=0", "gan.latent_dim must be an integer >= 1, got 0"),
    ("transfer_pets", "pretrain.steps=0", "pretrain.steps must be an integer >= 1, got 0"),
    (
      "face_embedding_orl",
      "model.embedding_dim=0",
      "model.embedding_dim must be an integer >= 1, got 0",
    ),
    (
      "face_embedding_orl",
      "model.widths=(16, 0, 64, 128)",
      r"model.widths must be values, each an integer >= 1, got \(16, 0, 64, 128\)",
    ),
    ("mlp_vs_cnn", "shift=0", "shift must be an integer >= 1, got 0"),
    (
      "vae_mnist",
      "model.hidden=(200, -1)",
      r"model.hidden must be values, each an integer >= 1 \(none: no hidden layer\), got \(200, -1\)",
    ),
    ("dcgan_mnist", "model.critic.width=0", "model.critic.width must be an integer >= 1, got 0"),
  ],
)
def test_an_experiment_s_own_impossible_setting_is_refused(name, override, message):
  """The rules an experiment declares (its own and its task's) meet its command line's overrides."""
  with pytest.raises(ConfigError, match=f"^impossible setting: {message}$"):
    apply_overrides(load_config(name), [override], experiment_rules(name))


@pytest.mark.parametrize(
  "module", ["vision_jax.cli", "scripts.sweep", "scripts.torch_resnet_cifar10"]
)
def test_every_command_reads_config_overrides_alike_and_refuses_other_flags(module, capsys):
  """The experiments' CLI, the sweep runner and the PyTorch reference share one reading of
  --config.<key>=<value>; a misspelt flag is a usage error, never a silently dropped override."""
  import importlib  # pylint: disable=g-import-not-at-top

  parse_args = importlib.import_module(module).parse_args
  positional = ["lenet5_digits", "--sweep", "optimizers"] if module == "scripts.sweep" else []
  args, overrides = parse_args(
    positional + ["--workdir", "w", "--config.train.steps=3", "--config.optim.name=adam"]
  )
  assert args.workdir == "w" and overrides == ["train.steps=3", "optim.name=adam"]
  with pytest.raises(SystemExit):
    parse_args(positional + ["--workdir", "w", "--confg.train.steps=3"])
  err = capsys.readouterr().err
  assert (
    "unrecognised argument '--confg.train.steps=3'; config keys are set as --config.<key>=<value>"
    in err
  )
