"""The report's figures (seaborn): training curves, metric strips, the quality / reconstruction
trade-off, and a sample grid per label.

seaborn and matplotlib are imported inside the functions that draw: together about 0.8 s
(measured here), which every command that imports the report (the suite runner, the sweeps)
would otherwise pay at start-up."""
from __future__ import annotations

import contextlib
import math
import textwrap
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from vaes.evaluation.metrics import CONVERGED_RATIO
from vaes.store import RunFolder
from benchmarks.reporting.columns import lead_with_kid, metrics_in_order
from benchmarks.reporting.table import label_order

# ----------------------------------------------------------------------------- figures

def label_palette(labels) -> dict[str, Any]:
    """One colour per label, the same in every figure; its order is the order of the legends
    and panels (pass :func:`label_order` for the suite's order)."""
    import seaborn as sns  # heavy: see the top
    labels = list(dict.fromkeys(map(str, labels)))
    colors = sns.color_palette("tab10" if len(labels) <= 10 else "husl", len(labels))
    return dict(zip(labels, colors))


def _figure(w: float, h: float):
    """A figure not tied to pyplot's global state (safe in a headless suite run)."""
    from matplotlib.figure import Figure  # heavy: see the top
    return Figure(figsize=(w, h), dpi=120, layout="constrained")


def _message_figure(path: Path, text: str) -> None:
    fig = _figure(6, 2)
    ax = fig.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, "\n".join(textwrap.wrap(text, 70)), ha="center", va="center", fontsize=11)
    fig.savefig(path, bbox_inches="tight")


def _legend(fig, palette: dict, extra=None, where: str = "below") -> None:
    """One legend for the whole figure from the label colours, below it or on its right."""
    from matplotlib.lines import Line2D  # heavy: see the top
    handles = [Line2D([], [], color=c, marker="o", lw=2, label=l) for l, c in palette.items()]
    if extra:
        handles += extra
    if where == "right":
        fig.legend(handles=handles, loc="outside right upper", frameon=False)
    else:
        # about 2 inches per entry keeps long labels apart; balanced rows read better
        most = max(1, int(fig.get_size_inches()[0] // 2.2))
        ncol = math.ceil(len(handles) / math.ceil(len(handles) / most))
        fig.legend(handles=handles, loc="outside lower center", frameon=False, ncol=ncol)


def plot_curves(hist: pd.DataFrame, path: str | Path, palette: dict | None = None) -> None:
    """curves.png: loss, recon, kl, gamma and gamma / sqrt(MSE) over epochs (finished runs),
    one line per label (mean over seeds, band = std), one row per stage; the last panel marks
    the optimum (1) and the not-converged threshold (dotted)."""
    import seaborn as sns  # heavy: see the top
    from matplotlib.ticker import MaxNLocator  # heavy: see the top
    path = Path(path)
    hist = hist[hist["status"] == "finished"]
    if hist.empty:
        return _message_figure(path, "No finished run has a training history to plot.")
    palette = palette or label_palette(sorted(set(hist["label"])))
    stages = sorted(hist["stage"].unique())
    terms = [("loss", "loss"), ("recon", "reconstruction term"), ("kl", "KL (nats)"),
             ("gamma", "γ (decoder std)"), ("gamma_ratio", "γ / √MSE (1 = optimal γ)")]
    # how fast each variant's gamma reaches its optimum gamma^2 = MSE, the seed paper's point
    hist = hist.assign(gamma_ratio=hist["gamma"] / np.sqrt(hist["mse"]))
    fig = _figure(4 * len(terms), 3 * len(stages) + 0.8)
    axes = np.atleast_2d(fig.subplots(len(stages), len(terms), squeeze=False))
    for i, stage in enumerate(stages):
        h = hist[hist["stage"] == stage]
        for j, (term, title) in enumerate(terms):
            ax = axes[i, j]
            data = h[np.isfinite(h[term])]
            ax.set_title(f"{'2nd stage: ' if stage == 2 else ''}{title}", fontsize=10)
            if data.empty:
                ax.text(0.5, 0.5, "not tracked", ha="center", va="center", transform=ax.transAxes)
                continue
            sns.lineplot(data=data, x="epoch", y=term, hue="label", palette=palette, errorbar="sd",
                         marker="o" if data["epoch"].nunique() <= 12 else None, ax=ax, legend=False)
            # gamma can span orders of magnitude between variants; the loss terms can be negative
            if term in ("gamma", "gamma_ratio") and (data[term] > 0).all() and data[term].max() > 10 * data[term].min():
                ax.set_yscale("log")
            if term == "gamma_ratio":
                ax.axhline(1.0, color="0.3", lw=0.8)
                ax.axhline(CONVERGED_RATIO, color="0.3", lw=0.8, ls=":")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel("")
            ax.grid(alpha=0.3)
    _legend(fig, {l: c for l, c in palette.items() if l in set(hist["label"])})
    fig.savefig(path, bbox_inches="tight")


ARROWS = {"lower": "↓", "higher": "↑"}
IMAGE_SETS = (("samples", "samples"), ("stage2", "2-stage samples"), ("recon", "reconstructions"))


def _metric_specs(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(column, title) of the metrics the finished runs hold, in the order of METRICS
    (vaes.evaluation.catalog, through benchmarks.reporting.columns.metrics_in_order; sample quality first, the lead Inception distance first of all):
    a per-set metric once per image set of IMAGE_SETS."""
    fin = df[df["status"] == "finished"]
    specs = []
    for m in metrics_in_order(df):
        if not m.title:
            continue
        if m.per_set:
            specs += [(m.column(s), f"{m.title}: {what} {ARROWS[m.better]}") for s, what in IMAGE_SETS]
        else:
            specs.append((m.key, m.title))
    return [(c, t) for c, t in specs
            if c in fin and np.isfinite(pd.to_numeric(fin[c], errors="coerce")).any()]


def plot_metrics(df: pd.DataFrame, path: str | Path, palette: dict | None = None) -> None:
    """metrics.png: one panel per metric, a point per label (mean, bar = std over seeds) and
    the individual seeds as small dots."""
    import seaborn as sns  # heavy: see the top
    from matplotlib.ticker import MaxNLocator  # heavy: see the top
    path = Path(path)
    fin = df[df["status"] == "finished"]
    specs = _metric_specs(df)
    if not specs:
        return _message_figure(path, "No finished run has metrics to plot.")
    palette = palette or label_palette(label_order(df))
    labels = [l for l in palette if l in set(fin["label"])]
    ncols = min(3, len(specs))
    nrows = math.ceil(len(specs) / ncols)
    fig = _figure(4.2 * ncols, 0.9 + nrows * (0.9 + 0.32 * len(labels)))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    for ax, (col, title) in zip(axes.flat, specs):
        data = fin[["label", col]].assign(**{col: pd.to_numeric(fin[col], errors="coerce")}).dropna()
        with _fixed_jitter():
            sns.stripplot(data=data, x=col, y="label", hue="label", order=labels, palette=palette,
                          size=4, alpha=0.45, jitter=0.12, ax=ax, legend=False)
        sns.pointplot(data=data, x=col, y="label", hue="label", order=labels, palette=palette,
                      errorbar="sd", linestyle="none", markers="D", capsize=0.25, ax=ax, legend=False)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))  # readable ticks on narrow panels
        ax.grid(axis="x", alpha=0.3)
    for ax in list(axes.flat)[len(specs):]:
        ax.axis("off")
    fig.savefig(path, bbox_inches="tight")


@contextlib.contextmanager
def _fixed_jitter(seed: int = 0) -> Iterator[None]:
    """seaborn's strip jitter draws from numpy's global generator: seeded here and restored after,
    so the same records give the same metrics.png, whatever ran before in the process."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _sample_kind(fin: pd.DataFrame) -> str:
    """The sample-quality metric of the trade-off plot: KID where it leads the table, else FID,
    else the classifier's CFD, whichever some finished run has."""
    if lead_with_kid(fin):
        return "kid"
    for kind in ("fid", "kid", "cfd"):
        cols = [f"{kind}_{k}" for k in ("samples", "stage2") if f"{kind}_{k}" in fin]
        if cols and np.isfinite(fin[cols].apply(pd.to_numeric, errors="coerce")).to_numpy().any():
            return kind
    return "fid"


def plot_tradeoff(df: pd.DataFrame, path: str | Path, palette: dict | None = None) -> None:
    """tradeoff.png: reconstruction MSE against sample quality, one point per run (a cross
    for the second stage of a two-stage run), coloured by label."""
    import seaborn as sns  # heavy: see the top
    from matplotlib.lines import Line2D  # heavy: see the top
    from matplotlib.ticker import MaxNLocator  # heavy: see the top
    path = Path(path)
    fin = df[df["status"] == "finished"]
    kind = _sample_kind(fin)
    points = []
    for stage, key in (("first stage", f"{kind}_samples"), ("second stage", f"{kind}_stage2")):
        if key in fin and "recon_mse" in fin:
            points.append(pd.DataFrame({"label": fin["label"], "recon_mse": fin["recon_mse"],
                                        "quality": pd.to_numeric(fin[key], errors="coerce"),
                                        "samples from": stage}))
    pts = pd.concat(points).dropna() if points else pd.DataFrame()
    if pts.empty:
        return _message_figure(path, "No finished run has both a reconstruction MSE and a sample-quality "
                                     "metric (KID, FID or CFD), so there is no trade-off to plot.")
    palette = palette or label_palette(label_order(df))
    fig = _figure(6.4, 5.2)
    ax = fig.add_subplot()
    sns.scatterplot(data=pts, x="recon_mse", y="quality", hue="label", style="samples from",
                    markers={"first stage": "o", "second stage": "X"}, palette=palette, s=70,
                    alpha=0.85, ax=ax, legend=False)
    if pts["recon_mse"].max() > 10 * pts["recon_mse"].min() > 0:
        ax.set_xscale("log")  # variants differ by orders of magnitude in MSE
    name = {"kid": "KID", "fid": "FID"}.get(kind, "CFD (classifier Fréchet distance, not FID)")
    if ax.get_xscale() == "linear":
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))  # long decimals overlap otherwise
    ax.set_xlabel("reconstruction MSE (held out) ↓")
    ax.set_ylabel(f"sample {name} ↓")
    ax.set_title("reconstruction vs generation (lower left is better)", fontsize=10)
    ax.grid(alpha=0.3)
    extra = [Line2D([], [], color="grey", marker=m, ls="none", label=f"samples: {s}")
             for s, m in (("first stage", "o"), ("second stage", "X")) if s in set(pts["samples from"])]
    _legend(fig, {l: c for l, c in palette.items() if l in set(pts["label"])}, extra, where="right")
    fig.savefig(path, bbox_inches="tight")


def plot_samples(df: pd.DataFrame, path: str | Path, order: list[str] | None = None,
                 max_cols: int = 6) -> None:
    """samples.png: the sample grid (samples.png) of one finished seed per label side by side,
    titled by label, each two-stage label's second-stage grid (samples_stage2.png) right after
    it as '<label> (2-stage)'; more than ``max_cols`` panels wrap onto further rows."""
    import matplotlib.image as mpimg  # heavy: see the top
    path = Path(path)
    fin = df[df["status"] == "finished"].sort_values(["label", "seed"])
    panels = []  # (title, grid file)
    for label in order or label_order(fin):
        for _, r in fin[fin["label"] == label].iterrows():
            folder = RunFolder(r["run_dir"])
            grid, grid2 = folder.grid("samples"), folder.grid("samples_stage2")
            if grid.is_file():  # the lowest seed that left a grid
                panels.append((str(label), r["seed"], grid))
                if grid2.is_file():
                    panels.append((f"{label} (2-stage)", r["seed"], grid2))
                break
    if not panels:
        return _message_figure(path, "No finished run left a samples.png grid.")
    ncols = min(max_cols, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = _figure(2.5 * ncols, 2.9 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, seed, grid) in zip(axes.flat, panels):
        ax.imshow(mpimg.imread(grid), interpolation="nearest")  # tiny images: keep the pixels
        ax.set_title("\n".join(textwrap.wrap(title, 24)) + f"\nseed {seed}", fontsize=9)
    fig.savefig(path, bbox_inches="tight")
