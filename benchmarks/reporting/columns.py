"""Which columns a report table shows and which record metrics feed them.

Record metrics are named per image set: ``fid_SET``, ``kid_SET`` (value, std, subset_size,
n_images), ``prc_SET`` (precision, recall, n_images) and the classifier versions ``cfd_SET``,
``ckid_SET``, ``cprc_SET``, with SET one of samples, stage2 (z = decoder2(u), Asperti &
Trentin), stage2_ancestral (z = decoder2(u) + gamma_z eps, Dai & Wipf), recon (decode the
posterior mean), recon_sample (decode one z ~ q(z|x)) and the original code's renormalised
samples_renorm, stage2_renorm, recon_renorm. How each was measured is its evaluation's, one
set of frame columns per run (inception_engine, inception_reference_n, classifier_kid_subsets).

The metrics and their display order are vaes.evaluation.catalog.METRICS, which the record also
reads: the table's columns (:func:`quality_columns`) and the panels of metrics.png
(benchmarks/reporting/figures.py) both come from it, so adding a metric to the report is one
declaration there.

Width: a table keeps one column per question a reader asks of it (how good are samples, how
good are reconstructions, how tight is the likelihood bound); everything else a record holds
is in runs.csv, and the caption says so.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from vaes.evaluation import catalog
from vaes.evaluation.catalog import Metric, declaration

BIASED_BELOW = 2048  # fewer real images than Inception's 2048 feature dimensions: a biased FID
SIG = 3            # significant digits of a table entry


def _decimals(x: float) -> int:
    """Decimals for SIG significant digits, at least one (FIDs are quoted to 0.1)."""
    if x == 0 or not math.isfinite(x):
        return 1
    return min(max(SIG - 1 - math.floor(math.log10(abs(x))), 1), 8)


def _number(x: float, integer: bool, style: str) -> str:
    """One number: fixed point with SIG significant digits, scientific below 1e-3."""
    if not math.isfinite(x):
        return {"plain": str(x), "tex": r"$\infty$" if x > 0 else str(x)}.get(style, str(x))
    if integer and float(x).is_integer():
        return str(int(x))
    if x != 0 and abs(x) < 1e-3:
        mant, exp = f"{x:.{SIG - 1}e}".split("e")
        return rf"${mant}\times10^{{{int(exp)}}}$" if style == "tex" else f"{mant}e{int(exp)}"
    return f"{x:.{1 if integer else _decimals(x)}f}"

# The image sets the quality columns show: the report's option (suite key ``quality_sets``,
# CLI --sets). 'renorm' shows the sets Asperti & Trentin's computed_gamma.py evaluates.
QUALITY_SETS = {
    "vaebench": {"samples": "samples", "recon": "recon"},
    "renorm": {"samples": "samples_renorm", "recon": "recon_renorm"},
}


def check_sets(sets: str) -> str:
    """``sets`` when it is a known option, else a ValueError naming it and the choices."""
    if sets not in QUALITY_SETS:
        raise ValueError(f"quality_sets (--sets) must be one of {', '.join(QUALITY_SETS)}, got {sets!r}: "
                         "'vaebench' shows vaebench's own image sets, 'renorm' the original code's "
                         "renormalised ones (*_renorm)")
    return sets


def stage2_set(stage2_variant: str | None, sets: str) -> str:
    """The image set a '(2-stage)' row shows: the sampler of the published model its second
    stage belongs to. Dai & Wipf 2019 (learned-gamma second stage) sample z = decoder2(u) +
    gamma_z eps; Asperti & Trentin 2020 (balanced second stage) z = decoder2(u). A second stage
    no paper publishes gets decoder2(u) too: vaebench's default second stage is the balanced
    one, and gamma_z eps only belongs to a decoder variance that was learned for it. The
    renormalisation exists only for the mean sampler (computed_gamma.py), so 'renorm' shows
    stage2_renorm for every second stage."""
    if sets == "renorm":
        return "stage2_renorm"
    return "stage2_ancestral" if stage2_variant == "learned_gamma" else "stage2"


@dataclasses.dataclass(frozen=True)
class Column:
    """A table column: which frame column feeds it and which direction is better.

    ``better`` is 'lower', 'higher' or None; None columns are never bolded (KL and active
    units have no better direction on their own, parameter counts are not a score).
    ``source`` names the frame column, with '{set}' standing for the row's image set when
    ``role`` is 'samples' or 'recon'; ``spread`` likewise names a one-run spread (KID's std
    over subsets) that a single seed's cell shows as its ±.
    """

    key: str
    header: str
    unit: str = ""  # second header line (metric, unit); the direction arrow is added to it
    better: str | None = None
    integer: bool = False  # counts (active units): no decimals when the mean is whole
    shift: int = 0         # entries are shown times 10**shift, the header says (x10^-shift)
    source: str = ""       # frame column ('{set}' filled per row); '' means ``key``
    role: str | None = None  # 'samples' / 'recon': filled from that image set; None: first stage only
    spread: str = ""       # frame column of a one-run spread (KID's std), shown for a single seed

    def column(self, image_set: str | None = None) -> str:
        """The frame column of this table column for a row showing ``image_set``."""
        return (self.source or self.key).format(set=image_set)


LEADS = ("kid", "fid")  # the Inception distances, the lead one first (lead_with_kid)


def metrics_in_order(df: pd.DataFrame) -> list[Metric]:
    """METRICS with the lead Inception distance of ``df`` first: KID where it leads, else FID."""
    metrics = list(catalog.METRICS)
    if not lead_with_kid(df):
        i, j = (next(i for i, m in enumerate(metrics) if m.key == key) for key in LEADS)
        metrics[i], metrics[j] = metrics[j], metrics[i]
    return metrics


def _has(fin: pd.DataFrame, cols: list[str]) -> bool:
    cols = [c for c in cols if c in fin]
    return bool(cols) and bool(np.isfinite(fin[cols].apply(pd.to_numeric, errors="coerce")).to_numpy().any())


def lead_with_kid(df: pd.DataFrame) -> bool:
    """KID leads sample quality where some run has it and FID is biased or absent: FID on fewer
    real images than Inception's 2,048 dimensions (the CPU suites) is dominated by its bias,
    KID is unbiased (Binkowski et al. 2018)."""
    fin = df[df["status"] == "finished"]
    if not any(c.startswith("kid_") and _has(fin, [c]) for c in fin.columns):
        return False
    counts = pd.to_numeric(fin.get("inception_reference_n", pd.Series(dtype=float)), errors="coerce").dropna()
    return counts.empty or bool((counts < BIASED_BELOW).any())


def fid_biased(df: pd.DataFrame) -> bool:
    """Whether some finished run's FID used fewer real images than BIASED_BELOW."""
    fin = df[df["status"] == "finished"]
    counts = pd.to_numeric(fin.get("inception_reference_n", pd.Series(dtype=float)), errors="coerce")
    return bool((counts < BIASED_BELOW).any())


def _column(m: Metric, role: str | None = None, short: str | None = None) -> Column:
    """The table column of ``m``; a per-set one for the image set of ``role`` (samples / recon)."""
    if not m.per_set:
        return Column(m.key, m.short, m.unit, m.better, integer=m.integer)
    field = "" if m.field == "value" else f"_{m.field}"
    return Column(f"{role}_{m.key}{field}", "Samples" if role == "samples" else "Recon.", short or m.short,
                  m.better, source=m.column("{set}"), role=role, spread=f"{m.key}_{{set}}_std" if m.spread else "")


def quality_columns(df: pd.DataFrame, sample_sets: list[str], recon_set: str) -> list[Column]:
    """Params, then the columns of METRICS: the sample-quality columns, the reconstruction
    columns, the reconstruction error and likelihood bounds, KL, AU and cost; each quality column
    only where some finished run of the shown sets has a value (a table of old records gains no
    empty columns), and an FID column of dashes where there is no sample (reconstruction)
    distance at all (the caption says why).

    Samples: the lead distance (KID on the CPU suites, else FID), the other one, precision and
    recall, the classifier's CFD and CKID (†). Reconstructions: the lead distance and CFD.
    """
    fin = df[df["status"] == "finished"]
    metrics = metrics_in_order(df)
    lead = next(m.key for m in metrics if m.key in LEADS)
    fid_short = "biased FID" if fid_biased(df) else "FID"
    samples, recon, rest = [], [], []
    for m in metrics:
        if m.table is None:
            continue
        short = fid_short if m.key == "fid" else m.short
        if m.per_set:
            col = _column(m, "samples", short)
            if _has(fin, [col.column(s) for s in sample_sets]):
                samples.append(col)
            col = _column(m, "recon", short)
            # reconstructions: the lead Inception distance (not the other) and CFD
            if m.recon and (m.key == lead or m.key not in LEADS) and _has(fin, [col.column(recon_set)]):
                recon.append(col)
        elif m.key == "neg_elbo" and _has(fin, ["iw_elbo"]):
            continue  # the matched -ELBO (iw_elbo) heads the column; neg_elbo stays in runs.csv
        elif m.table == "always" or m.table == "recorded" and _has(fin, [m.key]):
            rest.append(_column(m))
    fid = next(m for m in catalog.METRICS if m.key == "fid")
    return [Column("params", "Params"), *(samples or [_column(fid, "samples", "FID")]),
            *(recon or [_column(fid, "recon", "FID")]), *rest]


def _values(df: pd.DataFrame, cols: list[str]) -> str | None:
    """The distinct values of ``cols`` over finished runs as '1000' or '500, 1000'; None if none."""
    fin = df[df["status"] == "finished"]
    vals = pd.concat([fin[c] for c in cols if c in fin] or [pd.Series(dtype=object)]).dropna().unique()
    vals = sorted({int(v) if isinstance(v, float) and v.is_integer() else v for v in vals}, key=str)
    return ", ".join(map(str, vals)) if len(vals) else None


def _kid_setup(df: pd.DataFrame, metric: str, sets: list[str]) -> str:
    """'100 subsets of 25 of the 50 images' for each distinct (subsets, size, count) that ``metric``
    (kid or ckid) recorded for ``sets`` in finished runs (the subsets are its evaluation's); '' if none."""
    fin = df[df["status"] == "finished"]
    found = set()
    subsets = f"{declaration(metric + '_samples').evaluation}_kid_subsets"
    for s in sets:
        cols = [subsets, *(f"{metric}_{s}_{f}" for f in ("subset_size", "n_images"))]
        if all(c in fin for c in cols):
            found |= {tuple(int(v) for v in row) for row in fin[cols].dropna().itertuples(index=False)}
    return "; ".join(f"{k} subsets of {size} of the {n} images" for k, size, n in sorted(found))


_SAMPLERS = {
    "stage2_ancestral": "z = decoder2(u) + gamma_z eps (stage2_ancestral), Dai & Wipf's sampler for their "
                        "learned-gamma second stage",
    "stage2": "z = decoder2(u) (stage2), Asperti & Trentin's sampler for their balanced second stage",
    "stage2_renorm": "z = decoder2(u) rescaled to the latent codes' spread (stage2_renorm), as "
                     "Asperti & Trentin's code renormalises",
}


def _stage2_sentence(stage2_rows: dict[str, tuple[str, str | None]], sets: str) -> str | None:
    """Which sampler each '(2-stage)' row shows, and why."""
    if not stage2_rows:
        return None
    rows_by_why: dict[str, list[str]] = {}  # one clause per sampler, naming its rows (not one per row)
    for name, (image_set, variant) in stage2_rows.items():
        why = _SAMPLERS[image_set]
        if sets == "vaebench" and variant not in ("learned_gamma", "balanced"):
            why = (f"z = decoder2(u) ({image_set}): its second stage ({variant or 'unknown'}) belongs to no "
                   "published two-stage model, so vaebench's default mean sampler")
        elif sets == "vaebench" and image_set != stage2_set(variant, sets):
            why += " (its records predate stage2_ancestral)"
        rows_by_why.setdefault(why, []).append(name)
    parts = [f"{', '.join(names)}: {why}" for why, names in rows_by_why.items()]
    return ("'(2-stage)' rows show the sampler of the published model their second stage belongs to: "
            + "; ".join(parts) + ".")


def metric_sentences(df: pd.DataFrame, columns: list[Column], sets: str,
                     stage2_rows: dict[str, tuple[str, str | None]]) -> list[str]:
    """Caption sentences for the quality columns: which image sets, which samplers, how KID,
    precision/recall and the importance-weighted bound were computed, the JPEG round trip, and
    what is only in runs.csv."""
    shown = QUALITY_SETS[sets]
    used = [*shown.values(), *{s for s, _ in stage2_rows.values()}]
    keys = {c.key for c in columns}
    out = []
    if sets == "vaebench":
        out.append("Quality columns show vaebench's image sets (report option quality_sets = 'vaebench'; "
                   "'renorm' shows the original code's renormalised sets). Recon.: held-out images "
                   "reconstructed by decoding the posterior mean (recon; decoding one z ~ q(z|x), as both "
                   "originals do, is recon_sample in runs.csv).")
    else:
        stats_from = _values(df, ["renorm_stats"])
        out.append("Quality columns show the original code's renormalised image sets (report option "
                   "quality_sets = 'renorm': samples_renorm, stage2_renorm, recon_renorm, rescaled as "
                   "Asperti & Trentin's computed_gamma.py does"
                   + (f", statistics from the {stats_from} images" if stats_from else "")
                   + "). Recon.: recon_renorm, one z ~ q(z|x) decoded (as the original does) and rescaled to the "
                   "data's pixel spread.")
    out += [s for s in [_stage2_sentence(stage2_rows, sets)] if s]
    if lead_with_kid(df):
        out.append("KID leads sample quality: FID on so few images is dominated by its bias; the FID "
                   "beside it is shown for reference only.")
    if keys & {"samples_kid", "recon_kid", "samples_ckid"}:
        # Inception's KID and the classifier's CKID run on different image counts (FID's and the
        # classifier's): each says its own subsets, never one list mixing the two
        setups = [f"{label}: {setup}" for label, metric in (("KID", "kid"), ("CKID†", "ckid"))
                  if (setup := _kid_setup(df, metric, used))]
        out.append("KID (Binkowski et al. 2018, torch-fidelity's kid_features_to_metric): the mean over "
                   f"random subsets of a set's images ({'; '.join(setups) or 'subsets not recorded'}), "
                   "unbiased at small image counts; for one seed ± is its std over the subsets, over seeds "
                   "the seeds' interval.")
    if keys & {"samples_prc_precision", "samples_prc_recall"}:
        k = _values(df, ["inception_prc_k"]) or "3"
        n = _values(df, [f"prc_{s}_n_images" for s in used])
        out.append(f"Prec./Rec.: improved precision and recall (Kynkäänniemi et al. 2019) with k = {k} "
                   f"nearest neighbours on {n or '?'} images per set: low precision is blur or off-manifold "
                   "samples, low recall missing modes; both depend on the image count, so compare them "
                   "within this table only.")
    if keys & {"iw_nll", "iw_bpd", "iw_elbo", "neg_elbo"}:
        out.append(likelihood_sentence(df))
    jpeg = _values(df, ["jpeg_quality"])
    if jpeg is not None:
        out.append("No JPEG round trip (jpeg_quality 0)." if jpeg == "0" else
                   f"Training and held-out images JPEG round-tripped at quality {jpeg} (PIL, 4:2:0), as "
                   "both originals store CIFAR-10.")
    out.append("The table shows one column per question (sample quality, reconstruction quality, "
               "likelihood); runs.csv holds every recorded metric, where recorded: every distance of every image set "
               "(recon_sample, stage2 and stage2_ancestral, the renormalised sets), the reconstructions' "
               "precision/recall, the classifier's precision/recall (cprc), timings.")
    return out


def likelihood_sentence(df: pd.DataFrame) -> str:
    """How the likelihood columns were computed, from the records: K, the images, each variant's
    decoder std and where it came from, the pixel levels of bits per dimension."""
    fin = df[df["status"] == "finished"]
    k, n, levels = (_values(df, [f"likelihood_{f}"]) for f in ("k", "n_images", "bpd_levels"))
    if "iw_elbo" not in fin or not fin["iw_elbo"].notna().any():
        return (f"NLL_K: the importance-weighted bound (Burda et al. 2016), K = {k or '?'}, on the first "
                f"{n or '?'} held-out images; −ELBO: all held-out images, with the variant's training-time "
                "decoder std (sigma: its last training batch's). These records predate the matched bound, so the "
                "two columns are not on one footing; bits per dimension count 256 levels per pixel.")
    src = fin.get("likelihood_gamma_source", pd.Series(dtype=object))
    by_label = {str(lab): ", ".join(sorted({str(v) for v in g.dropna()})) for lab, g in src.groupby(fin["label"])}
    stds = "; ".join(f"{lab}: {v}" for lab, v in by_label.items() if v)
    return (f"Likelihood on one footing: −ELBO (K = 1) and NLL_K (the importance-weighted bound, Burda et al. "
            f"2016, K = {k or '?'}) on the same first {n or '?'} held-out images with one decoder std per run "
            f"({stds or 'not recorded'}), in nats per image; bits per dimension with {levels or '256'} levels a pixel "
            "(+ D ln L, divided by D ln 2).")
