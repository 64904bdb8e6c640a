"""The reconstruction/KL balance in every convention: "what KL weight is this really?"

vaebench's units are pixels in [0, 1] and a loss of ``1/2 SSE + beta KL`` (sums over the D
pixels of an image, as in every variant here). Up to constants that do not move the optimum:

- a Gaussian decoder of std gamma with KL weight k, SSE / (2 gamma^2) + k KL, times gamma^2
  is 1/2 SSE + k gamma^2 KL: an effective beta of k gamma^2 (Dai & Wipf 2019, sec. 3; it
  moves along training where gamma does: learned_gamma, balanced, sigma);
- "mean MSE + w KL" (PyTorch-VAE's ``kld_weight``), SSE / D + w KL, times D/2: beta = w D / 2;
- "SSE + w KL": beta = w / 2;
- a fixed decoder std s with KL weight 1 is beta = s^2, so the equivalent fixed std is sqrt(beta);
- data in [-1, 1] have 4 times the SSE of the same images in [0, 1] (and twice the std), so
  each formula's beta is divided by 4.

PyTorch-VAE's kld_weight = 0.00025 on 3x64x64 images in [0, 1] is beta = 0.00025 * 12288 / 2
= 1.536, a fixed std of 1.24 (the pixel range is 1): a strongly KL-weighted model.

    python -m vaes.balance --kld-weight 0.00025 --dims 3x64x64
    python -m vaes.balance --gamma 0.1 --kl-weight 1 --dims 3x64x64 --range minus1to1
    python -m vaes.balance --run runs/demo          # a run's effective beta over training
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path

from vaes import cli
from vaes.records import CorruptRecord, Record
from vaes.schema import record_refusal
from vaes.registry import get_variant
from vaes.store import RECORD, RunFolder

# the factor on the SSE of the same images relative to [0, 1]: x' = 2x - 1 doubles every error
RANGES = {"0to1": 1.0, "minus1to1": 4.0}


# ---- conversions (pure) -------------------------------------------------------------------------

def beta_from_gamma(gamma: float, kl_weight: float = 1.0, data_range: str = "0to1") -> float:
    """Effective beta of a Gaussian decoder of std ``gamma`` (in the data's units) and KL weight k:
    k gamma^2, divided by 4 when gamma is measured on [-1, 1] data."""
    return kl_weight * gamma ** 2 / _scale(data_range)


def beta_from_mean_mse(weight: float, dims: int, data_range: str = "0to1") -> float:
    """Effective beta of ``mean MSE + weight KL`` over ``dims`` values per image: weight D / 2."""
    return weight * dims / (2 * _scale(data_range))


def beta_from_sse(weight: float, data_range: str = "0to1") -> float:
    """Effective beta of ``SSE + weight KL`` (sum over pixels, no 1/2): weight / 2."""
    return weight / (2 * _scale(data_range))


def fixed_std(beta: float) -> float:
    """The decoder std (pixels in [0, 1]) that, with KL weight 1, gives ``beta``: sqrt(beta)."""
    return math.sqrt(beta)


def conventions(beta: float, dims: int | None = None) -> dict[str, float]:
    """``beta`` written in every convention: the weight each loss form needs for the same balance."""
    out = {"beta (1/2 SSE + beta KL, [0,1])": beta,
           "fixed std, KL weight 1, [0,1]": fixed_std(beta),
           "fixed std, KL weight 1, [-1,1]": 2 * fixed_std(beta),
           "w in SSE + w KL, [0,1]": 2 * beta,
           "w in SSE + w KL, [-1,1]": 8 * beta}
    if dims:
        out["w in mean MSE + w KL, [0,1]"] = 2 * beta / dims
        out["w in mean MSE + w KL, [-1,1]"] = 8 * beta / dims
    return out


def _scale(data_range: str) -> float:
    if data_range not in RANGES:
        raise ValueError(f"data_range must be one of {', '.join(RANGES)}, got {data_range!r}")
    return RANGES[data_range]


def parse_dims(text: str) -> int:
    """D from 'CxHxW' (or any 'AxB...' or one integer): the product, each factor >= 1."""
    try:
        parts = [int(p) for p in str(text).lower().split("x")]
    except ValueError:
        parts = []
    if not parts or any(p < 1 for p in parts):
        raise ValueError(f"--dims {text!r}: expected positive integers joined by x, e.g. 3x64x64 or 784")
    return math.prod(parts)


# ---- a run's curve ----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class BalanceCurve:
    """A stage's effective beta per epoch. ``beta`` is None where there is no Gaussian decoder
    variance to convert; ``note`` says what the numbers mean (or why there are none)."""
    stage: int                       # 1, or 2 for the second stage of a two-stage VAE
    variant: str
    epochs: list[int]
    beta: list[float] | None         # effective beta at the end of each epoch
    kl_weight: float | None          # k, where it is constant
    note: str

    def summary(self) -> dict:
        """first, last, min, max of the curve (None without one) and the note."""
        b = self.beta or []
        return {"stage": self.stage, "variant": self.variant, "epochs": len(self.epochs), "kl_weight": self.kl_weight,
                "first": b[0] if b else None, "last": b[-1] if b else None,
                "min": min(b) if b else None, "max": max(b) if b else None, "note": self.note}


def effective_beta(record: Record | dict) -> list[BalanceCurve]:
    """The effective beta over training of each stage of a run, from its record's history
    (gamma per epoch) and its variant's options. One curve, or two for a two-stage run."""
    rec = record if isinstance(record, Record) else Record.from_json(record)
    cfg, data = rec.config, rec.data or {}
    shape = tuple(data.get("shape") or ())
    steps = max(1, int(data.get("n_train") or 0) // int(cfg.get("batch_size") or 1))
    curves = [_curve(1, cfg["variant"], cfg.get("options") or {}, rec.history or [], shape,
                     int(cfg.get("latent_dim") or 0), steps)]
    if rec.stage2 and rec.stage2.get("history"):
        # the second stage models the d latents as a vector (its "pixels" are latent units),
        # with its variant's default options (TrainConfig has no stage2 options)
        latent = int(cfg.get("latent_dim") or 0)
        curves.append(_curve(2, cfg.get("stage2_variant", "balanced"), {}, rec.stage2["history"], (latent,),
                             int(cfg.get("stage2_latent_dim") or latent), steps))
    return curves


def _curve(stage, variant, options, history, shape, latent_dim, steps_per_epoch) -> BalanceCurve:
    epochs = [int(h.get("epoch", i + 1)) for i, h in enumerate(history)]
    gammas = [h.get("gamma") for h in history]
    try:
        cls = get_variant(variant)
        opts = cls.Options(**options)
    except (KeyError, TypeError, ValueError) as e:
        return BalanceCurve(stage, variant, epochs, None, None, f"options not readable here ({e})")
    unit = "latent units" if stage == 2 else "pixels in [0, 1]"
    if getattr(opts, "likelihood", "gaussian") == "bernoulli":
        return BalanceCurve(stage, variant, epochs, None, None,
                            "Bernoulli likelihood (cross-entropy): no decoder variance, so no beta against "
                            "1/2 SSE; the KL weight against the cross-entropy is " + str(getattr(opts, "beta", 1.0)))
    if any(g is None for g in gammas):
        return BalanceCurve(stage, variant, epochs, None, None, "no decoder gamma in the history")
    if not hasattr(cls, "kl_weights"):  # each variant says how its KL weight reads (vaes.registry.KLWeights)
        return BalanceCurve(stage, variant, epochs, None, None,
                            f"variant {variant!r} declares no kl_weights classmethod (see vaes.registry.KLWeights)")
    k, weights, note = cls.kl_weights(opts, shape=shape, latent_dim=latent_dim, epochs=epochs,
                                      steps_per_epoch=steps_per_epoch)
    beta = [w * float(g) ** 2 for w, g in zip(weights, gammas)]
    return BalanceCurve(stage, variant, epochs, beta, k, f"{note} ({unit})")


# ---- the figure ----------------------------------------------------------------------------------

def plot_effective_beta(records: list[Record | dict], out: str | Path, labels: list[str] | None = None) -> Path:
    """Draw every record's effective-beta curves (log scale; stage 2 dashed) into the PNG ``out``.

    ``labels`` (one per record; default the record's label, else its variant) name the rows:
    records of one label (its seeds) share a colour and one legend entry, so a suite of many
    seeds keeps a legend of a few lines beside the axes."""
    # matplotlib costs half a second at import; the conversions and the CLI do not need it
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend
    from matplotlib.lines import Line2D
    if labels is not None and len(labels) != len(records):
        raise ValueError(f"labels has {len(labels)} entries for {len(records)} records; give one per record")
    fig = Figure(figsize=(7.2, 4.0), layout="constrained")
    ax = fig.add_subplot()
    colors: dict[str, str] = {}  # label -> colour, in the order first drawn
    stages = set()
    for i, rec in enumerate(records):
        rec = rec if isinstance(rec, Record) else Record.from_json(rec)
        label = labels[i] if labels else str(rec.meta.get("label") or rec.config["variant"])
        for c in effective_beta(rec):
            if c.beta and all(b > 0 for b in c.beta):
                color = colors.setdefault(label, f"C{len(colors) % 10}")
                ax.plot(c.epochs, c.beta, "--" if c.stage == 2 else "-", color=color, lw=1.2, alpha=0.8)
                stages.add(c.stage)
    ax.set_yscale("log")
    ax.set(xlabel="epoch", ylabel="effective beta = k gamma^2 (vs 1/2 SSE)")
    if colors:
        handles = [Line2D([], [], color=c, label=name) for name, c in colors.items()]
        if 2 in stages:
            handles += [Line2D([], [], color="0.3", ls=ls, label=f"stage {s}") for s, ls in ((1, "-"), (2, "--"))]
        fig.legend(handles=handles, loc="outside right upper", fontsize="small", frameon=False)
    else:
        ax.text(0.5, 0.5, "no run with a Gaussian decoder variance", ha="center", transform=ax.transAxes)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out


# ---- the command line ---------------------------------------------------------------------------------

def _positive(name, zero=False):
    """A parser of finite numbers > 0 (>= 0 with ``zero``: a weight of 0 is a plain autoencoder)."""
    def parse(text):
        try:
            v = float(text)
        except ValueError:
            v = float("nan")
        if not (math.isfinite(v) and (v >= 0 if zero else v > 0)):
            raise argparse.ArgumentTypeError(f"{name} {text!r}: expected a finite number {'>=' if zero else '>'} 0")
        return v
    return parse


def _dims(text):
    try:
        return parse_dims(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def parser() -> argparse.ArgumentParser:
    p = cli.parser("python -m vaes.balance", __doc__)  # --help ends with the exit statuses
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--beta", type=_positive("--beta", zero=True), help="1/2 SSE + beta KL (vaebench's units)")
    src.add_argument("--gamma", type=_positive("--gamma"), help="Gaussian decoder std, in the data's units")
    src.add_argument("--kld-weight", type=_positive("--kld-weight", zero=True),
                     help="w in mean MSE + w KL (PyTorch-VAE's kld_weight); needs --dims")
    src.add_argument("--sse-weight", type=_positive("--sse-weight", zero=True), help="w in SSE + w KL")
    src.add_argument("--run", metavar="RUN_DIR", help="a run folder: its effective beta over training")
    p.add_argument("--kl-weight", type=_positive("--kl-weight", zero=True), default=1.0,
                   help="k, the KL weight beside --gamma (default 1)")
    p.add_argument("--dims", type=_dims, help="values per image, CxHxW (e.g. 3x64x64) or one number")
    p.add_argument("--range", choices=list(RANGES), default="0to1", dest="data_range",
                   help="the data's range for --gamma, --kld-weight and --sse-weight (default 0to1)")
    return p


@cli.entry_point
def main(argv: list[str] | None = None) -> int:
    """Command line: one balance in every convention, or a run's effective beta over training."""
    args = parser().parse_args(argv)  # argparse itself exits 2 naming the argument
    if args.kl_weight != 1.0 and args.gamma is None:
        return cli.refuse(f"--kl-weight {args.kl_weight:g} only applies with --gamma; drop it or give --gamma")
    if args.run is not None:
        return _show_run(Path(args.run))
    if args.kld_weight is not None and args.dims is None:
        return cli.refuse(f"--kld-weight {args.kld_weight:g} needs --dims (values per image, e.g. 3x64x64): "
                          "mean MSE averages over them")
    given = next((f"--{n.replace('_', '-')} {v:g}" for n, v in vars(args).items()
                  if n in ("beta", "gamma", "kld_weight", "sse_weight") and v is not None))
    try:
        if args.kld_weight is not None:
            beta = beta_from_mean_mse(args.kld_weight, args.dims, args.data_range)
        elif args.gamma is not None:
            beta = beta_from_gamma(args.gamma, args.kl_weight, args.data_range)
        elif args.sse_weight is not None:
            beta = beta_from_sse(args.sse_weight, args.data_range)
        else:
            beta = args.beta
        table = conventions(beta, args.dims)
    except OverflowError:  # gamma ** 2 beyond a float
        table = {"": math.inf}
    if not all(math.isfinite(v) for v in table.values()):
        return cli.refuse(f"{given}: a weight in some convention is beyond a float's range (about 1.8e308); "
                          "no training uses such a balance: give a smaller value")
    for name, value in table.items():
        print(f"{name:34s} {value:.6g}")
    return 0


def _show_run(run_dir: Path) -> int:
    try:
        record = RunFolder(run_dir).read() if run_dir.is_dir() else None
    except (CorruptRecord, OSError) as e:
        return cli.refuse(f"--run {str(run_dir)!r}: {RECORD} cannot be read ({e})")
    if record is not None and (why := record_refusal(record, run_dir / RECORD, ("variant",))):
        return cli.refuse(f"--run {str(run_dir)!r}: {why}; restore it from a copy, or train the run again")
    if record is None:
        return cli.refuse(f"--run {str(run_dir)!r}: not a run folder (no {RECORD}); pass the out= of "
                       "python -m vaes.train, OUT/runs/FOLDER of a suite, or an exported model folder")
    for c in effective_beta(record):
        s = c.summary()
        print(f"stage {c.stage} ({c.variant}, {s['epochs']} epochs): {c.note}")
        if c.beta:
            print(f"  effective beta: first {s['first']:.4g}, last {s['last']:.4g}, "
                  f"min {s['min']:.4g}, max {s['max']:.4g}; fixed std at the end {fixed_std(s['last']):.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
