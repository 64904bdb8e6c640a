"""Classifier Frechet distance: the offline quality signal on digits and real MNIST.

It must be near zero between two halves of the real data, far from noise, and grow
monotonically as one half is degraded (Gaussian noise, blur).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import blur, classifier_frechet_distance, digits, mnist_t10k, noisy
from vaes.evaluation import classifier as clf
from vaes.evaluation.classifier import DataClassifier, load_or_train_classifier, train_classifier


def random_halves(images: torch.Tensor, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    return images[order[:len(images) // 2]], images[order[len(images) // 2:]]


def check_quality_signal(images: torch.Tensor, model: DataClassifier, noise_levels, blur_levels) -> None:
    """Halves are close, noise is far, and degradation increases the distance monotonically."""
    a, b = random_halves(images)
    halves = classifier_frechet_distance(b, a, model)
    to_noise = classifier_frechet_distance(torch.randint_like(b, 0, 256), a, model)
    assert halves < 0.05 * to_noise, (halves, to_noise)
    by_noise = [classifier_frechet_distance(noisy(b, s), a, model) for s in noise_levels]
    by_blur = [classifier_frechet_distance(blur(b, s), a, model) for s in blur_levels]
    assert np.all(np.diff([halves] + by_noise) > 0), by_noise
    assert np.all(np.diff([halves] + by_blur) > 0), by_blur


@pytest.fixture(scope="module")
def digit_model(tmp_path_factory):
    images, labels = digits()
    cache = tmp_path_factory.mktemp("classifier_cache")
    return load_or_train_classifier(images, labels, dataset="digits", cache_dir=cache), cache


def test_digits_classifier_is_accurate(digit_model):
    model, _ = digit_model
    assert len(model.holdout_accuracy) == 1 and model.holdout_accuracy[0] > 0.9


def test_digits_quality_signal(digit_model):
    check_quality_signal(digits()[0], digit_model[0], noise_levels=[16, 32, 64, 128],
                         blur_levels=[0.5, 1.0, 1.5, 2.0])


def test_cached_classifier_loads_without_training(digit_model, monkeypatch):
    model, cache = digit_model
    monkeypatch.setattr(clf, "train_classifier", lambda *a, **k: pytest.fail("trained again on a cache hit"))
    images, labels = digits()
    loaded = load_or_train_classifier(images, labels, dataset="digits", cache_dir=cache)
    assert loaded.holdout_accuracy == model.holdout_accuracy
    for (name, mine), theirs in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(mine, theirs), name
    files = list(cache.iterdir())
    assert [f.suffix for f in files] == [".pt"]  # written atomically: no partial files
    assert "state_dict" in torch.load(files[0], weights_only=True)


def test_training_is_deterministic_given_the_seed():
    images, labels = digits()
    runs = [train_classifier(images[:600], labels[:600], seed=seed, epochs=1) for seed in (3, 3, 4)]
    same = [torch.equal(a, b) for a, b in zip(runs[0].state_dict().values(), runs[1].state_dict().values())]
    other = [torch.equal(a, b) for a, b in zip(runs[0].state_dict().values(), runs[2].state_dict().values())]
    assert all(same) and not all(other)


def test_one_head_per_factor():
    images, labels = digits()
    factors = torch.stack([labels, (labels >= 5).long()], dim=1)  # (N, 2): digit, and "big digit"
    model = train_classifier(images, factors, epochs=3)
    assert model.head_sizes == [10, 2] and len(model.holdout_accuracy) == 2
    assert min(model.holdout_accuracy) > 0.8


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 64, 64)])
def test_works_for_every_image_size(shape):
    model = DataClassifier(input_shape=shape, head_sizes=[10, 3]).eval()
    images = torch.randint(0, 256, (4, *shape), dtype=torch.uint8)
    assert model.features(images).shape == (4, 128)
    assert [tuple(out.shape) for out in model(images)] == [(4, 10), (4, 3)]


def test_bad_inputs_name_the_problem(digit_model):
    model, _ = digit_model
    images, labels = digits()
    with pytest.raises(TypeError, match="uint8"):
        classifier_frechet_distance(images.float(), images, model)
    with pytest.raises(ValueError, match="1x8x8"):
        classifier_frechet_distance(torch.zeros(4, 1, 28, 28, dtype=torch.uint8), images, model)
    with pytest.raises(ValueError, match="labels"):
        train_classifier(images, labels[:10])
    with pytest.raises(TypeError, match="LongTensor"):
        train_classifier(images, labels.float())


@pytest.mark.slow  # about 15 s alone on 2 cores, but minutes when other jobs share the cores
def test_real_mnist_quality_signal(mnist_root, tmp_path):
    images, labels = mnist_t10k(mnist_root)  # (10000, 1, 28, 28)
    model = load_or_train_classifier(images, labels, dataset="mnist-t10k", cache_dir=tmp_path)
    assert model.holdout_accuracy[0] > 0.95
    check_quality_signal(images, model, noise_levels=[16, 32, 64, 128], blur_levels=[0.5, 1.0, 1.5])
