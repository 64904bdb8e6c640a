import shutil

import numpy as np
import pytest
import torch

from benchmarks.reporting.frames import read_runs
from benchmarks.reporting.table import build_table
from vaes.config import TrainConfig
from vaes.data import (DATASETS, DataMissing, DatasetSpec, ImageData, Protocol, load_dataset, load_digits_data,
                       register_dataset)
from vaes.images import SHAPE_FACTORS, render_shapes
from vaes.run import run


def test_digits_are_real_uint8_images():
    d = load_dataset("digits")
    assert d.train.dtype == torch.uint8 and d.train.shape[1:] == (1, 8, 8)
    assert len(d.train) + len(d.test) == 1797 and int(d.train.max()) == 255
    assert set(d.train_labels.unique().tolist()) == set(range(10))


def test_shapes_are_seeded_and_cover_the_factors():
    a, b = load_dataset("shapes", image_size=16), load_dataset("shapes", image_size=16)
    assert torch.equal(a.train, b.train) and a.train.shape[1:] == (1, 16, 16)
    for j, k in enumerate(SHAPE_FACTORS.values()):
        assert a.train_labels[:, j].max() == k - 1
    # every image holds a shape, and shapes differ: a square is not an ellipse
    assert (a.train.flatten(1).float().mean(1) > 0).all()
    f = torch.tensor([[0, 5, 0, 3, 3], [1, 5, 0, 3, 3]])
    sq, el = render_shapes(f, 32).float()
    assert sq.sum() > el.sum()


def test_npz_round_trip_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "mine.npz"
    np.savez(path, train=rng.integers(0, 256, (20, 16, 16, 3), dtype=np.uint8),
             test=rng.integers(0, 256, (5, 16, 16, 3), dtype=np.uint8))
    d = load_dataset("npz", str(path))
    assert d.train.shape == (20, 3, 16, 16) and d.test.shape == (5, 3, 16, 16)
    np.savez(tmp_path / "bad.npz", train=np.zeros((2, 8, 8), np.float32), test=np.zeros((2, 8, 8), np.float32))
    with pytest.raises(ValueError, match="convert to uint8"):
        load_dataset("npz", str(tmp_path / "bad.npz"))
    with pytest.raises(DataMissing, match="numpy.savez"):
        load_dataset("npz", str(tmp_path / "absent.npz"))


def test_real_mnist_test_files_load_as_the_test_split(mnist_root):
    d = load_dataset("mnist", str(mnist_root), data_split="test_only")
    assert d.train.shape == (8000, 1, 28, 28) and d.test.shape == (2000, 1, 28, 28)
    assert d.train.dtype == torch.uint8 and "t10k" in d.note
    assert sorted(d.test_labels.unique().tolist()) == list(range(10))


def test_missing_training_files_name_the_path_and_the_fix(mnist_root):
    with pytest.raises(DataMissing) as e:
        load_dataset("mnist", str(mnist_root))
    msg = str(e.value)
    assert "train-images-idx3-ubyte" in msg and str(mnist_root) in msg
    assert "download=true" in msg and "data_split=test_only" in msg


def test_corrupt_mnist_file_is_detected(mnist_root, tmp_path):
    (tmp_path / "mnist").mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(mnist_root / "mnist" / name, tmp_path / "mnist" / name)
    with open(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz", "r+b") as f:
        f.seek(1000)
        f.write(b"\x00" * 64)
    with pytest.raises(DataMissing, match="corrupt.*MD5"):
        load_dataset("mnist", str(tmp_path), data_split="test_only")


def test_uncompressed_idx_in_torchvision_layout(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("t10k", 10)):
        imgs = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        (raw / f"{split}-images-idx3-ubyte").write_bytes(
            bytes([0, 0, 8, 3]) + b"".join(int(v).to_bytes(4, "big") for v in imgs.shape) + imgs.tobytes())
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1]) + n.to_bytes(4, "big") + labels.tobytes())
    d = load_dataset("fashion_mnist", str(tmp_path))
    assert d.train.shape == (30, 1, 28, 28) and d.test.shape == (10, 1, 28, 28)


@pytest.mark.parametrize("name,where", [("cifar10", "cifar-10-batches-py"), ("celeba", "celeba"),
                                        ("mnist", "MNIST/raw"), ("fashion_mnist", "FashionMNIST/raw")])
def test_missing_torchvision_sets_say_where_and_how(tmp_path, name, where):
    with pytest.raises(DataMissing) as e:
        load_dataset(name, str(tmp_path))
    assert where in str(e.value) and "download=true" in str(e.value)


def test_a_new_data_set_is_one_registration(tmp_path):
    """Register a data set (mirrored digits) and it is valid everywhere: config, protocol,
    shape without loading, training, the report's caption. Removed again afterwards."""

    def load_mirrored(root, download, **_):
        d = load_digits_data(root, download)
        return ImageData("digits_mirrored", d.train.flip(-1), d.test.flip(-1), d.train_labels, d.test_labels,
                         note="digits, mirrored")

    spec = DatasetSpec("digits_mirrored", load_mirrored, Protocol(
        epochs=2, lr=1e-3, lr_halve_every=0, stage2_epochs=2), "mirrored digits (8x8)",
        lambda size: (1, 8, 8), train_size=1500)
    with DATASETS.temporary():
        register_dataset(spec)
        with pytest.raises(ValueError, match="already registered"):
            register_dataset(spec)
        rec = run(TrainConfig(dataset="digits_mirrored", fid=False, eval_images=100, out=str(tmp_path / "run")))
        assert rec.status == "finished", rec.reason
        assert rec.config["epochs"] == 2 and rec.data["shape"] == [1, 8, 8]  # the protocol's, the spec's
        caption = " ".join(build_table(read_runs(tmp_path).frame).caption)
        assert "mirrored digits (8x8)" in caption
    assert "digits_mirrored" not in DATASETS
