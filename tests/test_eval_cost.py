"""What keeps a run's evaluation cheap without changing a number: equal image sets scored once,
Inception on the headline sets of small data, every set in one pass, threads fixed per run."""
import dataclasses

import numpy as np
import torch

from benchmarks.run import default_jobs
from benchmarks.suite import expand, load_suite
from vaes.config import TrainConfig
from vaes.evaluation.quality import HEADLINE_SETS, equal_sets, inception_sets
from vaes.evaluation.fid import _features_in_one_pass, extract_features
from vaes.build import use_threads
from tests.conftest import digit_images


def test_equal_sets_are_found_by_content_not_by_object():
    a = digit_images(30, seed=0)
    images = {"samples": a, "recon": digit_images(30, seed=1), "samples_renorm": a.clone(),
              "recon_renorm": digit_images(30, seed=1).clone(), "other": digit_images(30, seed=2)}
    assert equal_sets(images) == {"samples_renorm": "samples", "recon_renorm": "recon"}
    changed = a.clone()
    changed[0, 0, 0, 0] ^= 1  # one pixel differs: another set
    assert equal_sets({"samples": a, "samples_renorm": changed}) == {}


def test_small_data_puts_only_the_headline_sets_on_inception():
    sets = {k: None for k in ("samples", "stage2", "stage2_ancestral", "recon", "recon_sample", "recon_renorm")}
    assert inception_sets(TrainConfig(dataset="digits"), sets) == [k for k in sets if k in HEADLINE_SETS]
    assert inception_sets(TrainConfig(dataset="shapes"), sets) == ["samples", "stage2", "recon"]
    assert inception_sets(TrainConfig(dataset="mnist"), sets) == list(sets)  # the data-set suites: all


class _RowSum(torch.nn.Module):
    """A stand-in extractor whose features depend on each image alone: (B, 3, H, W) -> (B, 4)."""

    def forward(self, x):
        x = x.float()
        return torch.stack([x.sum((1, 2, 3)), x.mean((1, 2, 3)), x[:, 0].amax((1, 2)), x.std((1, 2, 3))], 1)


def test_one_pass_over_all_sets_gives_each_sets_own_features():
    fn = _RowSum()
    fakes = {"samples": digit_images(50, 0), "stage2": digit_images(50, 1), "recon": digit_images(37, 2)}
    together = _features_in_one_pass(fakes, fn, "cpu", 50, False)
    assert list(together) == list(fakes)
    for name, images in fakes.items():
        np.testing.assert_array_equal(together[name], extract_features(images, fn, batch_size=50))


def test_default_jobs_give_each_core_one_single_thread_run(monkeypatch):
    suite = load_suite("quick")
    jobs = expand(suite, seeds=1, device="cpu")
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert all(j.cfg.threads == 1 for j in jobs)  # the suite fixes the threads, not the environment
    assert default_jobs(jobs) == 2
    assert default_jobs(jobs[:1]) == 1                      # never more jobs than runs
    assert default_jobs([dataclasses.replace(j, cfg=j.cfg.replace(threads=0)) for j in jobs]) == 1
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert default_jobs(jobs) == 6                          # 8 cores, 6 runs of 1 thread


def test_a_runs_threads_are_set_and_returned():
    before = torch.get_num_threads()
    try:
        assert use_threads(TrainConfig(threads=1)) == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
