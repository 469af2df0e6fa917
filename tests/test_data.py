"""The data layer: local formats, preparation into the cache, bad input, batch order."""

import gzip
import hashlib
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from conftest import require_dataset
from PIL import Image

from vision_jax.data import augment
from vision_jax.data.formats.idx import read_idx
from vision_jax.data.pipeline import DeviceData, StreamData, batch_indices, get_splits
from vision_jax.data.sources import get_source
from vision_jax.errors import ConfigError, DatasetError
from vision_jax.train.mesh import make_mesh


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
  monkeypatch.setenv("VISION_JAX_CACHE", str(tmp_path / "cache"))
  get_source.cache_clear()
  yield
  get_source.cache_clear()


def _write_idx(path, array, magic_type=0x08):
  header = bytes([0, 0, magic_type, array.ndim]) + b"".join(
    int(d).to_bytes(4, "big") for d in array.shape
  )
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def _idx_dataset(root, n=40, test_labels=None):
  os.makedirs(root, exist_ok=True)
  rng = np.random.default_rng(0)
  _write_idx(os.path.join(root, "train-images-idx3-ubyte.gz"), rng.integers(0, 255, (n, 28, 28)))
  _write_idx(os.path.join(root, "train-labels-idx1-ubyte.gz"), np.arange(n) % 10)
  _write_idx(os.path.join(root, "t10k-images-idx3-ubyte.gz"), rng.integers(0, 255, (10, 28, 28)))
  _write_idx(
    os.path.join(root, "t10k-labels-idx1-ubyte.gz"),
    np.arange(10) if test_labels is None else test_labels,
  )


def _image_tree(root, sizes=None, n=3):
  for split in ("train", "test"):
    for cls in ("cat", "dog"):
      d = os.path.join(root, split, cls)
      os.makedirs(d, exist_ok=True)
      for i in range(n):
        size = (sizes or {}).get((split, cls, i), (8, 8))
        Image.fromarray(np.full(size + (3,), 40 * i, np.uint8)).save(os.path.join(d, f"{i}.png"))


def test_mnist_is_bit_exact_and_complete():
  root = require_dataset("mnist")
  expected = {
    "train-images-idx3-ubyte.gz": "6bbc9ace898e44ae57da46a324031adb",
    "t10k-labels-idx1-ubyte.gz": "27ae3e4e09519cfbb04c329615203637",
  }
  for name, md5 in expected.items():
    with gzip.open(os.path.join(root, name), "rb") as f:
      assert hashlib.md5(f.read()).hexdigest() == md5
  source = get_source("idx:mnist")
  assert source.spec.image_shape == (28, 28, 1) and source.spec.num_classes == 10
  assert len(source.split("train")) == 60000 and len(source.split("test")) == 10000
  test = source.arrays("test")
  assert (
    np.bincount(test["label"]).tolist()
    == np.bincount(read_idx(os.path.join(root, "t10k-labels-idx1-ubyte.gz"))).tolist()
  )


def test_idx_roundtrip(tmp_path):
  _idx_dataset(tmp_path / "toy")
  source = get_source(f"idx:{tmp_path / 'toy'}")
  arrays = source.arrays("train")
  assert arrays["image"].shape == (40, 28, 28, 1) and sorted(arrays["label"].tolist()) == sorted(
    np.arange(40) % 10
  )


def test_truncated_idx_names_the_file(tmp_path):
  _idx_dataset(tmp_path / "toy")
  path = tmp_path / "toy" / "train-images-idx3-ubyte.gz"
  data = gzip.open(path).read()
  with gzip.open(path, "wb") as f:
    f.write(data[:-100])
  with pytest.raises(DatasetError, match="train-images-idx3-ubyte.gz.*truncated"):
    get_source(f"idx:{tmp_path / 'toy'}")


def test_not_an_idx_file(tmp_path):
  _idx_dataset(tmp_path / "toy")
  with gzip.open(tmp_path / "toy" / "train-labels-idx1-ubyte.gz", "wb") as f:
    f.write(b"PK\x03\x04 this is a zip")
  with pytest.raises(DatasetError, match="train-labels-idx1-ubyte.gz: not an IDX file"):
    get_source(f"idx:{tmp_path / 'toy'}")


def test_label_outside_class_range_names_file_and_leaves_no_cache(tmp_path):
  _idx_dataset(tmp_path / "toy", test_labels=np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 12]))
  with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte.gz: label 12 .* \[0, 10\)"):
    get_source(f"idx:{tmp_path / 'toy'}")
  _assert_no_partial_cache(tmp_path / "cache")


def _assert_no_partial_cache(cache):
  leftovers = [
    os.path.join(d, n)
    for d, ds, fs in os.walk(cache)
    for n in ds + fs
    if n.startswith("incomplete") or n.endswith(".array_record-00000-of-00001")
  ]
  assert not leftovers, leftovers


def test_processes_preparing_the_same_dataset_at_once_all_succeed(tmp_path):
  """A sweep's parallel points prepare the same dataset at once: one prepares, the others wait and read it."""
  import subprocess
  import sys

  from conftest import REPO, run_env

  _idx_dataset(tmp_path / "toy", n=400)
  code = (
    "import sys; from vision_jax.data.sources import get_source; "
    f"print(len(get_source('idx:{tmp_path / 'toy'}').split('train')))"
  )
  env = run_env(VISION_JAX_CACHE=str(tmp_path / "cache"))
  procs = [
    subprocess.Popen(
      [sys.executable, "-c", code],
      cwd=REPO,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
    )
    for _ in range(3)
  ]
  outs = [p.communicate(timeout=300)[0].decode() for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0 and out.strip().endswith("400"), out[-2000:]
  prepared = [
    d for d, _, fs in os.walk(tmp_path / "cache") if any(f.endswith("-of-00001") for f in fs)
  ]
  assert len(prepared) == 1, prepared
  assert not [
    n for _, ds, _ in os.walk(tmp_path / "cache") for n in ds if n.startswith("incomplete")
  ]


def test_missing_path():
  with pytest.raises(DatasetError, match="does not exist"):
    get_source("idx:/nonexistent/mnist")


def test_unknown_format():
  with pytest.raises(DatasetError, match="unknown dataset format 'csv'.*image_folder"):
    get_source("csv:whatever")


def test_image_folder_tree_and_tarball(tmp_path):
  import tarfile

  _image_tree(tmp_path / "pics")
  folder = get_source(f"image_folder:{tmp_path / 'pics'}")
  assert folder.spec.class_names == ("cat", "dog") and folder.spec.image_shape == (8, 8, 3)
  with tarfile.open(tmp_path / "pics.tar.gz", "w:gz") as tar:
    tar.add(tmp_path / "pics", arcname="pics")
  packed = get_source(f"image_folder:{tmp_path / 'pics.tar.gz'}")
  a, b = folder.arrays("test"), packed.arrays("test")
  order_a, order_b = (
    np.lexsort((a["image"].sum((1, 2, 3)), a["label"])),
    np.lexsort((b["image"].sum((1, 2, 3)), b["label"])),
  )
  np.testing.assert_array_equal(a["image"][order_a], b["image"][order_b])
  assert len(packed.split("train")) == 6


def test_a_prepared_tarball_opens_without_reading_it_again(tmp_path, monkeypatch):
  """Preparation lists the tarball once and reads it once per split; a prepared dataset opens
  from its saved spec without touching the tarball."""
  import tarfile

  _image_tree(tmp_path / "pics")
  with tarfile.open(tmp_path / "pics.tar.gz", "w:gz") as tar:
    tar.add(tmp_path / "pics", arcname="pics")
  opened = []
  real_open = tarfile.open
  monkeypatch.setattr(
    tarfile, "open", lambda *a, **kw: (opened.append(a[0]), real_open(*a, **kw))[1]
  )
  name = f"image_folder:{tmp_path / 'pics.tar.gz'}"
  first = get_source(name)
  # is_tarfile's look at the header, the listing, the first image's shape, then each split.
  assert len(opened) == 3 + len(first.spec.splits)
  opened.clear()
  get_source.cache_clear()
  again = get_source(name)
  assert opened == [] and again.spec == first.spec
  np.testing.assert_array_equal(again.arrays("train")["image"], first.arrays("train")["image"])
  specs = os.listdir(tmp_path / "cache" / "tfds" / "specs")
  assert len(specs) == 1 and specs[0].startswith("image_folder-")


def test_corrupt_image_names_the_file_and_leaves_no_cache(tmp_path):
  _image_tree(tmp_path / "pics")
  bad = tmp_path / "pics" / "train" / "dog" / "1.png"
  bad.write_bytes(bad.read_bytes()[:30])
  with pytest.raises(DatasetError, match="train/dog/1.png: corrupt or unreadable image"):
    get_source(f"image_folder:{tmp_path / 'pics'}")
  _assert_no_partial_cache(tmp_path / "cache")
  _image_tree(tmp_path / "pics")  # repaired: prepares cleanly
  get_source.cache_clear()
  assert len(get_source(f"image_folder:{tmp_path / 'pics'}").split("train")) == 6


def test_image_of_the_wrong_size_names_the_file(tmp_path):
  _image_tree(tmp_path / "pics", sizes={("train", "dog", 2): (9, 8)})
  with pytest.raises(
    DatasetError, match=r"train/dog/2.png: image of shape \(9, 8, 3\), expected \(8, 8, 3\)"
  ):
    get_source(f"image_folder:{tmp_path / 'pics'}")


def test_sklearn_digits_split_is_fixed():
  source = get_source("sklearn:digits")
  train, test = source.arrays("train"), source.arrays("test")
  assert train["image"].shape[1:] == (32, 32, 1) and train["image"].dtype == np.uint8
  assert len(train["label"]) + len(test["label"]) == 1797
  assert 355 <= len(test["label"]) <= 362 and set(np.unique(test["label"])) == set(range(10))


def _data_config(**kw):
  c = ml_collections.ConfigDict(
    {
      "dataset": "sklearn:digits",
      "train_split": "train",
      "eval_splits": ("test",),
      "validation_size": 0,
      "train_size": 0,
    }
  )
  c.update(kw)
  return c


def test_validation_split_is_disjoint_and_fixed():
  _, splits = get_splits(_data_config(validation_size=100, eval_splits=("validation", "test")))
  assert len(splits["validation"]) == 100
  assert not set(splits["validation"].indices) & set(splits["train"].indices)
  _, again = get_splits(_data_config(validation_size=100))
  np.testing.assert_array_equal(again["validation"].indices, splits["validation"].indices)


def test_batch_order_is_a_function_of_seed_and_step():
  n, b = 100, 16
  first = np.asarray(batch_indices(3, 7, n, b))
  np.testing.assert_array_equal(first, np.asarray(batch_indices(3, 7, n, b)))
  assert not np.array_equal(first, np.asarray(batch_indices(4, 7, n, b)))
  epoch = np.concatenate([np.asarray(batch_indices(3, s, n, b)) for s in range(n // b)])
  assert len(set(epoch.tolist())) == len(epoch)  # no repeats within an epoch
  next_epoch = np.concatenate(
    [np.asarray(batch_indices(3, s, n, b)) for s in range(n // b, 2 * (n // b))]
  )
  assert not np.array_equal(epoch, next_epoch)  # reshuffled


def test_indices_of_a_chunk_of_steps_are_those_of_each_step():
  from vision_jax.data.pipeline import steps_indices

  sharding = jax.sharding.NamedSharding(make_mesh(), jax.sharding.PartitionSpec())
  n, b = 100, 16  # 6 steps per epoch: a chunk of 14 steps from step 4 spans epochs 0 to 2
  chunk = np.asarray(steps_indices(3, 4, 14, n, b, sharding))
  assert chunk.shape == (14, b)
  np.testing.assert_array_equal(
    chunk, np.stack([np.asarray(batch_indices(3, s, n, b)) for s in range(4, 18)])
  )


def test_device_and_stream_paths_give_the_same_batches():
  _, splits = get_splits(_data_config())
  mesh = make_mesh()
  device = DeviceData(splits["train"], 32, mesh, seed=5)
  stream = StreamData(splits["train"], 32, mesh, seed=5)
  xs_stream = stream.xs(43, 3)  # crosses an epoch boundary (44 steps per epoch)
  xs_device = device.xs(43, 3)
  for k, step in enumerate(range(43, 46)):
    np.testing.assert_array_equal(
      np.asarray(xs_device[k]), np.asarray(batch_indices(5, step, len(splits["train"]), 32))
    )
    from_device = jax.jit(device.get)(device.data, xs_device[k])
    for key in ("image", "label"):
      np.testing.assert_array_equal(np.asarray(from_device[key]), np.asarray(xs_stream[key][k]))


def test_batch_larger_than_data():
  _, splits = get_splits(_data_config(train_size=10))
  with pytest.raises(ValueError, match="larger than the 10 training examples"):
    DeviceData(splits["train"], 32, make_mesh(), 0)


def test_augmentations_keep_shapes_and_vary_by_rng():
  images = jnp.arange(2 * 8 * 8 * 1, dtype=jnp.float32).reshape(2, 8, 8, 1)
  a = augment.random_crop(jax.random.key(0), images, 2)
  assert a.shape == images.shape
  b = augment.random_crop(jax.random.key(1), images, 2)
  assert not np.array_equal(np.asarray(a), np.asarray(b))
  flipped = augment.random_flip(jax.random.key(0), images)
  for i in range(2):
    assert np.array_equal(flipped[i], images[i]) or np.array_equal(flipped[i], images[i, :, ::-1])
  shifted = augment.shift(images, 2, 0)
  np.testing.assert_array_equal(shifted[:, 2:], images[:, :-2])
  assert float(jnp.abs(shifted[:, :2]).sum()) == 0.0
  assert augment.pad_to(jnp.zeros((1, 28, 28, 1)), 32).shape == (1, 32, 32, 1)


# Oxford-IIIT Pet: the official layout, two tarballs.
_PETS = [  # name, CLASS-ID, SPECIES, BREED-ID, split: CLASS-ID order is not the names' sorted order
  ("Abyssinian_1", 1, 1, 1, "trainval"),
  ("Abyssinian_2", 1, 1, 1, "test"),
  ("american_bulldog_1", 2, 2, 1, "trainval"),
  ("american_bulldog_2", 2, 2, 1, "test"),
  ("Bengal_1", 6, 1, 2, "trainval"),
  ("Bengal_2", 6, 1, 2, "test"),
]


def _png(pixels):
  import io

  buf = io.BytesIO()
  Image.fromarray(pixels).save(buf, format="PNG")  # lossless; Pillow reads by content, not by name
  return buf.getvalue()


def _stripes(height, width, value):
  """Three vertical stripes: red, green (value), blue."""
  img = np.zeros((height, width, 3), np.uint8)
  third = width // 3
  img[:, :third, 0], img[:, third : 2 * third, 1], img[:, 2 * third :, 2] = 255, value, 255
  return img


def _pets_archives(root, entries=_PETS, images=None, skip=()):
  """Writes root/images.tar.gz and root/annotations.tar.gz; images: name -> bytes (else stripes)."""
  import io
  import tarfile

  os.makedirs(root, exist_ok=True)

  def add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))

  with tarfile.open(os.path.join(root, "images.tar.gz"), "w:gz") as tar:
    for i, (name, *_) in enumerate(entries):
      if name not in skip:
        add(
          tar, f"images/{name}.jpg", (images or {}).get(name) or _png(_stripes(30, 90, 40 * i + 10))
        )
  lines = {
    split: [f"{n} {c} {s} {b}" for n, c, s, b, sp in entries if sp == split]
    for split in ("trainval", "test")
  }
  with tarfile.open(os.path.join(root, "annotations.tar.gz"), "w:gz") as tar:
    add(
      tar,
      "annotations/list.txt",
      (
        "#Image CLASS-ID SPECIES BREED ID\n"
        + "\n".join(f"{n} {c} {s} {b}" for n, c, s, b, _ in entries)
        + "\n"
      ).encode(),
    )
    for split, split_lines in lines.items():
      add(tar, f"annotations/{split}.txt", ("\n".join(split_lines) + "\n").encode())


def test_oxford_pets_3breeds_official_splits():
  require_dataset("oxford_pets_3breeds")
  source = get_source("oxford_pets:oxford_pets_3breeds", image_size=32)
  assert source.spec.class_names == (
    "Abyssinian",
    "american_bulldog",
    "Bengal",
  )  # by CLASS-ID 1, 2, 6
  assert source.spec.splits == ("trainval", "test") and source.spec.image_shape == (32, 32, 3)
  trainval, test = source.arrays("trainval"), source.arrays("test")
  assert trainval["image"].shape == (300, 32, 32, 3) and trainval["image"].dtype == np.uint8
  assert np.bincount(trainval["label"]).tolist() == [100, 100, 100]
  assert np.bincount(test["label"]).tolist() == [
    98,
    100,
    100,
  ]  # test.txt lists 298 of the 300 test images
  assert (
    40 < trainval["image"].mean() < 200 and trainval["image"].std() > 30
  )  # real pictures, not blank


def test_oxford_pets_labels_resize_and_options(tmp_path):
  _pets_archives(tmp_path / "pets")
  crop = get_source(f"oxford_pets:{tmp_path / 'pets'}", image_size=12)
  assert crop.spec.class_names == ("Abyssinian", "american_bulldog", "Bengal")
  trainval = crop.arrays("trainval")
  order = np.argsort(trainval["label"])
  assert trainval["label"][order].tolist() == [0, 1, 2]
  # Each image is three stripes across a 90x30 picture: the centre crop is the green stripe alone.
  np.testing.assert_array_equal(trainval["image"][order][:, :, :, 1].mean((1, 2)), [10, 90, 170])
  assert trainval["image"][:, :, :, [0, 2]].max() == 0
  stretch = get_source(f"oxford_pets:{tmp_path / 'pets'}", image_size=12, resize="stretch").arrays(
    "trainval"
  )
  assert stretch["image"].shape == (3, 12, 12, 3)
  assert (
    stretch["image"][:, :, 0, 0].min() == 255 and stretch["image"][:, :, -1, 2].min() == 255
  )  # red left, blue right
  species = get_source(f"oxford_pets:{tmp_path / 'pets'}", image_size=12, label="species")
  assert species.spec.class_names == ("cat", "dog")
  assert sorted(species.arrays("test")["label"].tolist()) == [0, 0, 1]
  with pytest.raises(DatasetError, match="no option 'size'.*image_size, resize, label"):
    get_source(f"oxford_pets:{tmp_path / 'pets'}", size=12)
  with pytest.raises(DatasetError, match="resize must be one of center_crop, stretch"):
    get_source(f"oxford_pets:{tmp_path / 'pets'}", resize="pad")
  with pytest.raises(DatasetError, match="no option 'image_size'.*takes no options"):
    get_source("sklearn:digits", image_size=12)


def test_a_prepared_folder_opens_without_its_source_and_only_with_its_options(tmp_path):
  """`prepared:<folder>`: a copy of the prepared dataset reads the same examples once the source is gone."""
  import shutil

  _pets_archives(tmp_path / "pets")
  original = get_source(f"oxford_pets:{tmp_path / 'pets'}", image_size=12, label="species")
  expected = {split: original.arrays(split) for split in original.spec.splits}
  shutil.copytree(original.folder, tmp_path / "carried")
  shutil.rmtree(tmp_path / "pets")
  shutil.rmtree(tmp_path / "cache")
  for options in ({}, {"image_size": 12, "label": "species", "resize": "center_crop"}):
    copy = get_source(f"prepared:{tmp_path / 'carried'}", **options)
    assert copy.spec == original.spec and copy.folder == str(tmp_path / "carried")
    assert original.origin == original.name and copy.origin == f"oxford_pets:{tmp_path / 'pets'}"
    for split, a in expected.items():
      b = copy.arrays(split)
      np.testing.assert_array_equal(a["image"], b["image"])
      np.testing.assert_array_equal(a["label"], b["label"])
  with pytest.raises(
    DatasetError,
    match=r"prepared from oxford_pets:.*pets with image_size=12, label='species', "
    r"but the config asks for image_size=32, label='breed'",
  ):
    get_source(f"prepared:{tmp_path / 'carried'}", image_size=32)
  with pytest.raises(DatasetError, match="no option 'size'"):
    get_source(f"prepared:{tmp_path / 'carried'}", size=12)
  with pytest.raises(DatasetError, match="expected a folder that vision_jax prepared"):
    get_source(f"prepared:{tmp_path}")
  (tmp_path / "carried" / "vision_jax_source.json").write_text('{"name": "x"')
  get_source.cache_clear()
  with pytest.raises(DatasetError, match="vision_jax_source.json is unreadable or incomplete"):
    get_source(f"prepared:{tmp_path / 'carried'}")


def test_oxford_pets_missing_archive_names_it(tmp_path):
  _pets_archives(tmp_path / "pets")
  os.remove(tmp_path / "pets" / "annotations.tar.gz")
  with pytest.raises(
    DatasetError, match=r"pets/annotations.tar.gz: missing; expected the Oxford-IIIT Pet layout"
  ):
    get_source(f"oxford_pets:{tmp_path / 'pets'}")


def test_oxford_pets_list_naming_a_missing_image_leaves_no_cache(tmp_path):
  _pets_archives(tmp_path / "pets", skip=("Bengal_2",))
  with pytest.raises(
    DatasetError,
    match=r"annotations/test.txt line 3 names Bengal_2, but there is no "
    r".*images.tar.gz:images/Bengal_2.jpg",
  ):
    get_source(f"oxford_pets:{tmp_path / 'pets'}")
  _assert_no_partial_cache(tmp_path / "cache")


def test_oxford_pets_corrupt_image_names_it_and_leaves_no_cache(tmp_path):
  _pets_archives(tmp_path / "pets", images={"american_bulldog_2": _png(_stripes(30, 90, 0))[:40]})
  with pytest.raises(
    DatasetError, match=r"images.tar.gz:images/american_bulldog_2.jpg: corrupt or unreadable image"
  ):
    get_source(f"oxford_pets:{tmp_path / 'pets'}")
  _assert_no_partial_cache(tmp_path / "cache")


# Every user-given dataset ends in one clear error (DatasetError, naming the file) or a correct run,
# and a failed preparation leaves no partial cache.


def _idx_expect_error(tmp_path, match):
  with pytest.raises(DatasetError, match=match):
    get_source(f"idx:{tmp_path / 'toy'}")
  _assert_no_partial_cache(tmp_path / "cache")


def test_idx_labels_file_holding_images_names_it(tmp_path):
  _idx_dataset(tmp_path / "toy")
  images = np.random.default_rng(1).integers(0, 255, (40, 28, 28))
  _write_idx(tmp_path / "toy" / "train-labels-idx1-ubyte.gz", images)
  _idx_expect_error(
    tmp_path,
    r"train-labels-idx1-ubyte.gz: expected labels, integers \[count\] \(one per image\), "
    r"got uint8 \[40, 28, 28\]",
  )


def test_idx_splits_with_images_of_different_sizes_name_both_files(tmp_path):
  _idx_dataset(tmp_path / "toy")
  _write_idx(tmp_path / "toy" / "t10k-images-idx3-ubyte.gz", np.zeros((10, 14, 14)))
  _idx_expect_error(
    tmp_path,
    r"t10k-images-idx3-ubyte.gz: test images of shape \(14, 14, 1\), but the train images "
    r"\(.*train-images-idx3-ubyte.gz\) are \(28, 28, 1\)",
  )


def test_idx_stray_training_label_is_refused_not_taken_for_more_classes(tmp_path):
  """A 12 among 0..9 made 13 classes, 10 and 11 without an example; the class count is now
  0..K-1 with every class in the training labels, or declared, and every split is held to it."""
  _idx_dataset(tmp_path / "toy")
  labels = np.arange(40) % 10
  labels[17] = 12  # one stray label; every digit keeps training examples
  _write_idx(tmp_path / "toy" / "train-labels-idx1-ubyte.gz", labels)
  _idx_expect_error(
    tmp_path,
    r"train-labels-idx1-ubyte.gz: label 12 at index 17 \(split 'train'\) leaves labels 10, 11 "
    r"without a training example.*'num_classes': K\} \(K >= 13\)",
  )
  # Declared, the count holds every split to it: here 12 is outside 10 classes, in training too.
  get_source.cache_clear()
  with pytest.raises(
    DatasetError,
    match=r"train-labels-idx1-ubyte.gz: label 12 at index 17 \(split 'train'\) is outside the "
    r"class range \[0, 10\) that format_options.num_classes declares",
  ):
    get_source(f"idx:{tmp_path / 'toy'}", num_classes=10)
  _assert_no_partial_cache(tmp_path / "cache")
  # A dataset with classes missing from its training labels (EMNIST letters: 1..26) declares them.
  get_source.cache_clear()
  source = get_source(f"idx:{tmp_path / 'toy'}", num_classes=13)
  assert source.spec.num_classes == 13 and 12 in source.arrays("train")["label"]


def test_idx_without_options_keeps_its_cache_key(tmp_path):
  """IdxFormat gained the option num_classes; its default prepares what it did before it, into
  the same folder (an existing cache of MNIST stays valid)."""
  from vision_jax.data.formats import get_format

  _idx_dataset(tmp_path / "toy")
  h = hashlib.sha256(b"idx-1.0.0")
  for p in sorted(os.listdir(tmp_path / "toy")):
    st = os.stat(tmp_path / "toy" / p)
    h.update(f"{p}:{st.st_size}:{int(st.st_mtime)}".encode())
  assert get_format("idx").fingerprint(str(tmp_path / "toy")) == h.hexdigest()[:12]


def test_idx_one_class_or_no_images_is_refused(tmp_path):
  _idx_dataset(tmp_path / "toy")
  _write_idx(tmp_path / "toy" / "train-labels-idx1-ubyte.gz", np.zeros(40))
  _write_idx(tmp_path / "toy" / "t10k-labels-idx1-ubyte.gz", np.zeros(10))
  _idx_expect_error(tmp_path, "train-labels-idx1-ubyte.gz: every training label is 0")
  _write_idx(tmp_path / "toy" / "train-images-idx3-ubyte.gz", np.zeros((0, 28, 28)))
  _write_idx(tmp_path / "toy" / "train-labels-idx1-ubyte.gz", np.zeros(0))
  get_source.cache_clear()
  _idx_expect_error(tmp_path, r"train-images-idx3-ubyte.gz: no images \(count 0")


def test_every_format_s_examples_are_checked_against_the_spec(tmp_path, monkeypatch):
  """The builder, which every local format's examples pass through, refuses an image of another
  size or a label that is not a class index, whatever the format failed to check."""
  from vision_jax.data.formats import base

  class Careless(base.LocalFormat):
    name = "careless"
    bad: dict = {}

    def spec(self, root):
      return base.DatasetSpec((4, 4, 1), ("a", "b"), ("train",))

    def examples(self, root, split):
      for i in range(3):
        ex = {"image": np.zeros((4, 4, 1), np.uint8), "label": i % 2, "_source": f"{root}#{i}"}
        if i == 2:
          ex.update(self.bad)
        yield str(i), ex

  monkeypatch.setitem(base._FORMATS, "careless", Careless)
  (tmp_path / "data").mkdir()
  for bad, match in [
    ({"image": np.zeros((4, 5, 1), np.uint8)}, r"uint8 \(4, 5, 1\), expected uint8 \(4, 4, 1\)"),
    ({"image": np.zeros((4, 4, 1), np.float32)}, r"float32 \(4, 4, 1\), expected uint8"),
    ({"label": 1.5}, r"has label 1.5, expected a class index"),
    ({"label": 2}, r"label 2 of example 2 \(split 'train'\) is outside the class range \[0, 2\)"),
  ]:
    monkeypatch.setattr(Careless, "bad", bad)
    get_source.cache_clear()
    with pytest.raises(DatasetError, match=f"data#2: .*{match}"):
      get_source(f"careless:{tmp_path / 'data'}")
    _assert_no_partial_cache(tmp_path / "cache")


def test_image_folder_class_folder_without_images_is_refused_not_dropped(tmp_path):
  """An empty class folder was dropped and the classes after it renumbered; it is named instead,
  in a folder or a tarball, as is a class folder of files that are not images."""
  import tarfile

  _image_tree(tmp_path / "pics")
  for split in ("train", "test"):
    os.makedirs(tmp_path / "pics" / split / "bird")
  with pytest.raises(
    DatasetError, match=r"pics/train/bird: a class folder with no images .*in every split"
  ):
    get_source(f"image_folder:{tmp_path / 'pics'}")
  with tarfile.open(tmp_path / "pics.tar.gz", "w:gz") as tar:
    tar.add(tmp_path / "pics", arcname="pics")
  get_source.cache_clear()
  with pytest.raises(
    DatasetError, match=r"pics.tar.gz:pics/train/bird: a class folder with no images"
  ):
    get_source(f"image_folder:{tmp_path / 'pics.tar.gz'}")
  (tmp_path / "pics" / "train" / "bird" / "0.heic").write_bytes(b"not read")
  get_source.cache_clear()
  with pytest.raises(
    DatasetError,
    match=r"pics/train/bird: a class folder with no images .*only 1 other files, e.g. "
    r"train/bird/0.heic",
  ):
    get_source(f"image_folder:{tmp_path / 'pics'}")
  _assert_no_partial_cache(tmp_path / "cache")


def test_image_folder_with_one_class_is_refused(tmp_path):
  """One class folder made a one-class classifier that reported 0% error."""
  import shutil

  _image_tree(tmp_path / "pics")
  for split in ("train", "test"):
    shutil.rmtree(tmp_path / "pics" / split / "dog")
  with pytest.raises(DatasetError, match=r"pics/train/cat: the only class folder"):
    get_source(f"image_folder:{tmp_path / 'pics'}")
  os.makedirs(tmp_path / "flat")
  shutil.move(tmp_path / "pics" / "train" / "cat", tmp_path / "flat" / "cat")
  get_source.cache_clear()
  with pytest.raises(DatasetError, match=r"flat/cat: the only class folder"):
    get_source(f"image_folder:{tmp_path / 'flat'}")
  _assert_no_partial_cache(tmp_path / "cache")


def test_a_dataset_of_one_class_is_refused_whatever_its_format(tmp_path):
  """list.txt of a single breed made a one-class classifier too."""
  _pets_archives(tmp_path / "pets", entries=[e for e in _PETS if e[0].startswith("Abyssinian")])
  with pytest.raises(DatasetError, match=r"pets: 1 class \(Abyssinian\); .*two classes or more"):
    get_source(f"oxford_pets:{tmp_path / 'pets'}")
  _assert_no_partial_cache(tmp_path / "cache")


def test_image_folder_ignores_files_that_are_not_images(tmp_path):
  _image_tree(tmp_path / "pics")
  (tmp_path / "pics" / "train" / "dog" / "notes.txt").write_text("not an image")
  (tmp_path / "pics" / "README.txt").write_text("about the pictures")
  source = get_source(f"image_folder:{tmp_path / 'pics'}")
  assert source.spec.class_names == ("cat", "dog") and len(source.split("train")) == 6


def test_tfds_unknown_name_is_a_dataset_error():
  with pytest.raises(DatasetError, match=r"tfds:no_such_dataset_xyz: not in TFDS's catalogue"):
    get_source("tfds:no_such_dataset_xyz")
  with pytest.raises(DatasetError, match=r"tfds:mnsit: .*Did you mean: mnsit -> mnist"):
    get_source("tfds:mnsit")


def test_tfds_images_of_varying_size_are_refused_before_any_download(tmp_path):
  with pytest.raises(DatasetError, match=r"tfds:oxford_iiit_pet: its images vary in size"):
    get_source("tfds:oxford_iiit_pet")
  assert not (tmp_path / "cache").exists()


def _offline(monkeypatch):
  """No network, on any machine: every name lookup fails at once."""
  import socket

  def fail(*args, **kwargs):
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known (offline in this test)")

  monkeypatch.setattr(socket, "getaddrinfo", fail)


def test_tfds_without_network_fails_at_once_and_leaves_nothing(tmp_path, monkeypatch):
  """Without a network, TFDS retried each file for 3.5 minutes and left *.tmp.* folders."""
  import time

  _offline(monkeypatch)
  start = time.monotonic()
  with pytest.raises(
    DatasetError,
    match=r"tfds:mnist: not prepared in .*storage.googleapis.com:443\) cannot be reached.*"
    r"idx:mnist",
  ):
    get_source("tfds:mnist")
  assert time.monotonic() - start < 30
  assert not [os.path.join(d, f) for d, _, fs in os.walk(tmp_path / "cache") for f in fs]


def test_tfds_failed_download_leaves_no_temporary_files(tmp_path, monkeypatch):
  """A download that fails after the network check (here: at once, without TFDS's retries) leaves
  neither partial downloads nor an incomplete dataset folder."""
  from tensorflow_datasets.core.download import downloader

  from vision_jax.data import sources

  _offline(monkeypatch)
  monkeypatch.setattr(sources, "_unreachable", lambda hosts: [], raising=False)
  monkeypatch.setattr(downloader, "MAX_RETRIES", 0)
  with pytest.raises(DatasetError, match=r"tfds:mnist: could not download and prepare it"):
    get_source("tfds:mnist")
  left = [
    os.path.relpath(os.path.join(d, n), tmp_path / "cache")
    for d, ds, fs in os.walk(tmp_path / "cache")
    for n in ds + fs
  ]
  assert not [p for p in left if ".tmp." in p or "incomplete." in p], left
  files = [p for p in left if os.path.isfile(tmp_path / "cache" / p)]
  assert files == ["tfds/mnist/.prepare.lock"] and "tfds/downloads/mnist" not in left, left


def test_sklearn_digits_counts_in_the_docs_are_the_prepared_ones():
  """The docs said 1,437 / 360; the stratified split (round(20%) of each digit) gives 1,438 / 359."""
  from conftest import REPO

  source = get_source("sklearn:digits")
  train, test = len(source.split("train")), len(source.split("test"))
  assert (train, test) == (1438, 359)
  for path, text in [
    ("README.md", f"{train:,} train / {test:,} test"),
    ("configs/lenet5_digits.py", f"{train:,} for training and {test:,} held out"),
    ("vision_jax/data/formats/sklearn_digits.py", f"{test:,} of the 1,797"),
  ]:
    with open(os.path.join(REPO, path), encoding="utf-8") as f:
      assert text in f.read(), path


def test_split_settings_that_do_not_fit_the_dataset_are_dataset_errors():
  with pytest.raises(DatasetError, match=r"no split 'trian' \(data.train_split\); it has train"):
    get_splits(_data_config(train_split="trian", validation_size=100))
  with pytest.raises(DatasetError, match=r"data.train_size 5000 is more than the 1438 examples"):
    get_splits(_data_config(train_size=5000))


def test_validation_size_does_not_replace_a_dataset_s_own_validation_split(tmp_path):
  for split in ("train", "validation"):
    for cls in ("cat", "dog"):
      os.makedirs(tmp_path / "pics" / split / cls)
      for i in range(4):
        Image.fromarray(np.full((8, 8, 3), 10 * i, np.uint8)).save(
          tmp_path / "pics" / split / cls / f"{i}.png"
        )
  config = _data_config(dataset=f"image_folder:{tmp_path / 'pics'}", eval_splits=("validation",))
  assert len(get_splits(config)[1]["validation"]) == 8
  with pytest.raises(DatasetError, match="has a 'validation' split of its own"):
    get_splits(_data_config(**{**config.to_dict(), "validation_size": 2}))


# transfer_pets checks both its datasets and its settings before it pretrains.


def _transfer_config(dataset, **format_options):
  from vision_jax.config import load_config

  config = load_config("transfer_pets", "smoke")
  config.data.dataset = dataset
  config.data.format_options.update(format_options)
  config.train.batch_size = 2  # the toy pets have 3 trainval images
  return config


def _no_training(monkeypatch):
  from experiments import transfer_pets

  def train(*args):
    raise AssertionError("a run started training before every dataset and setting was checked")

  monkeypatch.setattr(transfer_pets, "train_and_evaluate", train)
  return transfer_pets


@pytest.mark.parametrize("problem", ["wrong path", "truncated images", "image_size 0"])
def test_transfer_pets_finds_a_bad_pets_dataset_before_pretraining(tmp_path, monkeypatch, problem):
  transfer_pets = _no_training(monkeypatch)
  _pets_archives(tmp_path / "pets")
  options, match = {}, r"pets"
  if problem == "wrong path":
    dataset, match = f"oxford_pets:{tmp_path / 'no_pets'}", r"no_pets does not exist"
  else:
    dataset = f"oxford_pets:{tmp_path / 'pets'}"
  if problem == "truncated images":
    data = (tmp_path / "pets" / "images.tar.gz").read_bytes()
    (tmp_path / "pets" / "images.tar.gz").write_bytes(data[: len(data) // 2])
    match = r"images.tar.gz: corrupt or truncated tarball"
  if problem == "image_size 0":
    options, match = {"image_size": 0}, r"image_size must be a positive int, got 0"
  with pytest.raises(DatasetError, match=match):
    transfer_pets.run(_transfer_config(dataset, **options), str(tmp_path / "run"))
  assert not [p for p in (tmp_path / "run").rglob("*") if p.is_file()]  # no checkpoint, no metrics
  _assert_no_partial_cache(tmp_path / "cache")


def test_transfer_pets_checks_the_pretraining_dataset_and_batch_before_training(
  tmp_path, monkeypatch
):
  transfer_pets = _no_training(monkeypatch)
  _pets_archives(tmp_path / "pets")
  config = _transfer_config(f"oxford_pets:{tmp_path / 'pets'}")
  monkeypatch.setenv("VISION_JAX_DATASETS", str(tmp_path / "no_datasets"))
  with pytest.raises(DatasetError, match=r"image_folder:cifar10: .*no_datasets/cifar10 does not"):
    transfer_pets.run(config, str(tmp_path / "run"))
  config.train.batch_size = 4
  with pytest.raises(ConfigError, match=r"train.batch_size 4 is larger than the 3 training"):
    transfer_pets.run(config, str(tmp_path / "run"))
  assert not [p for p in (tmp_path / "run").rglob("*") if p.is_file()]  # no checkpoint, no metrics
