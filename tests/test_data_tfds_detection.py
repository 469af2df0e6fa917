"""`tfds:` detection datasets (voc, coco): boxes to pixels of the resized image, and offline errors.

No test downloads anything. TFDS's `mock_data` with its default random examples cannot serve
here: without generated metadata its builders have no splits (`MockPolicy.USE_CODE` mocks the
SplitDict), and its random `objects` have boxes with ymin > ymax and per-object features of
different lengths. So each test writes the real builder's metadata (features, class names, split
sizes) into a folder, and `mock_data(policy=USE_FILES, as_data_source_fn=...)` serves examples
built from known VOC/COCO annotations. COCO's builder needs tensorflow for its features
(`tf.int64`); where tensorflow is absent, its module's `tf` is replaced by one holding int64.
"""

import contextlib
import importlib.util
import types
from unittest import mock

import numpy as np
import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.core import naming

from vision_jax.data.sources import collate, get_source
from vision_jax.errors import DatasetError

_HAS_TF = importlib.util.find_spec("tensorflow") is not None


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
  monkeypatch.setenv("VISION_JAX_CACHE", str(tmp_path / "cache"))
  get_source.cache_clear()
  yield
  get_source.cache_clear()


@contextlib.contextmanager
def _coco_without_tensorflow():
  """COCO's builder as TFDS defines it, its `image/id` feature int64 without tensorflow."""
  if _HAS_TF:
    yield
    return
  from tensorflow_datasets.object_detection import coco

  with mock.patch.object(coco, "tf", types.SimpleNamespace(int64=np.int64)):
    yield


@contextlib.contextmanager
def _mock_tfds(tmp_path, name: str, examples: dict[str, list], class_names=None):
  """TFDS as if `name` were prepared with `examples` ({split: [TFDS example]}): the real builder's
  metadata written to a folder, its data sources serving `examples` ("a+b" joins splits)."""
  root = str(tmp_path / "tfds_metadata")
  builder = tfds.builder(name, data_dir=root, file_format="array_record")
  if class_names:
    builder.info.features["objects"]["label"].names = class_names
  splits = [
    tfds.core.SplitInfo(
      name=split,
      shard_lengths=[len(exs)],
      num_bytes=0,
      filename_template=naming.ShardedFileTemplate(
        data_dir=builder.data_dir,
        dataset_name=builder.name,
        split=split,
        filetype_suffix="array_record",
      ),
    )
    for split, exs in examples.items()
  ]
  builder.info.set_splits(tfds.core.SplitDict(splits))
  builder.data_path.mkdir(parents=True)
  builder.info.write_to_directory(builder.data_dir)

  def as_data_source(self, split, **kwargs):
    del self, kwargs
    return _ListSource([ex for part in split.split("+") for ex in examples[part]])

  with tfds.testing.mock_data(
    policy=tfds.testing.MockPolicy.USE_FILES, data_dir=root, as_data_source_fn=as_data_source
  ):
    yield


class _ListSource(list):
  """A random-access data source of examples in a list, as TFDS's ArrayRecord ones are read."""

  def __getitems__(self, indices):
    return [self[i] for i in indices]


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _voc_example(height, width, corners, labels, difficult):
  """A TFDS voc example from VOC XML corners (xmin, ymin, xmax, ymax: pixels from 1, both ends
  included), normalised as TFDS's builder does: each divided by the image's size."""
  c = np.asarray(corners, np.float32).reshape(-1, 4)
  return {
    "image": _image(height, width),
    "image/filename": "000005.jpg",
    "objects": {
      "bbox": np.stack([c[:, 1] / height, c[:, 0] / width, c[:, 3] / height, c[:, 2] / width], 1),
      "label": np.asarray(labels, np.int64),
      "pose": np.zeros(len(c), np.int64),
      "is_truncated": np.zeros(len(c), bool),
      "is_difficult": np.asarray(difficult, bool),
    },
    "labels": np.asarray(labels, np.int64),
    "labels_no_difficult": np.asarray(labels, np.int64),
  }


def _coco_example(height, width, xywh, labels, crowd, area):
  """A TFDS coco example from COCO boxes [x, y, w, h] (continuous pixels), normalised as TFDS's
  builder does: y / height, x / width, (y + h) / height, (x + w) / width."""
  b = np.asarray(xywh, np.float32).reshape(-1, 4)
  return {
    "image": _image(height, width, 1),
    "image/filename": "000000000139.jpg",
    "image/id": np.int64(139),
    "objects": {
      "id": np.arange(len(b), dtype=np.int64),
      "area": np.asarray(area, np.int64),
      "bbox": np.stack(
        [
          b[:, 1] / height,
          b[:, 0] / width,
          (b[:, 1] + b[:, 3]) / height,
          (b[:, 0] + b[:, 2]) / width,
        ],
        1,
      ),
      "label": np.asarray(labels, np.int64),
      "is_crowd": np.asarray(crowd, bool),
    },
  }


def test_voc_boxes_arrive_in_pixels_of_the_resized_image_with_labels_and_difficult(tmp_path):
  # A 100 x 50 image; XML box (26, 6)-(75, 30) covers columns 25..74 and rows 5..29 from 0: pixel
  # edges x0 25, y0 5, x1 75, y1 30. Stretched to 20 x 20: x by 0.2, y by 0.4.
  first = _voc_example(50, 100, [[26, 6, 75, 30], [1, 1, 100, 50]], [14, 6], [False, True])
  examples = {
    "train": [first],
    "validation": [_voc_example(40, 40, [[1, 1, 10, 10]], [0], [False])],
    "test": [_voc_example(40, 40, np.zeros((0, 4)), [], [])],
  }
  with _mock_tfds(tmp_path, "voc/2007", examples):
    source = get_source("tfds:voc/2007", image_size=20, resize="stretch")
    spec = source.spec
    assert spec.task == "detection" and spec.image_shape == (20, 20, 3)
    assert spec.class_names[14] == "person" and spec.num_classes == 20
    assert spec.box_features == ("difficult",)
    assert spec.splits == ("train", "validation", "test", "train+validation")
    ex = source.split("train")[0]
    assert set(ex) == {"image", "boxes", "labels", "difficult"}
    assert ex["image"].shape == (20, 20, 3) and ex["image"].dtype == np.uint8
    np.testing.assert_allclose(ex["boxes"], [[5, 2, 15, 12], [0, 0, 20, 20]], atol=1e-4)
    assert ex["boxes"].dtype == np.float32
    assert ex["labels"].tolist() == [14, 6] and ex["labels"].dtype == np.int32
    assert ex["difficult"].tolist() == [False, True] and ex["difficult"].dtype == np.bool_
    assert len(source.split("train+validation")) == 2
    assert source.split("test")[0]["boxes"].shape == (0, 4)
    assert source.most_boxes("train") == (2, "example 0")
    batch = collate(source.split("train+validation").__getitems__([0, 1]), max_boxes=3)
    assert batch["boxes"].shape == (2, 3, 4) and batch["box_mask"].sum(1).tolist() == [2, 1]
    get_source.cache_clear()
    # Letterboxed: scaled by 20 / 100, 10 rows of picture centred from row 5.
    boxed = get_source("tfds:voc/2007", image_size=20, resize="letterbox").split("train")[0]
    np.testing.assert_allclose(boxed["boxes"][0], [5, 6, 15, 11], atol=1e-4)
    assert not boxed["image"][:5].any() and not boxed["image"][15:].any()


def test_coco_boxes_arrive_in_pixels_with_crowd_and_area(tmp_path):
  names = ["person", *(f"class{i}" for i in range(1, 80))]
  examples = {
    "train": [
      _coco_example(50, 100, [[25, 5, 50, 25], [0, 0, 10, 5]], [0, 79], [False, True], [900, 40])
    ],
    "validation": [_coco_example(50, 100, [[0, 0, 100, 50]], [3], [False], [5000])],
  }
  with _coco_without_tensorflow(), _mock_tfds(tmp_path, "coco/2017", examples, names):
    source = get_source("tfds:coco/2017", image_size=20, resize="stretch")
    spec = source.spec
    assert spec.class_names[0] == "person" and spec.num_classes == 80
    assert spec.box_features == ("crowd", "area")
    assert spec.splits == ("train", "validation", "train+validation")
    ex = source.split("train")[0]
    assert set(ex) == {"image", "boxes", "labels", "crowd", "area"}
    # COCO's boxes are continuous: (25, 5) to (75, 30) in pixels, no shift from 1.
    np.testing.assert_allclose(ex["boxes"], [[5, 2, 15, 12], [0, 0, 2, 2]], atol=1e-4)
    assert ex["labels"].tolist() == [0, 79]
    assert ex["crowd"].tolist() == [False, True]
    # COCO's area stays in the original image's pixels, where its size ranges are defined.
    assert ex["area"].tolist() == [900.0, 40.0] and ex["area"].dtype == np.float32


def test_tfds_detection_needs_an_image_size_and_known_options_before_any_download(tmp_path):
  with pytest.raises(DatasetError, match=r"tfds:voc/2007: its images vary in size.*image_size"):
    get_source("tfds:voc/2007")
  with pytest.raises(
    DatasetError, match=r"tfds:voc/2007: .*no option 'boxes'; its options: image_size, resize"
  ):
    get_source("tfds:voc/2007", image_size=448, boxes="pet")
  with pytest.raises(
    DatasetError, match=r"tfds:voc/2007: resize must be one of stretch, letterbox"
  ):
    get_source("tfds:voc/2007", image_size=448, resize="crop")
  with pytest.raises(DatasetError, match=r"tfds:mnist: format options \['image_size'\] apply to"):
    get_source("tfds:mnist", image_size=448)
  assert not (tmp_path / "cache" / "tfds" / "voc").exists()


def _offline(monkeypatch):
  """No network, on any machine: every name lookup fails at once."""
  import socket

  def fail(*args, **kwargs):
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known (offline in this test)")

  monkeypatch.setattr(socket, "getaddrinfo", fail)


@pytest.mark.parametrize("name", ["voc/2007", "coco/2017"])
def test_tfds_detection_offline_fails_at_once_with_one_dataset_error(name, tmp_path, monkeypatch):
  import time

  _offline(monkeypatch)
  start = time.monotonic()
  with _coco_without_tensorflow():
    with pytest.raises(DatasetError, match=rf"tfds:{name}: not prepared in .*cannot be reached"):
      get_source(f"tfds:{name}", image_size=448)
  assert time.monotonic() - start < 30
  assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


@pytest.mark.skipif(_HAS_TF, reason="tensorflow is installed: COCO's builder constructs")
def test_coco_without_tensorflow_is_one_dataset_error_naming_the_module():
  with pytest.raises(DatasetError, match=r"tfds:coco/2017: TFDS's builder .*tensorflow"):
    get_source("tfds:coco/2017", image_size=448)


@pytest.mark.parametrize("variant", [None, "smoke"])
def test_yolov1_voc07_config_checks_and_builds_the_papers_detector_without_internet(variant):
  import jax
  import jax.numpy as jnp

  from configs import yolov1_voc07
  from experiments.yolov1_voc07 import RULES
  from vision_jax.config import check_config
  from vision_jax.models.registry import build_model
  from vision_jax.train.optimizers import make_schedule, schedule_problems

  config = check_config(yolov1_voc07.get_config(variant), RULES)
  assert config.data.dataset == "tfds:voc/2007" and config.data.train_split == "train+validation"
  assert not schedule_problems(config.optim, config.train.steps, "optim", "train.steps")
  if variant is None:
    assert config.train.steps == 135 * (5011 // 64) and config.train.batch_size == 64
    schedule = make_schedule(config.optim, config.train.steps)
    epoch = 5011 // 64
    rates = [float(schedule(s)) for s in (0, 2 * epoch, 74 * epoch, 76 * epoch, 106 * epoch)]
    np.testing.assert_allclose(rates, [1e-3, 1e-2, 1e-2, 1e-3, 1e-4], rtol=1e-5)
  size = config.data.format_options.image_size
  model = build_model(config.model, num_classes=20)
  variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, size, size, 3)))
  count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables["params"]))
  assert count == 271_703_550  # the paper's network (vision_jax/models/yolo.py)
