"""The errors a command ends with in one line ("error: ..."), not a traceback.

A `RunError`'s message says all a user needs: which setting, file or run was wrong, and what was
expected. Its kinds are here, in a module that imports nothing, so that a model file or a data
format can raise one without importing the config parser or the loop: `ConfigError` (a setting),
`DatasetError` (a dataset's files), `CheckpointError` (saved variables or checkpoints), and
`train.loop.NonFiniteLossError` (a run that diverged). Anything else is a bug, and keeps its
traceback.
"""


class RunError(Exception):
  """Bad input or a failed run, explained by the message alone."""


class ConfigError(RunError, ValueError):
  """A config, variant or override that cannot be applied."""


class DatasetError(RunError, ValueError):
  """Bad input data: a missing path, a file of the wrong format, a corrupt image, a bad label."""


class CheckpointError(RunError):
  """Saved variables or checkpoints that are missing or do not read."""
