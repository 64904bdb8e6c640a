"""The originals' evaluation as options: the JPEG round trip, the renormalised sets of Asperti &
Trentin's code, the FID reference split, and eval-mode BatchNorm statistics after a short run."""
import numpy as np
import pytest
import torch
from torch import nn

from vaes.build import build_model, resolve
from vaes.config import TrainConfig, parse_overrides
from vaes.data import ImageData, load_dataset
from vaes.images import jpeg_round_trip
from vaes.evaluation.quality import evaluate_models, reconstruct, reference_key, renormalised_sets
from vaes.evaluation.metrics import heldout_metrics, to_float
from vaes.networks import eval_mode
from vaes.records import load_torch
from vaes.evaluation.renorm import renorm_statistics, rescale_codes, rescale_pixels
from vaes.run import DataCache, run


# ---- JPEG ------------------------------------------------------------------------------

def smooth_rgb(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """uint8 colour images with structure (gradients plus noise), as JPEG sees photographs."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, size)
    base = (ramp[None, :] + ramp[:, None]) / 2
    imgs = base[None, None] * torch.rand(n, 3, 1, 1, generator=g) + 0.2 * torch.rand(n, 3, size, size, generator=g)
    return (imgs.clamp(0, 1) * 255).round().to(torch.uint8)


def test_jpeg_round_trip_changes_colour_and_grey_images_more_at_lower_quality():
    x = smooth_rgb(8)
    err = {q: (jpeg_round_trip(x, q).float() - x.float()).abs().mean().item() for q in (10, 75, 95)}
    assert 0 < err[95] < err[75] < err[10]
    assert jpeg_round_trip(x, 75).dtype == torch.uint8 and jpeg_round_trip(x, 75).shape == x.shape
    assert torch.equal(jpeg_round_trip(x, 75), jpeg_round_trip(x, 75))  # deterministic
    grey = x[:, :1].contiguous()
    back = jpeg_round_trip(grey, 75)
    assert back.shape == grey.shape and not torch.equal(back, grey)


def test_jpeg_subsampling_is_420_as_pils_default_at_75():
    from PIL import Image  # what PIL writes by default at quality 75, to compare with our explicit 4:2:0
    import io
    x = smooth_rgb(4)
    for img, ours in zip(x, jpeg_round_trip(x, 75)):
        buf = io.BytesIO()
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(buf, format="JPEG", quality=75)
        buf.seek(0)
        pil_default = torch.from_numpy(np.array(Image.open(buf).convert("RGB"))).permute(2, 0, 1)
        assert torch.equal(ours, pil_default)


def test_jpeg_quality_applies_to_training_and_heldout_images_and_to_the_data_cache_key():
    plain = load_dataset("digits")
    jpeg = load_dataset("digits", jpeg_quality=75)
    assert not torch.equal(plain.train, jpeg.train) and not torch.equal(plain.test, jpeg.test)
    assert torch.equal(jpeg.train, jpeg_round_trip(plain.train, 75))
    assert "JPEG" in jpeg.note
    cache = DataCache()
    a, b = cache(TrainConfig(dataset="digits")), cache(TrainConfig(dataset="digits", jpeg_quality=75))
    assert a is not b and not torch.equal(a.train, b.train)


@pytest.mark.parametrize("bad", [-1, 96, 100])
def test_jpeg_quality_outside_0_and_1_to_95_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="jpeg_quality"):
        TrainConfig(jpeg_quality=bad)


def test_protocol_options_parse_and_refuse_unknown_values():
    cfg = parse_overrides(["jpeg_quality=75", "fid_reference=train", "renorm_stats=train", "bn_eval=running"])
    assert (cfg.jpeg_quality, cfg.fid_reference, cfg.renorm_stats, cfg.bn_eval) == (75, "train", "train", "running")
    for key in ("fid_reference", "renorm_stats", "bn_eval"):
        with pytest.raises(ValueError, match=key):
            TrainConfig(**{key: "bogus"})


def test_fid_reference_is_in_the_reference_cache_key():
    real = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    keys = {r: reference_key(TrainConfig(fid_reference=r), real)["split"] for r in ("heldout", "train")}
    assert keys == {"heldout": "heldout:standard", "train": "train:standard"}


# ---- renormalisation ---------------------------------------------------------------------

def test_rescale_pixels_gives_the_target_spread_and_stays_in_range():
    x = 0.5 + 0.05 * torch.randn(200, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y, scale = rescale_pixels(x, 0.15)
    assert scale == pytest.approx(3.0, rel=0.1)
    assert y.std(0, unbiased=False).mean().item() == pytest.approx(0.15, rel=0.02)
    assert torch.allclose(y.mean(0), x.mean(0), atol=1e-3) and y.min() >= 0 and y.max() <= 1


def test_rescale_codes_sets_each_batchs_spread():
    z = 0.3 * torch.randn(250, 16, generator=torch.Generator().manual_seed(0))
    out, factors = rescale_codes(z, 1.2, batch=100)
    assert len(factors) == 3  # 100, 100, 50: per batch, as the original's generate
    for chunk in out.split(100):
        assert chunk.std(0, unbiased=False).mean().item() == pytest.approx(1.2, rel=1e-4)


class Encoder(nn.Module):
    """First stage stand-in: mu = mean pixel value times a vector, sd = 0.5."""

    def __init__(self, d: int = 4):
        super().__init__()
        self.latent_dim = d
        self.w = nn.Parameter(torch.linspace(1, 2, d))

    def encode(self, x):
        m = x.flatten(1).mean(1, keepdim=True) * 4 - 2
        return m * self.w, torch.full((len(x), self.latent_dim), 2 * np.log(0.5))


class Stage2(nn.Module):
    """Second stage stand-in: u = z exactly; decoder2(u) = shrink * u + shift."""

    def __init__(self, shrink: float, shift: float):
        super().__init__()
        self.shrink, self.shift = shrink, shift
        self.p = nn.Parameter(torch.zeros(1))

    def encode(self, z):
        return z, torch.full_like(z, -60.0)  # sd e^-30: u is z

    def decode(self, u):
        return self.shrink * u + self.shift


def test_variance_law_and_the_025_condition_as_computed_gamma_runs_them():
    images = torch.randint(0, 256, (300, 1, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    model = Encoder()
    mu, _ = model.encode(to_float(images))
    # the law adds the mean posterior SD (their zlogvar is log sigma), not its variance
    law = (mu.double().var(0, unbiased=False) + 0.5).mean().sqrt().item()
    shrunk = renorm_statistics(model, Stage2(0.5, 0.0), images, seed=0, source="heldout")
    assert shrunk["variance_law"] == pytest.approx(law, rel=1e-5)
    # z_hat = z / 2: var loss 3/4 var, mse 1/4 E[z^2] -> a ratio well above 0.25: fires
    assert shrunk["fired"] is True and shrunk["prior_scale"] == pytest.approx(law, rel=1e-5)
    assert shrunk["ratio"] == pytest.approx(shrunk["var_loss2"] / shrunk["mse2"])
    shifted = renorm_statistics(model, Stage2(1.0, 0.5), images, seed=0, source="heldout")
    assert shifted["fired"] is False and shifted["prior_scale"] is None  # no variance loss: no adjustment
    one_stage = renorm_statistics(model, None, images, seed=0, source="train")
    assert one_stage["fired"] is None and one_stage["stats"] == "train"
    assert shrunk["pixel_std"] == pytest.approx(to_float(images).std(0, unbiased=False).mean().item(), rel=1e-5)


@pytest.fixture(scope="module")
def digits_model():
    cfg = resolve(TrainConfig(dataset="digits", eval_images=120, fid=False), (1, 8, 8))
    torch.manual_seed(0)
    return cfg, build_model(cfg, (1, 8, 8))


def test_renormalised_sets_are_recorded_with_their_numbers(digits_model, tmp_path):
    cfg, model = digits_model
    full = load_dataset("digits")
    data = ImageData("digits", full.train, full.test)  # no labels: no classifier to train here
    metrics = evaluate_models(cfg, model, None, data, tmp_path)
    renorm = metrics["renorm"]
    assert renorm["stats"] == "heldout" and renorm["n_images"] == 120 and renorm["fired"] is None
    assert renorm["same_as"] == {"samples_renorm": "samples"}  # one stage: the prior is not widened
    assert (tmp_path / "samples_renorm.png").is_file()
    images = {"samples": torch.zeros(1)}
    real = full.test[:120]
    info = renormalised_sets(cfg, model, None, data, images, real)
    recon = images["recon_renorm"].float() / 255
    sample = images["recon_sample"].float() / 255
    # the rescaled reconstructions have (up to clipping) the held-out images' pixel spread
    target = (real.float() / 255).std(0, unbiased=False).mean().item()
    assert info["recon_scale"] > 1 and sample.std(0).mean() < recon.std(0).mean() <= target * 1.05
    assert torch.equal(images["recon_sample"], reconstruct(model, real, seed=cfg.seed))


# ---- BatchNorm after a short ResNet run ------------------------------------------------------

@pytest.fixture(scope="module")
def short_resnet_run(tmp_path_factory):
    """40 steps of the CIFAR-10 ResNet on 400 random 32x32 images (pixels around 0.7)."""
    g = torch.Generator().manual_seed(0)
    x = (0.7 + 0.15 * torch.randn(440, 32, 32, 3, generator=g)).clamp(0, 1).mul(255).round().to(torch.uint8)
    path = tmp_path_factory.mktemp("data") / "random.npz"
    np.savez(path, train=x[:400].numpy(), test=x[400:].numpy())
    cfg = TrainConfig(variant="balanced", dataset="npz", data_root=str(path), network="resnet", latent_dim=8,
                      epochs=1, batch_size=10, eval_images=40, fid=False, out=str(tmp_path_factory.mktemp("run")))
    rec = run(cfg, progress=False)
    assert rec.status == "finished", rec.reason
    return cfg, rec, path


def first_bn_input(model, images):
    """Per-channel mean and variance over ``images`` of what the encoder's first BatchNorm sees
    (the first conv's output, which no other BatchNorm precedes)."""
    with torch.no_grad():
        h = model.encoder.body[0](to_float(images))
    return h.mean((0, 2, 3)), h.var((0, 2, 3))


@pytest.mark.slow  # a 40-step run of the 5M-parameter ResNet: tens of seconds on a CPU
def test_debiased_statistics_match_the_training_data_where_running_ones_do_not(short_resnet_run):
    cfg, rec, path = short_resnet_run
    data = load_dataset("npz", str(path))
    cfg = resolve(cfg, data.shape)
    model = build_model(cfg, data.shape)
    model.load_state_dict(load_torch(cfg.out + "/model.pt")["model"])
    bn = model.encoder.body[1].body[0]
    assert int(bn.num_batches_tracked) == 40  # 400 images, batch 10, one epoch
    true_mean, true_var = first_bn_input(model, data.train)
    running = bn.running_mean.clone(), bn.running_var.clone()
    with eval_mode(model, "debiased"):
        debiased = bn.running_mean.clone(), bn.running_var.clone()
    err = lambda stats: ((stats[0] - true_mean).abs().mean() / true_mean.abs().mean()).item()
    # after 40 steps 0.999^40 = 96% of the start (mean 0, var 1) remains in the running values
    assert err(running) > 0.9 and err(debiased) < 0.2
    assert ((debiased[1] - true_var).abs().mean() < 0.2 * (running[1] - true_var).abs().mean()).item()
    # and reconstructions in eval mode are better with them
    mse = {b: heldout_metrics(model, data.train[:100], bn_eval=b)["recon_mse"] for b in ("debiased", "running")}
    assert mse["debiased"] < mse["running"]


@pytest.mark.slow  # a 40-step run of the 5M-parameter ResNet: tens of seconds on a CPU
def test_evaluation_never_changes_the_checkpointed_batchnorm_buffers(short_resnet_run, tmp_path):
    cfg, rec, path = short_resnet_run
    saved = load_torch(cfg.out + "/model.pt")["model"]
    data = load_dataset("npz", str(path))
    cfg = resolve(cfg, data.shape)
    model = build_model(cfg, data.shape)
    model.load_state_dict(saved)
    model.train()
    heldout_metrics(model, data.test)
    evaluate_models(cfg, model, None, data, tmp_path)
    after = model.state_dict()
    buffers = [k for k in saved if "running_" in k or "num_batches" in k]
    assert buffers and all(torch.equal(after[k], saved[k]) for k in buffers)
    assert model.training  # the train flag is restored too
    assert all(torch.equal(load_torch(cfg.out + "/model.pt")["model"][k], saved[k]) for k in buffers)
