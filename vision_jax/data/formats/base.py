"""The interface every local format implements."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Iterator

import numpy as np

from vision_jax.errors import DatasetError


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """What a prepared dataset holds.

  Attributes:
    image_shape: (height, width, channels) of every image; None for a varying dimension.
    class_names: the label names, index = label.
    splits: the split names.
  """

  image_shape: tuple
  class_names: tuple[str, ...]
  splits: tuple[str, ...]

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


class LocalFormat:
  """A format of files on disk. Subclasses implement `spec` and `examples`.

  `root` is the path the user named: a file or folder. Errors name the offending file and what
  was expected, as `DatasetError`. A format with preparation options (an image size, say) is a
  dataclass whose fields are the options, set from `config.data.format_options`; they are part
  of the fingerprint, so each setting is prepared and cached on its own.
  """

  name: str = ""
  version: str = "1.0.0"  # bump when the prepared output of this format changes

  def spec(self, root: str) -> DatasetSpec:
    raise NotImplementedError

  def examples(self, root: str, split: str) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """Yields (unique key, {"image": uint8 [h, w, c], "label": int}) for `split`."""
    raise NotImplementedError

  def fingerprint(self, root: str) -> str:
    """Identifies the input files (paths, sizes, modification times) for the cache's name."""
    h = hashlib.sha256(f"{self.name}-{self.version}".encode())
    if self.options():
      h.update(repr(sorted(self.options().items())).encode())
    paths = (
      [root]
      if os.path.isfile(root)
      else sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)
    )
    for p in paths:
      st = os.stat(p)
      h.update(f"{os.path.relpath(p, root)}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:12]

  def options(self) -> dict:
    """The preparation options this instance was made with (a dataclass format's fields)."""
    return dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}


_FORMATS: dict[str, type[LocalFormat]] = {}


def register_format(cls: type[LocalFormat]) -> type[LocalFormat]:
  _FORMATS[cls.name] = cls
  return cls


def get_format(name: str, **options) -> LocalFormat:
  """The format registered as `name`, made with its preparation `options`."""
  if name not in _FORMATS:
    raise DatasetError(
      f"unknown dataset format {name!r}; known formats: {', '.join(sorted(_FORMATS))} "
      "(or tfds:<name> for a TFDS dataset)"
    )
  cls = _FORMATS[name]
  valid = [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else []
  unknown = sorted(set(options) - set(valid))
  if unknown:
    raise DatasetError(
      f"format {name!r} has no option {', '.join(map(repr, unknown))}; "
      + (f"its options: {', '.join(valid)}" if valid else "it takes no options")
    )
  return cls(**options)


def list_formats() -> list[str]:
  return sorted(_FORMATS)
