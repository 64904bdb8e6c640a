"""Training and evaluation speed, and a suite on one device: ``python -m benchmarks.speed``; docs/speed.md says
what each part (train, pythae, stage2, eval, suite) measures and how. Without vaebench's FID weights evaluation runs
only with ``--random-inception SEED`` (the same network under seeded random weights: its cost, not a real FID)."""
from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from torchvision.models import inception_v3

from vaes.evaluation import feature_metrics
from vaes.build import build_model, dataset_shape, pick_device, resolve
from benchmarks import run as bench_run
from benchmarks.speed_suite import part_suite, suite_args
from benchmarks.timed import TimedCommandFailed
from vaes.cli import choice_list, dirty_refusal, entry_point, number, output_refusal, parser, refuse
from vaes.config import TrainConfig
from vaes.data import DataMissing, get_dataset, load_dataset
from vaes.evaluation.quality import generate
from vaes.evaluation.fid import build_feature_fn, extract_features
from vaes.evaluation.frechet import feature_statistics, frechet_distance_to_features
from vaes.evaluation.metrics import train_step_flops
from vaes.networks import count_parameters
from vaes.records import git_commit
from vaes.registry import Registry
from vaes.fit import fit
from vaes.run import train_stage2

PARTS = ("train", "pythae", "stage2", "eval", "suite")
PAPER = get_dataset("cifar10").protocol  # 700 + 1,400 epochs (Asperti & Trentin's code)
PAPER_IMAGES, PAPER_FID_IMAGES = get_dataset("cifar10").train_size, 10_000
PEAK_TFLOPS = 989.0  # H100/H200 SXM dense bf16, NVIDIA's data sheets (1,979 is with 2:4 sparsity)
TRAINERS: Registry[type] = Registry("speed trainer")  # part train's loops: (cfg, x, device, workdir), .run(epochs)


def timed(device: torch.device, fn):
    """(fn(), seconds), the device drained before and after (so the clock covers the queued work)."""
    drain = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    drain()
    t0 = time.perf_counter()
    out = fn()
    drain()
    return out, time.perf_counter() - t0


def peak(device: torch.device, reset: bool = False) -> float | None:
    """The CUDA allocator's peak since the last reset, MiB (None on the CPU); ``reset`` starts anew."""
    if device.type == "cuda" and reset:
        torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def machine(device: torch.device) -> dict:
    """What ran: the device, versions, cores, load, the TF32 settings and the commit."""
    cpu = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
           if ln.startswith("model name")] if Path("/proc/cpuinfo").is_file() else []
    return {"type": device.type, "torch": torch.__version__, "cuda": torch.version.cuda,
            "name": torch.cuda.get_device_name(device) if device.type == "cuda" else (cpu or [platform.machine()])[0],
            "python": platform.python_version(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "load_average": os.getloadavg()[0], "git_commit": git_commit(),
            # cuDNN convolutions use TF32 by default; matrix products do not (torch's defaults)
            "tf32": {"cudnn_conv": torch.backends.cudnn.allow_tf32, "matmul": torch.backends.cuda.matmul.allow_tf32}}


def images_of(name: str, root: str, synthetic: bool, n: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(train, held-out) uint8 images of data set ``name``, or uint8 noise of its shape (the speed
    of these dense networks does not depend on pixels) with ``synthetic``; never downloads."""
    if not synthetic:  # DataMissing says how to get it; main adds --synthetic
        d = load_dataset(name, root)
        return d.train[:n], d.test, d.note
    shape = dataset_shape(TrainConfig(dataset=name))
    x = torch.randint(0, 256, (n + max(100, n // 10), *shape), generator=torch.Generator().manual_seed(0),
                      dtype=torch.uint8)
    return x[:n], x[n:], f"synthetic uint8 noise of shape {'x'.join(map(str, shape))}"


def fresh_model(cfg: TrainConfig, shape, device: torch.device):
    """The benchmark's model, with the same initial weights every time."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return build_model(cfg, shape).to(device)


@TRAINERS.register("vaebench")
class Vaebench:
    """vaebench's ``fit`` as ``vaes.run.run`` calls it (uint8 images on the device, a checkpoint per call)."""

    def __init__(self, cfg, x, device, workdir: Path):
        self.cfg, self.workdir, self.calls = cfg, workdir, 0
        self.model, self.x = fresh_model(cfg, x.shape[1:], device), x.to(device)

    def run(self, epochs: int) -> tuple[int, float]:
        self.calls += 1  # fit resumes an existing checkpoint: a new path per call
        res = fit(self.model, lambda e: self.x, epochs=epochs, lr=self.cfg.lr, halve_every=0,
                  batch_size=self.cfg.batch_size, seed=self.cfg.seed + self.calls, bf16=self.cfg.bf16,
                  compile=self.cfg.compile, checkpoint=self.workdir / f"vaebench-{self.calls}.pt", progress=False)
        assert res.status == "finished", f"vaebench's fit ended {res.status}: {res.reason}"
        return res.images, res.history[-1]["loss"]


@TRAINERS.register("tutorial")
class Tutorial:
    """The PyTorch tutorials' loop on the same model, loss and optimizer."""

    def __init__(self, cfg, x, device, workdir: Path):
        self.device, self.model = device, fresh_model(cfg, x.shape[1:], device)
        self.loader = DataLoader(TensorDataset(x.float() / 255), batch_size=cfg.batch_size, shuffle=True)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)

    def run(self, epochs: int) -> tuple[int, float]:
        images, total = 0, 0.0
        for _ in range(epochs):
            total = 0.0
            for (x,) in self.loader:
                terms = self.model.loss(x.to(self.device))
                self.opt.zero_grad()
                terms["loss"].backward()
                self.opt.step()
                self.model.after_step(terms)
                total += terms["loss"].item()
                images += len(x)
        return images, total / len(self.loader)


@TRAINERS.register("pythae")
class Pythae:
    """pythae's BaseTrainer on its VAE holding our encoder and decoder; a round is ``train_step`` per epoch."""

    def __init__(self, cfg, x, device, workdir: Path):
        # optional (the bench extra, a wheel on the GPU machine): imported only when pythae races
        from pythae import data, models, trainers
        from pythae.models.base.base_utils import ModelOutput
        from pythae.trainers.training_callbacks import TrainingCallback
        logging.getLogger("pythae").setLevel(logging.WARNING)
        ours = fresh_model(cfg, x.shape[1:], device)

        class Encoder(models.nn.BaseEncoder):
            def forward(self, x):
                mu, logvar = self.net(x)
                return ModelOutput(embedding=mu, log_covariance=logvar)

        class Decoder(models.nn.BaseDecoder):
            def forward(self, z):  # our decoders give logits; pythae's MSE wants the mean in [0, 1]
                return ModelOutput(reconstruction=torch.sigmoid(self.net(z)))

        enc, dec = Encoder(), Decoder()
        enc.net, dec.net = ours.encoder, ours.decoder  # nn.Module.__setattr__: registered, trained
        mc = models.VAEConfig(input_dim=tuple(x.shape[1:]), latent_dim=cfg.latent_dim, reconstruction_loss="mse")
        self.model = models.VAE(mc, encoder=enc, decoder=dec)
        tc = trainers.BaseTrainerConfig(
            output_dir=str(workdir / "pythae"), num_epochs=10**6, learning_rate=cfg.lr, optimizer_cls="Adam",
            per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.batch_size,
            steps_saving=None, seed=cfg.seed, no_cuda=device.type != "cuda")
        xf = x.float() / 255
        self.trainer = trainers.BaseTrainer(self.model, data.datasets.BaseDataset(xf, torch.zeros(len(xf))), None,
                                            tc, callbacks=[TrainingCallback()])
        self.trainer.prepare_training()
        handler = self.trainer.callback_handler  # keep only the silent base callback (no bar, no printer)
        handler.callbacks = [c for c in handler.callbacks if type(c) is TrainingCallback]
        self.epoch, self.n = 0, len(xf)

    def run(self, epochs: int) -> tuple[int, float]:
        loss = float("nan")
        for _ in range(epochs):
            self.epoch += 1
            loss = self.trainer.train_step(self.epoch)
        return epochs * self.n, loss


def race(trainers: dict, epochs: int, rounds: int, device: torch.device) -> dict:
    """The trainers in alternation: a warm-up round, then ``rounds`` timed ones; images/s per round."""
    res = {name: {"images_per_second_rounds": [], "loss_rounds": []} for name in trainers}
    for r in range(rounds + 1):
        for name, t in trainers.items():
            peak(device, reset=True)
            (images, loss), dt = timed(device, lambda: t.run(epochs))
            if r:
                res[name]["images_per_second_rounds"].append(images / dt)
                res[name]["loss_rounds"].append(loss)
            res[name]["peak_memory_mib"] = peak(device)
    for name, t in trainers.items():
        res[name].update(images_per_second=statistics.median(res[name]["images_per_second_rounds"]),
                         n_params_network=count_parameters(t.model.encoder) + count_parameters(t.model.decoder))
    res["ratios"] = {f"vaebench_over_{n}": res["vaebench"]["images_per_second"] / r["images_per_second"]
                     for n, r in res.items() if n != "vaebench"}
    return res


def part_train(args, cfg, x, device, work: Path) -> tuple[dict, object]:
    names = ["vaebench", "tutorial"] + (["pythae"] if "pythae" in args.parts else [])  # vaebench first: the ratios' numerator
    trainers = {n: TRAINERS.get(n)(cfg, x, device, work) for n in names}
    res = race(trainers, args.epochs, args.rounds, device)
    res["flops_per_image"] = train_step_flops(trainers["vaebench"].model, x[:100].to(device).float() / 255) / len(x[:100])
    res["achieved_tflops"] = res["flops_per_image"] * res["vaebench"]["images_per_second"] / 1e12
    res["fraction_of_peak"] = res["achieved_tflops"] / args.peak_tflops if device.type == "cuda" else None
    return res, trainers["vaebench"].model


def part_stage2(args, cfg, model, x, device, work: Path) -> dict:
    """``vaes.run.train_stage2`` on the trained model's codes (one warm-up epoch, then timed)."""
    c = cfg.replace(stage2_epochs=1, checkpoint_every=10**6)
    train_stage2(c, model, x.to(device), work / "warm_stage2.pt", progress=False)
    (stage2, res), dt = timed(device, lambda: train_stage2(c.replace(stage2_epochs=args.stage2_epochs), model,
                                                           x.to(device), work / "stage2.pt", progress=False))
    return {"codes_per_second": res.images / res.seconds, "wall_seconds": dt, "epochs": args.stage2_epochs,
            "n_params": count_parameters(stage2), "loss": res.history[-1]["loss"]}, stage2


def random_inception(seed: int, device: torch.device):
    """torchvision's Inception-v3 under seeded random weights, fed as pytorch-fid feeds it (bilinear
    resize to 299, 2x - 1): the FID network's layers, so its cost, but not a real FID."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = inception_v3(weights=None, aux_logits=False, init_weights=True)
    net.fc = torch.nn.Identity()  # the 2048-d pool features
    net.to(device).eval()
    return lambda u8: net(2 * F.interpolate(u8.float() / 255, size=(299, 299), mode="bilinear") - 1)


def inception_scores(fake: torch.Tensor, real: torch.Tensor, fn, device, batch: int) -> dict:
    """FID, KID and precision/recall of uint8 ``fake`` against ``real`` through feature function
    ``fn``, each step timed (as vaes.evaluation.fid computes them: float64 features, float32 for KID/PRC)."""
    (f_fake, f_real), t_feat = timed(device, lambda: (extract_features(fake, fn, device=device, batch_size=batch),
                                                      extract_features(real, fn, device=device, batch_size=batch)))
    # as vaes.evaluation.fid: no sqrtm for N <= 2048
    fid, t_fid = timed(device, lambda: frechet_distance_to_features(f_fake, *feature_statistics(f_real)))
    a, b = f_fake.astype(np.float32), f_real.astype(np.float32)
    kid, t_kid = timed(device, lambda: feature_metrics.kid(a, b))
    prc, t_prc = timed(device, lambda: feature_metrics.precision_recall(a, b))
    return {"fid": fid, "kid": kid["value"], "kid_std": kid["std"], "precision": prc["precision"],
            "recall": prc["recall"], "features_seconds": t_feat, "fid_seconds": t_fid, "kid_seconds": t_kid,
            "prc_seconds": t_prc, "total_seconds": t_feat + t_fid + t_kid + t_prc,
            "inception_images_per_second": (len(fake) + len(real)) / t_feat}


def part_eval(args, cfg, model, stage2, held_out, device) -> dict:
    n = args.eval_images
    if args.random_inception is None:
        try:
            fn, what = build_feature_fn("torch-fidelity", device=device), "vaebench's FID Inception (torch-fidelity)"
        except (RuntimeError, ImportError, OSError, ValueError) as e:  # missing, absent or damaged: said
            return {"skipped": f"{type(e).__name__}: {str(e)[:300]} (pass --random-inception SEED to time the "
                               "same network under random weights)"}
    else:
        fn, what = random_inception(args.random_inception, device), "torchvision inception_v3, random weights " \
            f"(seed {args.random_inception}): not a real FID"
    fake, t_gen = timed(device, lambda: generate(model, stage2, n, seed=0))
    real = held_out[:n] if len(held_out) >= n else held_out.repeat((n + len(held_out) - 1) // len(held_out), 1, 1, 1)[:n]
    peak(device, reset=True)
    res = inception_scores(fake, real, fn, device, args.eval_batch)
    return res | dict(inception=what, n_images=n, generate_seconds=t_gen, batch=args.eval_batch, peak_memory_mib=peak(device))


def projection(res: dict) -> dict | None:
    """The paper's CIFAR-10 protocol at the measured rates (meaningful for the cifar10 network)."""
    ips = res.get("train", {}).get("vaebench", {}).get("images_per_second")
    cps = (res.get("stage2") or {}).get("codes_per_second")
    if not ips or not cps or res.get("dataset") != "cifar10":  # the paper's network only
        return None
    ev = res.get("eval") or {}
    fid_s = ev["total_seconds"] + ev["generate_seconds"] if "total_seconds" in ev else 0.0
    p = {"first_stage_seconds": PAPER.epochs * PAPER_IMAGES / ips,
         "stage2_seconds": PAPER.stage2_epochs * PAPER_IMAGES / cps,
         "eval_seconds": fid_s * PAPER_FID_IMAGES / ev["n_images"] if fid_s else None}
    p["total_minutes"] = (p["first_stage_seconds"] + p["stage2_seconds"] + (p["eval_seconds"] or 0)) / 60
    p["protocol"] = f"{PAPER.epochs} + {PAPER.stage2_epochs} epochs of {PAPER_IMAGES:,} images, batch 100"
    return p


def markdown(res: dict) -> str:
    m, tr = res["machine"], res.get("train", {})
    lines = [f"# Speed: {res['dataset']} on {m['name']} ({m['type']})", "",
             f"torch {m['torch']}, CUDA {m['cuda']}, TF32 {m['tf32']}, {m['threads']} threads, load {m['load_average']:.1f} "
             f"on {m['cores']} cores, commit {m['git_commit']}; {res['data']}, {res['n_train']} images, batch "
             f"{res['batch_size']}, bf16 {res['bf16']}, compile {res['compile']}.", ""]
    if tr:
        lines += ["| trainer | images/s (median) | vaebench over it |", "|---|---:|---:|"]
        lines += [f"| {n} | {tr[n]['images_per_second']:,.0f} | {format(tr['ratios'][f'vaebench_over_{n}'], '.2f') if n != 'vaebench' else '-'} |"
                  for n in ("vaebench", "tutorial", "pythae") if n in tr]
        lines += ["", f"FLOPs per image {tr['flops_per_image']:.3g}; {tr['achieved_tflops']:.3g} TFLOP/s"
                      f"{'; ' + format(tr['fraction_of_peak'], '.3f') + ' of peak' if tr['fraction_of_peak'] else ''}."]
    if res.get("stage2"):
        lines.append(f"Second stage: {res['stage2']['codes_per_second']:,.0f} codes/s.")
    ev = res.get("eval")
    lines.append("" if not ev else f"Evaluation: skipped ({ev['skipped']})." if "skipped" in ev else
                 f"Evaluation ({ev['inception']}), {ev['n_images']:,} vs {ev['n_images']:,} images: generate "
                 f"{ev['generate_seconds']:.1f} s, features {ev['features_seconds']:.1f} s, FID {ev['fid_seconds']:.2f} s, "
                 f"KID {ev['kid_seconds']:.2f} s, precision/recall {ev['prc_seconds']:.2f} s"
                 + (f"; peak {ev['peak_memory_mib']:,.0f} MiB." if ev["peak_memory_mib"] else "."))
    if res.get("projection"):
        lines.append(f"Projected paper protocol ({res['projection']['protocol']}): {res['projection']['total_minutes']:,.1f} min.")
    if res.get("suite"):
        s = res["suite"]
        lines.append(f"Suite {s['suite']} ({s['concurrent']['runs']} runs, --jobs {s['jobs']}): "
                     f"{s['concurrent']['wall_seconds']:.0f} s vs {s['single']['wall_seconds']:.0f} s for its "
                     f"slowest run ({s['slowest']}) alone: {s['concurrent_over_single']:.2f}x.")
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    p = parser("python -m benchmarks.speed", __doc__)
    p.add_argument("--dataset", default="digits", choices=("digits", "shapes", "mnist", "fashion_mnist", "cifar10", "celeba"))
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--parts", type=choice_list(PARTS), default=list(PARTS[:4]),
                   help=f"comma-separated, from {', '.join(PARTS)} (default: all but suite)")
    p.add_argument("--synthetic", action="store_true", help="uint8 noise of the data set's shape")
    p.add_argument("--data-root", default="data", help="where the real data sets are")
    for flag, default, what in (("--n-train", 2000, "training images"), ("--epochs", 1, "epochs per trainer and round"),
                                ("--rounds", 5, "timed rounds after a warm-up"), ("--batch-size", 100, "batch size"),
                                ("--stage2-epochs", 2, "second-stage epochs"), ("--eval-batch", 200, "Inception batch")):
        p.add_argument(flag, type=number(int, low=1, what=what), default=default, help=what)
    p.add_argument("--bf16", action="store_true", help="vaebench's trainer in bf16 autocast (the others: fp32)")
    p.add_argument("--compile", action="store_true", help="vaebench's trainer under torch.compile")
    p.add_argument("--eval-images", type=number(int, low=4, what="N generated vs N held-out"), default=500)
    p.add_argument("--random-inception", type=number(int, low=0), metavar="SEED", help="time evaluation through "
                   "torchvision's Inception-v3 under random weights seeded by SEED: the same cost, no real FID")
    p.add_argument("--peak-tflops", type=number(float, above=0), default=PEAK_TFLOPS, help="the device's peak")
    g = p.add_argument_group("suite (with --parts ...,suite)")
    g.add_argument("--suite", default="cifar10", help="suite name or .toml path")
    g.add_argument("--suite-seeds", type=number(int, low=1), default=2)
    g.add_argument("--suite-slowest", default="balanced", help="the label timed alone")
    g.add_argument("--suite-epochs-scale", type=number(float, above=0), default=0.002)
    g.add_argument("--suite-set", nargs="+", default=["fid=false", "eval_images=1000", "n_train=5000"], metavar="KEY=VALUE")
    g.add_argument("--jobs", type=number(int, low=1), default=6, help="benchmarks.run --jobs")
    p.add_argument("--threads", type=number(int, low=0, what="0: torch's default"), default=0)  # 1: steadier on a busy CPU
    p.add_argument("--out", default="results/speed")
    p.add_argument("--allow-dirty", action="store_true", help="write into results/ from a tree with uncommitted changes")
    args = p.parse_args(argv)
    if why := dirty_refusal(args.out, args.allow_dirty) or output_refusal(args.out, "--out"):
        p.error(why)
    if "suite" in args.parts and bench_run.main(suite_args(args, args.device), validate_only=True):
        p.exit(2)  # benchmarks.run said why it refuses the suite: nothing is timed
    return args


@entry_point
def main(argv=None) -> dict | int:
    """Time the parts asked for and save OUT/DEVICE-DATASET.json and .md; an exit status instead
    when a timed command failed (nothing saved) or an input is refused."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    try:
        x, held_out, note = images_of(args.dataset, args.data_root, args.synthetic, args.n_train)
    except DataMissing as e:
        sys.exit(refuse(f"{e}; or pass --synthetic to time on uint8 noise of the data set's shape"))
    cfg = resolve(TrainConfig(dataset=args.dataset, batch_size=args.batch_size, bf16=args.bf16, compile=args.compile,
                              stage2_width=None), tuple(x.shape[1:]))
    res = {"dataset": args.dataset, "data": note, "n_train": len(x), "batch_size": cfg.batch_size, "bf16": cfg.bf16,
           "compile": cfg.compile, "network": cfg.network, "rounds": args.rounds, "epochs": args.epochs,
           "machine": machine(device)}
    with tempfile.TemporaryDirectory(prefix="vaebench-speed-") as tmp:
        work = Path(tmp)
        model, stage2 = fresh_model(cfg, x.shape[1:], device), None
        if "train" in args.parts:
            res["train"], model = part_train(args, cfg, x, device, work)
        if "stage2" in args.parts:
            res["stage2"], stage2 = part_stage2(args, cfg, model, x, device, work)
        if "eval" in args.parts:
            res["eval"] = part_eval(args, cfg, model, stage2, held_out, device)
        res["projection"] = projection(res)
        if "suite" in args.parts:
            try:
                noise = images_of(args.dataset, "", True, args.n_train)[:2] if args.synthetic else None
                res["suite"] = part_suite(args, device, work, noise)
            except TimedCommandFailed as e:
                print(f"error: {e}", file=sys.stderr)
                return e.status
    (out := Path(args.out)).mkdir(parents=True, exist_ok=True)
    stem = f"{device.type}-{args.dataset}" + ("-bf16" if args.bf16 else "") + ("-compile" if args.compile else "")
    (out / f"{stem}.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    (out / f"{stem}.md").write_text(markdown(res))
    print(markdown(res), flush=True)
    return res


if __name__ == "__main__":
    sys.exit(0 if isinstance(status := main(), dict) else status)
