"""The data layer for detection: boxes through preparation, padding, batches and augmentation."""

import logging
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from conftest import require_dataset
from PIL import Image

from vision_jax.data import augment
from vision_jax.data.formats.base import check_boxes, resize_with_boxes
from vision_jax.data.pipeline import DeviceData, StreamData, eval_batches, get_splits
from vision_jax.data.sources import collate, get_source
from vision_jax.errors import DatasetError
from vision_jax.train.mesh import make_mesh

SMALL_MNIST = {"train_size": 40, "test_size": 12, "canvas_size": 64, "max_scale": 28}


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
  monkeypatch.setenv("VISION_JAX_CACHE", str(tmp_path / "cache"))
  get_source.cache_clear()
  yield
  get_source.cache_clear()


def _data_config(dataset="mnist_detection:mnist", **kw):
  c = ml_collections.ConfigDict()
  c.dataset = dataset
  c.format_options = ml_collections.ConfigDict(kw.pop("format_options", SMALL_MNIST))
  c.train_split, c.eval_splits = "train", ("test",)
  c.validation_size = c.train_size = c.pad_to = 0
  c.on_device = "auto"
  c.mean, c.std = (0.0,), (1.0,)
  c.max_boxes = 0
  c.too_many_boxes = "error"
  c.augment = ml_collections.ConfigDict({"crop_padding": 0, "flip": False, "noise_std": 0.0})
  for k, v in kw.items():
    c[k] = v
  return c


def _rectangle_image(size, box, value=255):
  """A black `size` (h, w) grey image with the integer box x0, y0, x1, y1 filled."""
  image = np.zeros(size + (1,), np.uint8)
  x0, y0, x1, y1 = box
  image[y0:y1, x0:x1] = value
  return image


def _ink_inside(image, box, threshold=64, slack=1.0):
  """Whether every pixel of `image` [h, w, 1] above `threshold` lies in `box` (+ slack pixels)."""
  rows, cols = np.nonzero(image[..., 0] > threshold)
  x0, y0, x1, y1 = np.asarray(box) + np.asarray([-slack, -slack, slack, slack])
  return (
    rows.size > 0
    and cols.min() >= x0
    and cols.max() + 1 <= x1
    and rows.min() >= y0
    and (rows.max() + 1 <= y1)
  )


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
def test_a_box_drawn_into_an_image_lands_on_the_same_pixels_after_resize(resize):
  box = (40, 30, 100, 70)  # x0, y0, x1, y1 of a 160 x 90 picture
  picture = Image.fromarray(_rectangle_image((90, 160), box)[..., 0])
  pixels, boxes = resize_with_boxes(picture, np.asarray([box]), 64, resize, Image.NEAREST)
  assert pixels.shape == (64, 64, 1) and boxes.dtype == np.float32
  expected = {"stretch": [16, 21.333334, 40, 49.777779], "letterbox": [16, 26, 40, 42]}[resize]
  np.testing.assert_allclose(boxes[0], expected, rtol=1e-5)
  rows, cols = np.nonzero(pixels[..., 0])
  x0, y0, x1, y1 = boxes[0]
  # Nearest-neighbour resampling: the filled pixels are those whose centres fall in the box.
  assert cols.min() == np.ceil(x0 - 0.5) and cols.max() + 1 == np.ceil(x1 - 0.5)
  assert rows.min() == np.ceil(y0 - 0.5) and rows.max() + 1 == np.ceil(y1 - 0.5)


def test_boxes_outside_the_image_are_clipped_with_a_warning_and_empty_ones_refused(caplog):
  with caplog.at_level(logging.WARNING):
    boxes = check_boxes([[-2, 0, 5, 5], [1, 1, 12, 4], [2, 2, 3, 3]], 10, 8, "a.txt")
  np.testing.assert_array_equal(boxes, [[0, 0, 5, 5], [1, 1, 10, 4], [2, 2, 3, 3]])
  assert "a.txt: 2 boxes reach outside the 10x8 image" in caplog.text
  with pytest.raises(DatasetError, match=r"b\.txt: box 1 \(4, 4, 4, 6.*has no area"):
    check_boxes([[0, 0, 1, 1], [4, 4, 4, 6]], 10, 8, "b.txt")
  with pytest.raises(DatasetError, match=r"c\.txt: box 0 .* has no area inside the 10x8"):
    check_boxes([[11, 0, 14, 3]], 10, 8, "c.txt")


def test_collate_pads_boxes_with_a_mask_and_keeps_the_largest_when_asked():
  image = np.zeros((4, 4, 1), np.uint8)
  examples = [
    {"image": image, "boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int32)},
    {
      "image": image,
      "boxes": np.asarray([[0, 0, 1, 1], [0, 0, 3, 3], [0, 0, 2, 2]], np.float32),
      "labels": np.asarray([1, 2, 3], np.int32),
    },
  ]
  batch = collate(examples, 4)
  assert batch["boxes"].shape == (2, 4, 4) and batch["labels"].shape == (2, 4)
  np.testing.assert_array_equal(batch["box_mask"], [[0, 0, 0, 0], [1, 1, 1, 0]])
  with pytest.raises(DatasetError, match="an image with 3 boxes, more than data.max_boxes 2"):
    collate(examples, 2)
  largest = collate(examples, 2, "keep_largest")
  np.testing.assert_array_equal(largest["labels"][1], [2, 3])  # in their order, by area


def test_mnist_detection_canvases_are_seeded_and_boxes_hold_their_digits_ink():
  require_dataset("mnist")
  source = get_source("mnist_detection:mnist", **SMALL_MNIST)
  assert source.spec.task == "detection" and source.spec.num_classes == 10
  train = source.arrays("train")
  assert train["image"].shape == (40, 64, 64, 1) and train["image"].dtype == np.uint8
  assert train["boxes"].shape[1:] == (6, 4) and train["boxes"].dtype == np.float32
  counts = train["box_mask"].sum(1)
  assert counts.min() >= 1 and counts.max() <= 6 and counts.mean() > 2
  for image, boxes, mask in zip(train["image"], train["boxes"], train["box_mask"]):
    inside = np.zeros(image.shape[:2], bool)
    for x0, y0, x1, y1 in boxes[mask].astype(int):
      assert image[y0:y1, x0].any() and image[y0:y1, x1 - 1].any()  # tight: ink on every edge
      assert image[y0, x0:x1].any() and image[y1 - 1, x0:x1].any()
      inside[y0:y1, x0:x1] = True
    assert not image[..., 0][~inside].any()  # no ink outside the boxes
  get_source.cache_clear()
  again = get_source("mnist_detection:mnist", **{**SMALL_MNIST, "seed": 0}).arrays("train")
  np.testing.assert_array_equal(again["boxes"], train["boxes"])
  get_source.cache_clear()
  other = get_source("mnist_detection:mnist", **{**SMALL_MNIST, "seed": 1}).arrays("train")
  assert not np.array_equal(other["image"], train["image"])


def test_mnist_detection_bad_options_and_path(tmp_path):
  with pytest.raises(DatasetError, match="min_scale <= max_scale <= canvas_size"):
    get_source("mnist_detection:mnist", canvas_size=16, max_scale=40)
  with pytest.raises(DatasetError, match="not a folder; expected MNIST's IDX files"):
    (tmp_path / "file").write_text("x")
    get_source(f"mnist_detection:{tmp_path / 'file'}")


def test_more_boxes_than_max_boxes_names_the_image_before_training():
  require_dataset("mnist")
  with pytest.raises(
    DatasetError, match=r"image (train|test)-\d{6} of split .* has 6 boxes, more "
  ):
    get_splits(_data_config(max_boxes=3))
  spec, splits = get_splits(_data_config(max_boxes=3, too_many_boxes="keep_largest"))
  batch = splits["train"].read(np.arange(8))
  assert batch["boxes"].shape == (8, 3, 4) and batch["box_mask"].any(1).all()
  spec, splits = get_splits(_data_config())  # 0: the most in one image
  assert splits["test"].read(np.arange(2))["boxes"].shape == (2, 6, 4)


def test_detection_batches_are_the_same_on_device_and_streamed_and_evaluated_whole():
  require_dataset("mnist")
  _, splits = get_splits(_data_config(max_boxes=8))
  mesh = make_mesh()
  device = DeviceData(splits["train"], 8, mesh, seed=3)
  stream = StreamData(splits["train"], 8, mesh, seed=3)
  xs = stream.xs(5, 2)
  for i, step in enumerate((5, 6)):
    on_device = device.get(device.data, device.xs(step, 1)[0])
    for key in ("image", "boxes", "labels", "box_mask"):
      np.testing.assert_array_equal(on_device[key], xs[key][i])
  batches = list(eval_batches(splits["test"], 5, mesh))
  assert [b["boxes"].shape for b in batches] == [(5, 8, 4)] * 3
  assert int(sum(b["mask"].sum() for b in batches)) == 12


def _one_box_batch(size=32, box=(4, 6, 14, 20)):
  images = jnp.asarray(np.stack([_rectangle_image((size, size), box)] * 16))
  boxes = jnp.zeros((16, 3, 4)).at[:, 0].set(jnp.asarray(box, jnp.float32))
  mask = jnp.zeros((16, 3), bool).at[:, 0].set(True)
  return {"image": images, "boxes": boxes, "box_mask": mask}


def test_flipping_boxes_twice_is_the_identity_and_they_follow_their_pixels():
  batch = _one_box_batch()
  rng = jax.random.key(0)
  once = augment.random_flip_with_boxes(rng, batch["image"], batch["boxes"])
  twice = augment.random_flip_with_boxes(rng, *once)
  np.testing.assert_array_equal(twice[0], batch["image"])
  np.testing.assert_array_equal(twice[1], batch["boxes"])
  flipped = np.asarray(once[1][:, 0, 0]) != 4
  assert 0 < flipped.sum() < 16
  for image, boxes in zip(np.asarray(once[0]), np.asarray(once[1])):
    assert _ink_inside(image, boxes[0], slack=0)
  # The same draws as the image-only flip, so classification runs are unchanged.
  np.testing.assert_array_equal(augment.random_flip(rng, batch["image"]), once[0])


def test_scale_crop_keeps_a_box_on_its_pixels_and_drops_boxes_mostly_cut_off():
  batch = _one_box_batch()
  images, boxes, mask = augment.random_scale_crop(
    jax.random.key(1), batch["image"], batch["boxes"], batch["box_mask"], (0.5, 2.0), 0.5
  )
  images, boxes, mask = map(np.asarray, (images, boxes, mask))
  assert images.shape == (16, 32, 32, 1) and not mask[:, 1:].any()
  assert mask[:, 0].any()
  for image, box, keep in zip(images, boxes, mask):
    if keep[0]:
      assert _ink_inside(image, box[0], threshold=128)
      assert ((box[0, 2:] - box[0, :2]) > 0).all()
    else:
      np.testing.assert_array_equal(box[0], 0)
  # A zoom by 4 about the top-left corner keeps at most a quarter of the picture: a box in the
  # bottom-right corner is gone.
  corner = _one_box_batch(box=(24, 24, 32, 32))
  _, boxes, mask = augment.random_scale_crop(
    jax.random.key(2), corner["image"], corner["boxes"], corner["box_mask"], (4.0, 4.0), 0.5
  )
  place = jax.random.uniform(jax.random.split(jax.random.key(2))[1], (16, 2))
  gone = np.asarray(place).max(1) < 0.5  # the window ends before x or y = 24
  assert not np.asarray(mask)[gone, 0].any()


def test_detection_preprocessing_is_a_function_of_its_rng_and_moves_only_images_photometrically():
  c = _data_config(max_boxes=3)
  c.augment.flip = True
  c.augment.scale_range = (0.7, 1.4)
  c.augment.min_visible = 0.3
  c.augment.brightness, c.augment.contrast, c.augment.saturation = 0.2, 0.3, 0.3
  train_fn, eval_fn = augment.make_preprocess(c)
  batch = _one_box_batch()
  a = jax.jit(train_fn)(batch, jax.random.key(7))
  b = jax.jit(train_fn)(batch, jax.random.key(7))
  for key in ("image", "boxes", "box_mask"):
    np.testing.assert_array_equal(a[key], b[key])
  assert a["image"].dtype == jnp.float32 and a["boxes"].shape == (16, 3, 4)
  evaluated = eval_fn(batch)
  np.testing.assert_array_equal(evaluated["boxes"], batch["boxes"])
  c.augment.scale_range, c.augment.flip = (), False
  jitter_only = augment.make_preprocess(c)[0](batch, jax.random.key(7))
  np.testing.assert_array_equal(jitter_only["boxes"], batch["boxes"])
  assert not np.array_equal(jitter_only["image"], evaluated["image"])


def test_penn_fudan_counts_split_and_box_convention():
  require_dataset("penn_fudan")
  source = get_source("penn_fudan:penn_fudan", image_size=128)
  assert source.spec.class_names == ("person",) and source.spec.image_shape == (128, 128, 3)
  train, test = source.arrays("train"), source.arrays("test")
  assert (len(train["image"]), len(test["image"])) == (120, 50)
  assert int(train["box_mask"].sum() + test["box_mask"].sum()) == 423  # the README's count
  assert not (train["labels"][train["box_mask"]]).any()


_ANNOTATION = """# Compatible with PASCAL Annotation Version 1.00
Image filename : "PennFudanPed/PNGImages/{name}.png"
Image size (X x Y x C) : {width} x {height} x 3
Objects with ground truth : {count} {{ }}
# Top left pixel co-ordinates : (1, 1)
"""
_OBJECT = 'Bounding box for object {i} "{label}" (Xmin, Ymin) - (Xmax, Ymax) : ({x0}, {y0}) - ({x1}, {y1})\n'


def _penn_fudan(root, images):
  """A Penn-Fudan folder of `images`: {name: (pixels [h, w, 3], [(x0, y0, x1, y1, label)])}, the
  boxes in the annotation's convention (from 1, ends included)."""
  os.makedirs(root / "PennFudanPed" / "PNGImages")
  os.makedirs(root / "PennFudanPed" / "Annotation")
  for name, (pixels, objects) in images.items():
    if isinstance(pixels, bytes):
      (root / "PennFudanPed" / "PNGImages" / f"{name}.png").write_bytes(pixels)
      height, width = 40, 60
    else:
      Image.fromarray(pixels).save(root / "PennFudanPed" / "PNGImages" / f"{name}.png")
      height, width = pixels.shape[:2]
    text = _ANNOTATION.format(name=name, width=width, height=height, count=len(objects))
    for i, (x0, y0, x1, y1, label) in enumerate(objects, 1):
      text += _OBJECT.format(i=i, label=label, x0=x0, y0=y0, x1=x1, y1=y1)
    (root / "PennFudanPed" / "Annotation" / f"{name}.txt").write_text(text)
  return str(root)


def _person(x0, y0, x1, y1, size=(40, 60)):
  """An image with a white rectangle on the 0-based pixels [x0, x1) x [y0, y1), annotated as
  PASCAL 1.00 does: from 1, ends included."""
  pixels = np.zeros(size + (3,), np.uint8)
  pixels[y0:y1, x0:x1] = 255
  return pixels, [(x0 + 1, y0 + 1, x1, y1, "PASpersonWalking")]


def test_penn_fudan_boxes_cover_exactly_the_pixels_they_name(tmp_path):
  root = _penn_fudan(tmp_path, {f"P{i}": _person(5 + i, 4, 30, 20 + i) for i in range(4)})
  source = get_source(f"penn_fudan:{root}", image_size=60, resize="letterbox", test_size=1)
  train = source.arrays("train")
  for image, boxes in zip(train["image"], train["boxes"]):
    x0, y0, x1, y1 = boxes[0]
    rows, cols = np.nonzero(image[..., 0] > 127)
    assert (cols.min(), cols.max() + 1, rows.min(), rows.max() + 1) == (x0, x1, y0, y1)
  assert len(train["image"]) == 3 and len(source.arrays("test")["image"]) == 1


@pytest.mark.parametrize(
  "problem, match",
  [
    ("zero area", r"P1\.txt: box 0 \(9, 4, 9, 20.*has no area"),
    ("unknown class", r"P1\.txt: object label 'PAScar' is not a pedestrian"),
    ("corrupt image", r"P1\.png: corrupt or unreadable image"),
    ("count", r"P1\.txt: says 2 objects with ground truth but has 1"),
  ],
)
def test_penn_fudan_bad_input_names_the_file_and_leaves_no_cache(tmp_path, problem, match):
  images = {f"P{i}": _person(5, 4, 30, 20) for i in range(3)}
  if problem == "zero area":
    images["P1"] = (images["P1"][0], [(10, 5, 9, 20, "PASpersonWalking")])
  elif problem == "unknown class":
    images["P1"] = (images["P1"][0], [(10, 5, 20, 20, "PAScar")])
  elif problem == "corrupt image":
    images["P1"] = (b"not a png", images["P1"][1])
  root = _penn_fudan(tmp_path / "data", images)
  if problem == "count":
    path = tmp_path / "data" / "PennFudanPed" / "Annotation" / "P1.txt"
    path.write_text(path.read_text().replace("ground truth : 1", "ground truth : 2"))
  with pytest.raises(DatasetError, match=match):
    get_source(f"penn_fudan:{root}", test_size=1).arrays("train")
  cache = os.environ["VISION_JAX_CACHE"]
  assert not [d for _, ds, _ in os.walk(cache) for d in ds if d.startswith("incomplete")]
  assert not [f for _, _, fs in os.walk(cache) for f in fs if f.endswith(".array_record")]


def test_penn_fudan_box_outside_the_image_is_clipped_with_a_warning(tmp_path, caplog):
  images = {f"P{i}": _person(5, 4, 30, 20) for i in range(3)}
  images["P0"] = (images["P0"][0], [(50, 30, 70, 45, "PASpersonWalking")])  # 60 x 40 image
  root = _penn_fudan(tmp_path, images)
  with caplog.at_level(logging.WARNING):
    source = get_source(f"penn_fudan:{root}", image_size=60, test_size=1)
  assert "P0.txt: 1 box reaches outside the 60x40 image" in caplog.text
  boxes = np.concatenate([source.arrays(s)["boxes"][:, 0] for s in ("train", "test")])
  assert boxes.max() <= 60


def test_oxford_pets_boxes_of_the_pet_and_of_the_head(caplog):
  require_dataset("oxford_pets_3breeds")
  pets = get_source("oxford_pets:oxford_pets_3breeds", boxes="pet", resize="stretch")
  assert pets.spec.task == "detection" and pets.spec.splits == ("trainval", "test")
  test = pets.arrays("test")
  assert test["boxes"].shape == (298, 1, 4) and test["box_mask"].all()
  with caplog.at_level(logging.WARNING):
    heads = get_source("oxford_pets:oxford_pets_3breeds", boxes="head", resize="letterbox")
  assert heads.spec.splits == ("trainval",)  # the dataset has head boxes for trainval only
  assert "4 of 300 images have no head box" in caplog.text
  trainval = heads.arrays("trainval")
  assert len(trainval["image"]) == 296
  whole = get_source("oxford_pets:oxford_pets_3breeds", boxes="pet", resize="letterbox")
  head_area = np.prod(trainval["boxes"][:, 0, 2:] - trainval["boxes"][:, 0, :2], axis=1)
  pet = whole.arrays("trainval")["boxes"][:, 0]
  assert np.median(head_area) < np.median(np.prod(pet[:, 2:] - pet[:, :2], axis=1))


def test_oxford_pets_boxes_need_the_whole_picture_and_keep_the_classification_cache_key():
  from vision_jax.data.formats import get_format

  with pytest.raises(DatasetError, match="boxes='pet' needs the whole picture"):
    get_format("oxford_pets", boxes="pet")
  assert get_format("oxford_pets").options() == {
    "image_size": 64,
    "resize": "center_crop",
    "label": "breed",
  }
