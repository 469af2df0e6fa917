"""The VOC and COCO box formats on small synthetic datasets: boxes, labels, per-box features,
resizing, splits, the COCO category ids, and bad input named by its file with no cache left."""

import json
import logging
import os
import tarfile

import numpy as np
import pytest
from PIL import Image
from test_data_detection import _data_config

from vision_jax.data.formats import get_format
from vision_jax.data.formats.voc import VOC_CLASSES
from vision_jax.data.pipeline import get_splits
from vision_jax.data.sources import get_source
from vision_jax.errors import DatasetError
from vision_jax.metrics.detection import ImageDetections, coco_results


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
  monkeypatch.setenv("VISION_JAX_CACHE", str(tmp_path / "cache"))
  get_source.cache_clear()
  yield
  get_source.cache_clear()


def _assert_no_prepared_data():
  cache = os.environ["VISION_JAX_CACHE"]
  assert not [d for _, ds, _ in os.walk(cache) for d in ds if d.startswith("incomplete")]
  assert not [f for _, _, fs in os.walk(cache) for f in fs if f.endswith(".array_record")]


def _jpeg(path, width, height, seed=0):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), np.uint8)
  Image.fromarray(pixels).save(path, quality=95)


# VOC: an image is (width, height, [(name, xmin, ymin, xmax, ymax, difficult)]), VOC's 1-based
# inclusive pixels.
_VOC_IMAGES = {
  "a": (60, 40, [("dog", 11, 6, 30, 25, 0), ("person", 1, 1, 60, 40, 1)]),
  "b": (60, 40, []),  # no objects: a negative example
  "c": (40, 50, [("cat", 5, 5, 5, 20, 0)]),  # one pixel wide
}


def _voc_xml(width, height, objects, size=True):
  xml = "<annotation><folder>VOC2007</folder>"
  if size:
    xml += f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"
  for name, x0, y0, x1, y1, difficult in objects:
    xml += (
      f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{x0}</xmin>"
      f"<ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
    )
  return xml + "</annotation>"


def _voc(folder, images=_VOC_IMAGES, splits=(("train", "ab"), ("test", "c"))):
  """A VOC folder of `images`, with split lists `splits` ((name, ids), ...; None: none)."""
  for i, (name, (width, height, objects)) in enumerate(images.items()):
    _jpeg(os.path.join(folder, "JPEGImages", f"{name}.jpg"), width, height, seed=i)
    os.makedirs(os.path.join(folder, "Annotations"), exist_ok=True)
    with open(os.path.join(folder, "Annotations", f"{name}.xml"), "w") as f:
      f.write(_voc_xml(width, height, objects))
  if splits:
    os.makedirs(os.path.join(folder, "ImageSets", "Main"))
    for split, ids in splits:
      with open(os.path.join(folder, "ImageSets", "Main", f"{split}.txt"), "w") as f:
        f.write("".join(f"{i}\n" for i in ids))
    with open(os.path.join(folder, "ImageSets", "Main", "dog_train.txt"), "w") as f:
      f.write("a  1\nb -1\n")  # a per-class list: not a split
  return str(folder)


def _by_count(arrays):
  """{number of boxes: index} of a split's examples (TFDS stores them in its own order)."""
  return {int(n): i for i, n in enumerate(arrays["box_mask"].sum(1))}


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
@pytest.mark.parametrize("root", ["voc", "devkit", "tarball"])
def test_voc_boxes_labels_difficult_and_split_lists(tmp_path, root, resize):
  folder = _voc(tmp_path / "VOCdevkit" / "VOC2007")
  path = {"voc": folder, "devkit": str(tmp_path), "tarball": str(tmp_path / "voc.tar")}[root]
  if root == "tarball":
    with tarfile.open(path, "w") as tar:
      tar.add(tmp_path / "VOCdevkit", "VOCdevkit")
  source = get_source(f"voc:{path}", image_size=60, resize=resize)
  spec = source.spec
  assert spec.class_names == VOC_CLASSES and spec.splits == ("train", "test")
  assert spec.task == "detection" and spec.box_features == ("difficult",)
  train, test = source.arrays("train"), source.arrays("test")
  assert train["image"].shape == (2, 60, 60, 3) and len(test["image"]) == 1
  a = _by_count(train)[2]
  assert _by_count(train)[0] != a  # "b", the negative example
  # 1-based inclusive -> 0-based edges: (11, 6, 30, 25) -> (10, 5, 30, 25) in the 60x40 image.
  edges = np.asarray([[10, 5, 30, 25], [0, 0, 60, 40]], np.float32)
  moved = edges * [1, 1.5, 1, 1.5] if resize == "stretch" else edges + [0, 10, 0, 10]
  np.testing.assert_allclose(train["boxes"][a, :2], moved, rtol=1e-6)
  np.testing.assert_array_equal(train["labels"][a, :2], [VOC_CLASSES.index("dog"), 14])
  np.testing.assert_array_equal(train["difficult"][a, :2], [False, True])
  # "c": 40x50, one pixel column (5, 5, 5, 20) -> (4, 4, 5, 20), scaled by 60/50 when letterboxed.
  scale = [1.5, 1.2, 1.5, 1.2] if resize == "stretch" else [1.2, 1.2, 1.2, 1.2]
  offset = [0, 0, 0, 0] if resize == "stretch" else [6, 0, 6, 0]
  np.testing.assert_allclose(test["boxes"][0, 0], np.asarray([4, 4, 5, 20]) * scale + offset)
  assert test["labels"][0, 0] == VOC_CLASSES.index("cat")


def test_voc_classes_option_and_seeded_split_without_lists(tmp_path):
  images = {**_VOC_IMAGES, "d": (30, 30, [("widget", 2, 2, 20, 20, 0)])}
  root = _voc(tmp_path / "voc", images, splits=None)
  found = get_source(f"voc:{root}", image_size=32, test_fraction=0.25)
  # A name outside VOC's 20: the names found, sorted.
  assert found.spec.class_names == ("cat", "dog", "person", "widget")
  assert found.spec.splits == ("train", "test")
  assert len(found.split("train")) == 3 and len(found.split("test")) == 1
  counts = sorted(int(n) for s in ("train", "test") for n in found.arrays(s)["box_mask"].sum(1))
  assert counts == [0, 1, 1, 2]
  names = ("widget", "person", "dog", "cat")
  given = get_source(f"voc:{root}", image_size=32, test_fraction=0.25, classes=",".join(names))
  assert given.spec.class_names == names
  boxes = {s: given.arrays(s) for s in ("train", "test")}
  labels = sorted(int(v) for b in boxes.values() for v in b["labels"][b["box_mask"]])
  assert labels == sorted([2, 1, 3, 0])
  # A tuple from a config means the same classes (the option is kept as the string, which the
  # prepared folder's record compares equal after a JSON round trip).
  assert get_format("voc", classes=names).options()["classes"] == ",".join(names)
  again = get_source(f"prepared:{given.folder}", image_size=32, test_fraction=0.25, classes=names)
  assert again.spec.class_names == names


def test_voc_box_outside_the_image_is_clipped_with_a_warning(tmp_path, caplog):
  images = {**_VOC_IMAGES, "a": (60, 40, [("dog", 50, 30, 70, 45, 0)])}
  root = _voc(tmp_path / "voc", images)
  with caplog.at_level(logging.WARNING):
    train = get_source(f"voc:{root}", image_size=60, resize="stretch").arrays("train")
  assert "a.xml: 1 box reaches outside the 60x40 image" in caplog.text
  np.testing.assert_allclose(train["boxes"][_by_count(train)[1], 0], [49, 43.5, 60, 60])


@pytest.mark.parametrize(
  "problem, match, options",
  [
    ("no size", r"Annotations/a\.xml: no <size>; expected <size> with <width>", {}),
    ("unknown class", r"a\.xml: object of class 'dog', not one of the classes cat, person", {}),
    ("zero area", r"a\.xml: box 0 \(10, 5, 9, 25.*has no area", {}),
    ("corrupt image", r"JPEGImages/b\.jpg: corrupt or unreadable image", {}),
    (
      "missing annotation",
      r"Main/test\.txt: lists 'zz', but there is no .*Annotations/zz\.xml",
      {},
    ),
    ("missing image", r"Main/test\.txt: lists 'c', but there is no .*JPEGImages/c\.jpg", {}),
    ("bad xml", r"Annotations/b\.xml: not well-formed XML", {}),
  ],
)
def test_voc_bad_input_names_the_file_and_leaves_no_cache(tmp_path, problem, match, options):
  root = _voc(tmp_path / "voc")
  xml, jpeg = os.path.join(root, "Annotations"), os.path.join(root, "JPEGImages")
  if problem == "no size":
    with open(os.path.join(xml, "a.xml"), "w") as f:
      f.write(_voc_xml(60, 40, _VOC_IMAGES["a"][2], size=False))
  elif problem == "unknown class":
    options = {"classes": "cat,person"}
  elif problem == "zero area":
    with open(os.path.join(xml, "a.xml"), "w") as f:
      f.write(_voc_xml(60, 40, [("dog", 11, 6, 9, 25, 0)]))
  elif problem == "corrupt image":
    with open(os.path.join(jpeg, "b.jpg"), "wb") as f:
      f.write(b"not a jpeg")
  elif problem == "missing annotation":
    with open(os.path.join(root, "ImageSets", "Main", "test.txt"), "a") as f:
      f.write("zz\n")
  elif problem == "missing image":
    os.remove(os.path.join(jpeg, "c.jpg"))
  elif problem == "bad xml":
    with open(os.path.join(xml, "b.xml"), "w") as f:
      f.write("<annotation><size>")
  with pytest.raises(DatasetError, match=match):
    get_source(f"voc:{root}", image_size=32, **options).arrays("train")
  _assert_no_prepared_data()


# COCO: category ids 1, 3, 90 (not contiguous); image 1 holds a crowd.
_CATEGORIES = [
  {"id": 90, "name": "toothbrush"},
  {"id": 1, "name": "person"},
  {"id": 3, "name": "car"},
]


def _coco_split(root, split, images, annotations, categories=_CATEGORIES):
  """instances_<split>.json and <split>/<id>.jpg for `images` [(id, width, height)]."""
  for image_id, width, height in images:
    _jpeg(os.path.join(root, split, f"{image_id}.jpg"), width, height, seed=image_id)
  data = {
    "images": [{"id": i, "file_name": f"{i}.jpg", "width": w, "height": h} for i, w, h in images],
    "annotations": annotations,
    "categories": categories,
  }
  os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
  with open(os.path.join(root, "annotations", f"instances_{split}.json"), "w") as f:
    json.dump(data, f)
  return str(root)


_VAL_IMAGES = [(1, 60, 40), (2, 40, 40), (3, 30, 20)]  # image 3: no annotations
_VAL_ANNOTATIONS = [
  {"id": 10, "image_id": 1, "category_id": 90, "bbox": [10, 5, 20, 10], "area": 150.0},
  {"id": 11, "image_id": 1, "category_id": 1, "bbox": [0, 0, 30, 20], "area": 400, "iscrowd": 1},
  {"id": 12, "image_id": 2, "category_id": 3, "bbox": [4.5, 4, 10, 10], "area": 80.0},
]


def _coco(root):
  _coco_split(
    root,
    "train2017",
    [(7, 32, 32)],
    [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [1, 1, 8, 8], "area": 50.0}],
  )
  return _coco_split(root, "val2017", _VAL_IMAGES, _VAL_ANNOTATIONS)


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
def test_coco_boxes_crowd_area_and_category_ids(tmp_path, resize):
  root = _coco(tmp_path / "coco")
  config = _data_config(
    f"coco:{root}",
    format_options={"image_size": 60, "resize": resize},
    train_split="train2017",
    eval_splits=("val2017",),
  )
  spec, splits = get_splits(config)
  assert spec.splits == ("train2017", "val2017") and spec.box_features == ("crowd", "area")
  assert spec.class_names == ("person", "car", "toothbrush") and spec.class_ids == (1, 3, 90)
  val = splits["val2017"].read(np.arange(3))
  assert val["boxes"].shape == (3, 2, 4) and val["image"].shape == (3, 60, 60, 3)
  one, two = _by_count(val)[2], _by_count(val)[1]
  # Image 1 (60x40): x, y, w, h -> x0, y0, x0 + w, y0 + h, moved with the picture.
  edges = np.asarray([[10, 5, 30, 15], [0, 0, 30, 20]], np.float32)
  factor = 1.5 if resize == "stretch" else 1.0  # area: (60 * 60) / (60 * 40), or unscaled
  moved = edges * [1, 1.5, 1, 1.5] if resize == "stretch" else edges + [0, 10, 0, 10]
  np.testing.assert_allclose(val["boxes"][one], moved, rtol=1e-6)
  np.testing.assert_array_equal(val["labels"][one], [2, 0])
  np.testing.assert_array_equal(val["crowd"][one], [False, True])
  np.testing.assert_allclose(val["area"][one], np.asarray([150, 400]) * factor, rtol=1e-6)
  # Image 2 (40x40) is square: scaled by 1.5 either way.
  np.testing.assert_allclose(val["boxes"][two, 0], np.asarray([4.5, 4, 14.5, 14]) * 1.5)
  np.testing.assert_allclose(val["area"][two, 0], 80 * 2.25, rtol=1e-6)
  # Labels map back to COCO's category ids, also from the prepared folder alone.
  source = get_source(f"coco:{root}", image_size=60, resize=resize)
  prepared = get_source(f"prepared:{source.folder}")
  assert prepared.spec.class_ids == (1, 3, 90)
  mask = val["box_mask"][one]
  detections = [ImageDetections(val["boxes"][one][mask], np.ones(2), val["labels"][one][mask])]
  results = coco_results(detections, [1], category_ids=prepared.spec.class_ids)
  assert [r["category_id"] for r in results] == [90, 1]


def _edit_json(root, change):
  path = os.path.join(root, "annotations", "instances_val2017.json")
  with open(path) as f:
    data = json.load(f)
  change(data)
  with open(path, "w") as f:
    json.dump(data, f)


@pytest.mark.parametrize(
  "problem, match",
  [
    ("missing image id", r"instances_val2017\.json: annotation 12 names image_id 77, which is not"),
    ("unknown category", r"instances_val2017\.json: annotation 12 names category_id 2, which is"),
    ("zero width image", r"instances_val2017\.json: image 2 \(2\.jpg\) has width 0 and height 40"),
    ("zero width box", r"instances_val2017\.json \(image 2, 2\.jpg\): box 0 \(4\.5, 4, 4\.5, 14"),
    ("missing image file", r"val2017/2\.jpg: no such file .*instances_val2017\.json lists it"),
    ("corrupt image", r"val2017/2\.jpg: corrupt or unreadable image"),
    ("malformed json", r"instances_val2017\.json: malformed JSON"),
  ],
)
def test_coco_bad_input_names_the_file_and_leaves_no_cache(tmp_path, problem, match):
  root = _coco(tmp_path / "coco")
  if problem == "missing image id":
    _edit_json(root, lambda d: d["annotations"][2].update(image_id=77))
  elif problem == "unknown category":
    _edit_json(root, lambda d: d["annotations"][2].update(category_id=2))
  elif problem == "zero width image":
    _edit_json(root, lambda d: d["images"][1].update(width=0))
  elif problem == "zero width box":
    _edit_json(root, lambda d: d["annotations"][2].update(bbox=[4.5, 4, 0, 10]))
  elif problem == "missing image file":
    os.remove(os.path.join(root, "val2017", "2.jpg"))
  elif problem == "corrupt image":
    with open(os.path.join(root, "val2017", "2.jpg"), "wb") as f:
      f.write(b"not a jpeg")
  elif problem == "malformed json":
    with open(os.path.join(root, "annotations", "instances_val2017.json"), "w") as f:
      f.write('{"images": [')
  with pytest.raises(DatasetError, match=match):
    get_source(f"coco:{root}", image_size=32).arrays("val2017")
  _assert_no_prepared_data()
