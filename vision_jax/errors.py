"""The errors a command ends with in one line ("error: ..."), not a traceback.

A `RunError`'s message says all a user needs: which setting, file or run was wrong, and what was
expected. Its kinds are here, in a module that imports nothing, so that a model file or a data
format can raise one without importing the config parser or the loop: `ConfigError` (a setting),
`DatasetError` (a dataset's files), `CheckpointError` (saved variables or checkpoints),
`PathError` (a directory to write in that cannot be), `WorkdirError` (a workdir another run
holds, or holding a run of other settings), and `train.loop.NonFiniteLossError` (a run that
diverged). Anything else is a bug, and keeps its traceback.
"""


class RunError(Exception):
  """Bad input or a failed run, explained by the message alone."""


class ConfigError(RunError, ValueError):
  """A config, variant or override that cannot be applied."""


class DatasetError(RunError, ValueError):
  """Bad input data: a missing path, a file of the wrong format, a corrupt image, a bad label."""


class CheckpointError(RunError):
  """Saved variables or checkpoints that are missing or do not read."""


class PathError(RunError, ValueError):
  """A directory given by a flag or an environment variable (--workdir, $VISION_JAX_CACHE) that
  cannot be used: not a directory, or one that cannot be created or written in."""


class WorkdirError(RunError):
  """A workdir in use by another run, or holding a run started with other settings."""
