"""The one base of the errors a command ends with in one line ("error: ..."), not a traceback.

A `RunError`'s message says all a user needs: which setting, file or run was wrong, and what was
expected. Its kinds: `config.ConfigError` (a setting), `data.formats.base.DatasetError` (a
dataset's files), `train.checkpoint.CheckpointError` (saved variables or checkpoints) and
`train.loop.NonFiniteLossError` (a run that diverged). Anything else is a bug, and keeps its
traceback.
"""


class RunError(Exception):
  """Bad input or a failed run, explained by the message alone."""
