"""Data sets behind one interface: uint8 images N x C x H x W with a train and a held-out split.

The registry of data sets with each one's protocol, and the loaders of its seven sets (the
shapes' renderer and the JPEG round trip are vaes/images.py).

- ``digits``: scikit-learn's bundled 8x8 digits (1,797 real images, no download);
- ``shapes``: procedural dSprites-like images (square, ellipse, heart; scale, rotation,
  position), generated at any size from a seed;
- ``mnist``, ``fashion_mnist``, ``cifar10``, ``celeba``: torchvision's data sets under
  ``data_root`` (``download=True`` fetches them where there is internet);
- ``npz``: a user's own images in an .npz file.

A missing or corrupt data set raises :class:`DataMissing`, naming the path, what was
expected there and how to get it.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import math
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torchvision.datasets as tvd
import torchvision.transforms.v2 as T
from tqdm import tqdm

from vaes.images import SHAPE_FACTORS, jpeg_round_trip, render_shapes
from vaes.records import atomic_path
from vaes.registry import Registry


class DataMissing(FileNotFoundError):
    """A data set is absent or corrupt; the message says where and how to get it."""


@dataclasses.dataclass
class ImageData:
    """A data set in memory. Images are uint8 (N, C, H, W); labels (N,) or (N, F) or None."""
    name: str
    train: torch.Tensor
    test: torch.Tensor
    train_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    note: str = ""                        # provenance, e.g. 'train/held-out split of the t10k files'
    levels: int = 256                     # distinct pixel values of the source data (bits per dimension)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train.shape[1:])


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Training defaults of a data set: the paper's where it has one."""
    epochs: int
    lr: float
    lr_halve_every: int  # 0 = never
    stage2_epochs: int
    # None: twice lr_halve_every (the ratio of the epochs). Asperti & Trentin's suggested
    # configurations (asperti/BalancingVAE, computed_gamma.py, the table at the end of the
    # file: lr_epochs2 400 for CIFAR-10, 120 for CelebA) halve the second stage's rate every
    # 400 and 120 epochs.
    stage2_lr_halve_every: int | None = None
    # Images per quality metric (generated, and held-out up to the split's size) and per FID set.
    # The literature's 10,000 (Heusel et al. 2017 advise at least that many for FID) is the
    # protocol of the data-set suites; the small synthetic sets use hundreds, so that a run's
    # evaluation costs about what its training does (Inception: ~0.14 s an image on a CPU).
    eval_images: int = 10_000
    fid_images: int = 10_000
    # the second stage's MLP width; None: by image size (vaes.build.resolve). Digits' 16-d codes: 128
    stage2_width: int | None = None
    # the sets Inception scores: "all", or "headline" (vaes.evaluation.quality.HEADLINE_SETS: what a table
    # shows); on small data the classifier scores the auxiliary sets, at ~1% of Inception's cost
    inception_sets: str = "all"


# ---- small helpers ---------------------------------------------------------------------

def _split(x: torch.Tensor, y: torch.Tensor | None, frac_test: float, seed: int = 0):
    """Seeded random split into (train, test) parts."""
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(len(x) * frac_test))
    te, tr = perm[:n_test], perm[n_test:]
    pick = (lambda t, i: None if t is None else t[i])
    return x[tr], x[te], pick(y, tr), pick(y, te)


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---- digits ----------------------------------------------------------------------------

def load_digits_data(root: str, download: bool, **_) -> ImageData:
    """scikit-learn's 8x8 digits, 0..16 scaled to 0..255; a fixed 1,500 / 297 split."""
    from sklearn.datasets import load_digits  # heavy (scikit-learn), needed for digits only
    d = load_digits()
    x = torch.from_numpy(np.round(d.images * (255 / 16)).astype(np.uint8)).unsqueeze(1)
    y = torch.from_numpy(d.target).long()
    xtr, xte, ytr, yte = _split(x, y, frac_test=297 / 1797)
    # 17 levels (0..16) stored as 0..255: their bits per dimension count 17, not 256
    return ImageData("digits", xtr, xte, ytr, yte, note="scikit-learn load_digits, seeded 1500/297 split",
                     levels=17)


# ---- shapes ----------------------------------------------------------------------------

def load_shapes_data(root: str, download: bool, *, image_size: int | None = None,
                     n: int = 12_000, seed: int = 1234, **_) -> ImageData:
    """Procedural shapes with random factors; labels are the (N, 5) factors."""
    size = image_size or 28
    gen = torch.Generator().manual_seed(seed)
    factors = torch.stack([torch.randint(k, (n,), generator=gen) for k in SHAPE_FACTORS.values()], 1)
    imgs = torch.cat([render_shapes(factors[i:i + 2000], size) for i in range(0, n, 2000)])
    xtr, xte, ytr, yte = _split(imgs, factors, frac_test=1 / 6)
    return ImageData("shapes", xtr, xte, ytr, yte, note=f"procedural shapes {size}x{size}, seed {seed}")


# ---- MNIST and Fashion-MNIST -----------------------------------------------------------

def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped), the format of the MNIST files."""
    opener = gzip.open if path.suffix == ".gz" else open
    fix = ("delete it and copy the original file again (or download=true where there is internet: "
           "torchvision fetches and checks it)")
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError; a cut gzip raises EOFError
        raise DataMissing(f"{path} cannot be read ({type(e).__name__}: {e}): it is cut short or not a "
                          f"gzip file; {fix}") from None
    # IDX: two zero bytes, type 0x08 (unsigned byte), the number of dimensions, then each size
    if len(data) < 4 or data[:3] != b"\x00\x00\x08" or not 1 <= data[3] <= 4:
        raise DataMissing(f"{path} is not an IDX file of unsigned bytes (it starts with {data[:4]!r}); {fix}")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    if len(data) != 4 + 4 * ndim + math.prod(dims):
        raise DataMissing(f"{path} is cut short or padded: its header says {dims} "
                          f"({math.prod(dims)} bytes of data), the file holds {len(data) - 4 - 4 * ndim}; {fix}")
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _mnist_like(name: str, cls_name: str, root: str, download: bool) -> ImageData | dict:
    cls = getattr(tvd, cls_name)
    if download:  # torchvision's own download and parsing
        parts = [cls(root, train=t, download=True) for t in (True, False)]
        return ImageData(name, parts[0].data.unsqueeze(1), parts[1].data.unsqueeze(1),
                         parts[0].targets.long(), parts[1].targets.long(), note="torchvision")
    # Read the IDX files where they lie: torchvision's layout (ROOT/MNIST/raw) or a plain folder,
    # gzipped or not, checking the .gz files against torchvision's checksums.
    md5 = dict(cls.resources)
    folders = [Path(root) / cls.__name__ / "raw", Path(root) / name, Path(root)]
    found: dict[str, np.ndarray] = {}
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        for folder in folders:
            for path in (folder / stem, folder / (stem + ".gz")):
                if path.is_file():
                    if path.suffix == ".gz" and path.name in md5 and _md5(path) != md5[path.name]:
                        raise DataMissing(
                            f"{path} is corrupt (MD5 differs from torchvision's {md5[path.name]}); "
                            f"delete it and download again (download=true) or copy a good one")
                    found[stem] = _read_idx(path)
                    break
            if stem in found:
                break
    return found


def _load_mnist_family(name: str, cls_name: str, root: str, download: bool, data_split: str) -> ImageData:
    got = _mnist_like(name, cls_name, root, download)
    if isinstance(got, ImageData):
        return got
    where = f"{root}/{cls_name}/raw/, {root}/{name}/ or {root}/"
    need = ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    if data_split == "standard":
        need = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"] + need
    missing = [s for s in need if s not in got]
    if missing:
        hint = ("; to use the test files alone, split 80/20, pass data_split=test_only"
                if data_split == "standard" and "t10k-images-idx3-ubyte" in got else "")
        raise DataMissing(
            f"{name}: missing {', '.join(m + '[.gz]' for m in missing)} in {where}. "
            f"Get them with download=true (needs internet; torchvision.datasets.{cls_name}) "
            f"or copy the IDX files there{hint}")
    te_x = torch.from_numpy(got["t10k-images-idx3-ubyte"].copy()).unsqueeze(1)
    te_y = torch.from_numpy(got["t10k-labels-idx1-ubyte"].astype(np.int64))
    if data_split == "test_only":
        xtr, xte, ytr, yte = _split(te_x, te_y, frac_test=0.2)
        return ImageData(name, xtr, xte, ytr, yte,
                         note=f"{name} t10k files only, seeded 80/20 train/held-out split")
    tr_x = torch.from_numpy(got["train-images-idx3-ubyte"].copy()).unsqueeze(1)
    tr_y = torch.from_numpy(got["train-labels-idx1-ubyte"].astype(np.int64))
    return ImageData(name, tr_x, te_x, tr_y, te_y, note=f"{name} standard train/test split")


def load_mnist_data(root: str, download: bool, data_split: str = "standard", **_) -> ImageData:
    """MNIST: 60k/10k 28x28 grey images."""
    return _load_mnist_family("mnist", "MNIST", root, download, data_split)


def load_fashion_mnist_data(root: str, download: bool, data_split: str = "standard", **_) -> ImageData:
    """Fashion-MNIST: 60k/10k 28x28 grey images."""
    return _load_mnist_family("fashion_mnist", "FashionMNIST", root, download, data_split)


# ---- CIFAR-10 and CelebA ---------------------------------------------------------------

def load_cifar10_data(root: str, download: bool, data_split: str = "standard", **_) -> ImageData:
    """CIFAR-10 through torchvision: 50k/10k 32x32 colour images."""
    parts = []
    for train in (True, False):
        try:
            ds = tvd.CIFAR10(root, train=train, download=download)
        except RuntimeError as e:  # torchvision: "Dataset not found or corrupted"
            raise DataMissing(
                f"cifar10: {e} Looked in {Path(root) / 'cifar-10-batches-py'} for torchvision's "
                f"python batches (data_batch_1..5, test_batch). Get them with download=true "
                f"(needs internet) or unpack cifar-10-python.tar.gz into {root}") from None
        parts.append(ds)
    x = [torch.from_numpy(p.data).permute(0, 3, 1, 2).contiguous() for p in parts]
    y = [torch.tensor(p.targets).long() for p in parts]
    data = ImageData("cifar10", x[0], x[1], y[0], y[1], note="torchvision CIFAR10")
    return _test_only(data) if data_split == "test_only" else data


def _celeba_split(root: str, split: str, download: bool) -> torch.Tensor:
    """One CelebA split, centre-cropped to 128 and resized to 64, cached as uint8 .npy."""
    cache = Path(root) / "celeba" / f"vaebench_64_{split}.npy"
    if cache.is_file():
        return torch.from_numpy(np.load(cache))
    try:
        ds = tvd.CelebA(root, split=split, target_type=[], download=download)
    except RuntimeError as e:  # torchvision: "Dataset not found or corrupted"
        raise DataMissing(
            f"celeba: {e} Looked in {Path(root) / 'celeba'} for img_align_celeba/ and the "
            f"list_*.txt files of torchvision's CelebA layout. download=true tries Google Drive "
            f"(often over quota); else download them by hand into {Path(root) / 'celeba'}") from None
    tf = T.Compose([T.PILToTensor(), T.CenterCrop(128), T.Resize(64, antialias=True)])
    imgs = torch.stack([tf(ds[i][0]) for i in tqdm(range(len(ds)), desc=f"celeba {split} -> 64x64")])
    with atomic_path(cache) as staging, open(staging, "wb") as f:  # a handle: np.save appends .npy to names
        np.save(f, imgs.numpy())
    return imgs


def load_celeba_data(root: str, download: bool, data_split: str = "standard", **_) -> ImageData:
    """CelebA 64x64 (centre crop 128, resize 64, as Dai & Wipf and Asperti & Trentin)."""
    data = ImageData("celeba", _celeba_split(root, "train", download),
                     _celeba_split(root, "test", download), note="torchvision CelebA, crop 128 -> 64")
    return _test_only(data) if data_split == "test_only" else data


def _test_only(data: ImageData) -> ImageData:
    xtr, xte, ytr, yte = _split(data.test, data.test_labels, frac_test=0.2)
    return ImageData(data.name, xtr, xte, ytr, yte, note=data.note + "; test split only, 80/20")


# ---- a user's own images ---------------------------------------------------------------

def load_npz_data(root: str, download: bool, **_) -> ImageData:
    """Images from an .npz file at ``data_root``: arrays 'train' and 'test' (or one 'images',
    split 90/10), uint8, N x H x W, N x H x W x C or N x C x H x W; optional '*_labels'."""
    path = Path(root)
    if not path.is_file():
        raise DataMissing(f"npz: no file at data_root={root!r}; save your images with "
                          "numpy.savez(path, train=uint8 array, test=uint8 array) and pass its path")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":  # an .npz is a zip archive; anything else is another file
        raise DataMissing(f"npz: {path} is not a .npz archive (it starts with {magic!r}"
                          + (", a single .npy array" if magic == b"\x93NUM" else "")
                          + "); save your images with numpy.savez(path, train=uint8 array, test=uint8 array)")
    try:
        with np.load(path, allow_pickle=False) as f:  # pickled objects can run code: never loaded
            arrays = {k: f[k] for k in f.files}
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise DataMissing(f"npz: {path} holds pickled Python objects (an object array), which vaebench "
                              "never loads because unpickling can run code; save plain uint8 arrays: "
                              "numpy.savez(path, train=uint8 array, test=uint8 array)") from None
        raise DataMissing(f"npz: {path} is not a .npz archive of arrays ({e}); save your images with "
                          "numpy.savez(path, train=uint8 array, test=uint8 array)") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError, TypeError) as e:
        raise DataMissing(f"npz: {path} cannot be read as a .npz archive ({type(e).__name__}: {e}): it is "
                          "cut short or another kind of file despite its name; write it again with "
                          "numpy.savez(path, train=uint8 array, test=uint8 array)") from None

    def chw(a: np.ndarray, key: str) -> torch.Tensor:
        if a.dtype != np.uint8:
            raise ValueError(f"npz: array {key!r} in {path} is {a.dtype}; convert to uint8 0..255")
        if a.ndim == 3:
            a = a[:, None]
        elif a.ndim == 4 and a.shape[-1] in (1, 3) and a.shape[1] not in (1, 3):
            a = a.transpose(0, 3, 1, 2)
        if a.ndim != 4 or a.shape[1] not in (1, 3):
            raise ValueError(f"npz: array {key!r} has shape {a.shape}; expected N x H x W, "
                             "N x H x W x C or N x C x H x W with C in (1, 3)")
        return torch.from_numpy(np.ascontiguousarray(a))

    lab = (lambda k: torch.from_numpy(arrays[k]).long() if k in arrays else None)
    if "train" in arrays and "test" in arrays:
        return ImageData("npz", chw(arrays["train"], "train"), chw(arrays["test"], "test"),
                         lab("train_labels"), lab("test_labels"), note=str(path))
    if "images" in arrays:
        xtr, xte, ytr, yte = _split(chw(arrays["images"], "images"), lab("labels"), frac_test=0.1)
        return ImageData("npz", xtr, xte, ytr, yte, note=f"{path}, seeded 90/10 split")
    raise DataMissing(f"npz: {path} holds arrays {sorted(arrays)}; expected 'train' and 'test', "
                      "or 'images'")


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Everything vaebench knows about a data set, in one place: how to load it, its image shape
    (without loading it), its training-set size, its protocol and its display name (the FIDs
    published for it are in benchmarks/reporting/ledger.toml). Registered with :func:`register_dataset`; everything else asks here."""
    name: str
    loader: Callable[..., ImageData]
    protocol: Protocol
    display_name: str
    shape: Callable[[int | None], tuple[int, int, int]] | None  # image_size -> (C, H, W); None: known after loading
    train_size: int | None = None  # images in the standard training split (synthetic stand-ins use it)
    test_file: bool = False        # has a separate test file, so data_split=test_only applies
    sized: bool = False            # generated at any image_size (recorded in the resolved config)


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add a data set: its name becomes valid for dataset=, suites, studies, speed and reports.
    Registering a name twice is an error, never a silent overwrite."""
    return DATASETS.register(spec.name, spec)


def list_datasets(pattern: str = "*") -> list[str]:
    """Sorted names of the registered data sets, optionally filtered by a glob pattern."""
    return DATASETS.list(pattern)


def get_dataset(name: str) -> DatasetSpec:
    """The spec registered under ``name``; an unknown name lists the valid ones."""
    return DATASETS.get(name)


def _fixed(shape: tuple[int, int, int]) -> Callable[[int | None], tuple[int, int, int]]:
    return lambda image_size: shape


# The paper's protocols: CIFAR-10 and CelebA follow Asperti & Trentin's code.
# digits: 1,500 steps (at 600 the balanced gamma was 1.17 sqrt(MSE)), stage 2 twice: the paper's ratio
register_dataset(DatasetSpec("digits", load_digits_data, Protocol(epochs=100, lr=1e-3, lr_halve_every=0, stage2_epochs=200,
                                                                 eval_images=300, fid_images=50, inception_sets="headline",
                                                                 stage2_width=128),
                             "scikit-learn digits (8x8)", _fixed((1, 8, 8)), train_size=1500))
register_dataset(DatasetSpec("shapes", load_shapes_data, Protocol(epochs=20, lr=1e-3, lr_halve_every=0, stage2_epochs=40,
                                                                 eval_images=500, fid_images=100, inception_sets="headline"),
                             "procedural shapes", lambda size: (1, size or 28, size or 28), train_size=10_000,
                             sized=True))
register_dataset(DatasetSpec("mnist", load_mnist_data, Protocol(epochs=30, lr=1e-3, lr_halve_every=0, stage2_epochs=60),
                             "MNIST", _fixed((1, 28, 28)), test_file=True, train_size=60_000))
register_dataset(DatasetSpec("fashion_mnist", load_fashion_mnist_data,
                             Protocol(epochs=30, lr=1e-3, lr_halve_every=0, stage2_epochs=60),
                             "Fashion-MNIST", _fixed((1, 28, 28)), train_size=60_000, test_file=True))
register_dataset(DatasetSpec("cifar10", load_cifar10_data,
                             Protocol(epochs=700, lr=1e-4, lr_halve_every=250, stage2_epochs=1400,
                                      stage2_lr_halve_every=400),
                             "CIFAR-10", _fixed((3, 32, 32)), test_file=True, train_size=50_000))
register_dataset(DatasetSpec("celeba", load_celeba_data,
                             Protocol(epochs=70, lr=5e-5, lr_halve_every=60, stage2_epochs=140,
                                      stage2_lr_halve_every=120),
                             "CelebA 64x64", _fixed((3, 64, 64)), test_file=True, train_size=162_770))
register_dataset(DatasetSpec("npz", load_npz_data, Protocol(epochs=30, lr=1e-3, lr_halve_every=0, stage2_epochs=60),
                             "an .npz data set", None))


def load_dataset(name: str, root: str = "data", *, download: bool = False,
                 data_split: str = "standard", image_size: int | None = None,
                 jpeg_quality: int = 0) -> ImageData:
    """Load data set ``name`` (see :func:`list_datasets`) as uint8 tensors; with
    ``jpeg_quality`` (1..95) training and held-out images alike go through a JPEG round trip."""
    spec = get_dataset(name)
    if data_split == "test_only" and not spec.test_file:
        raise ValueError(f"data_split=test_only applies to data sets with a test split file; "
                         f"{name} has its own split")
    data = spec.loader(root, download, data_split=data_split, image_size=image_size)
    if jpeg_quality:  # the one place: every loader's images, both splits
        data = dataclasses.replace(data, train=jpeg_round_trip(data.train, jpeg_quality),
                                   test=jpeg_round_trip(data.test, jpeg_quality),
                                   note=f"{data.note}; JPEG round trip, PIL quality {jpeg_quality}, 4:2:0",
                                   levels=256)  # JPEG's decoded pixels take any 8-bit value
    return data
