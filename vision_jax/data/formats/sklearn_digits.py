"""scikit-learn's bundled handwritten digits (`load_digits`): 1,797 real 8x8 images, 0-16 grey.

Brought to 32x32 uint8 (bilinear, 0-255) so that LeNet-5 takes them as it takes padded MNIST,
and split deterministically (stratified, fixed seed): round(20%) of each digit's images for the
test, 359 of the 1,797 (the rounding, per digit, is why not 360), and 1,438 for training.
It needs no files: the data ships with scikit-learn, which is why `make demo` runs on it.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
from PIL import Image

from vision_jax.data.formats.base import DatasetSpec, LocalFormat, register_format
from vision_jax.errors import DatasetError

SIZE = 32
TEST_FRACTION = 0.2


def _load() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top

  digits = load_digits()
  images = np.stack(
    [
      np.asarray(
        Image.fromarray((img * (255.0 / 16.0)).astype(np.float32)).resize(
          (SIZE, SIZE), Image.BILINEAR
        )
      )
      for img in digits.images
    ]
  )
  images = np.clip(np.round(images), 0, 255).astype(np.uint8)[..., None]
  labels = digits.target.astype(np.int64)
  rng = np.random.default_rng(0)
  test = np.zeros(len(labels), bool)
  for c in range(10):
    idx = np.flatnonzero(labels == c)
    test[rng.permutation(idx)[: int(round(len(idx) * TEST_FRACTION))]] = True
  return images, labels, {"train": np.flatnonzero(~test), "test": np.flatnonzero(test)}


@register_format
class SklearnDigitsFormat(LocalFormat):
  name = "sklearn"

  def spec(self, root: str) -> DatasetSpec:
    if root != "digits":
      raise DatasetError(
        f"sklearn:{root}: only sklearn:digits is a bundled scikit-learn image dataset"
      )
    return DatasetSpec(
      image_shape=(SIZE, SIZE, 1),
      class_names=tuple(str(i) for i in range(10)),
      splits=("train", "test"),
    )

  def examples(self, root: str, split: str) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    images, labels, splits = _load()
    for i in splits[split]:
      yield (
        f"{i:05d}",
        {"image": images[i], "label": int(labels[i]), "_source": "sklearn.datasets.load_digits"},
      )

  def fingerprint(self, root: str) -> str:
    import sklearn  # pylint: disable=g-import-not-at-top

    return f"{self.version}-{sklearn.__version__}"
