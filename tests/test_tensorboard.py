"""Live curves: a digits run with tensorboard=true writes event files with every expected tag."""
import importlib.util

import pytest

from vaes.config import TrainConfig, run_id
from vaes.run import run

pytestmark = pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None,
                                reason="tensorboard is not installed (pip install -e \".[tensorboard]\")")


def test_event_files_read_back_with_the_expected_tags(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # inside: optional package
    cfg = TrainConfig(dataset="digits", variant="balanced", epochs=4, two_stage=True, stage2_epochs=3,
                      stage2_width=64, eval_images=100, fid=False, tensorboard=True, out=str(tmp_path / "run"))
    rec = run(cfg)
    assert rec.status == "finished", rec.reason
    events = EventAccumulator(str(tmp_path / "run"), size_guidance={"images": 0}).Reload()
    scalars = set(events.Tags()["scalars"])
    for stage, epochs in ((1, 4), (2, 3)):
        for term in ("loss", "recon", "kl", "mse", "gamma", "gamma_ratio", "lr", "images_per_second"):
            tag = f"stage{stage}/{term}"
            assert tag in scalars, tag
            assert [e.step for e in events.Scalars(tag)] == list(range(1, epochs + 1)), tag
    # the curve is the record's history, and a grid of samples was written
    assert [e.value for e in events.Scalars("stage1/loss")] == pytest.approx([r["loss"] for r in rec.history])
    assert "stage1/samples" in events.Tags()["images"]
    # watching a run does not change which run it is
    assert run_id(cfg) == run_id(cfg.replace(tensorboard=False))
