"""Local dataset formats: the files users actually hold, prepared once into TFDS ArrayRecord.

A format is one small file here: a `LocalFormat` subclass registered with `@register_format`.
It says which splits a root path holds, what the examples look like, and yields them; the generic
builder in `vision_jax.data.local` does the rest (validation, caching, atomic preparation).
"""

from vision_jax.data.formats import (  # noqa: F401  (registration)
  coco,
  idx,
  image_folder,
  mnist_detection,
  oxford_pets,
  penn_fudan,
  sklearn_digits,
  voc,
)
from vision_jax.data.formats.base import LocalFormat, get_format, list_formats, register_format

__all__ = ["LocalFormat", "get_format", "list_formats", "register_format"]
