"""The table model of a suite's report: one row per label (mean +- std over its finished seeds),
a '<label> (2-stage)' row per two-stage label, failed labels marked, Dai & Wipf's published FIDs
where they apply; bold by direction and Welch's t-test; the caption and notes. Renderers
(benchmarks/render.py) turn a :class:`Table` into LaTeX and Markdown. Over 400 lines because
the caption and notes (protocols, biased small-sample FID, missing reasons, references) are
part of the model, so that both renderers say the same.

Table rows are labels (a record's ``label``, else its variant). A two-stage label's second row
gives the second stage's sample quality (as Dai & Wipf 2019, Table 1, list the 2-stage VAE as a
model of its own). Sample quality is FID where the records hold one, beside the classifier
Frechet distance, always headed 'CFD' and never called FID (DESIGN.md).
"""
from __future__ import annotations

import dataclasses
import math
import sys
from typing import Any, Callable

import numpy as np
import pandas as pd
from scipy import stats

from benchmarks import ledger
from vaes.data import get_dataset
from vaes.metrics import CONVERGED_RATIO

# Published FIDs live in the ledger (benchmarks/ledger.toml, with their papers and protocols);
# each data set's display name in the data-set registry (vaes/data.py).
REFERENCE_SOURCE = "Published (benchmarks/ledger.toml)"  # the heading of the published rows
SIG = 3            # significant digits of a table entry
BIASED_BELOW = 2048  # fewer real images than Inception's 2048 feature dimensions: a biased FID
SIG_P = 0.05       # bold also every value not significantly worse than the best (Welch's t-test)
REASON_CHARS = 240  # a failure reason longer than this is cut in table.tex (table.md has it whole)

# ----------------------------------------------------------------------------- the table model


@dataclasses.dataclass(frozen=True)
class Column:
    """A table column: which frame column feeds it and which direction is better.

    ``better`` is 'lower', 'higher' or None; None columns are never bolded (KL and active
    units have no better direction on their own, parameter counts are not a score).
    """

    key: str
    header: str
    unit: str = ""  # second header line (metric, unit); the direction arrow is added to it
    better: str | None = None
    integer: bool = False  # counts (active units): no decimals when the mean is whole
    shift: int = 0         # entries are shown times 10**shift, the header says (x10^-shift)


@dataclasses.dataclass
class Cell:
    """Mean, std and number of seeds of one entry; ``mean`` None renders as a dash."""

    mean: float | None = None
    std: float | None = None
    n: int = 0
    bold: bool = False


@dataclasses.dataclass
class Row:
    """One table row. kind: 'run', 'stage2', 'incomplete' (no finished seed), 'reference'.

    ``cells`` maps a column key to a Cell; a key that is absent is 'not applicable' and
    renders empty (unlike a Cell without a mean, which is a missing value: a dash).
    """

    name: str
    kind: str
    cells: dict[str, Cell] = dataclasses.field(default_factory=dict)
    status: str | None = None            # 'failed' / 'interrupted' / 'running' for incomplete rows
    notes: list[str] = dataclasses.field(default_factory=list)  # note markers (a, b, ...)


@dataclasses.dataclass
class Table:
    """Everything both renderers need: columns, rows, caption sentences and notes."""

    name: str
    columns: list[Column]
    rows: list[Row]
    caption: list[str]
    notes: list[tuple[str, str]]  # (marker, text); marker '' for general notes
    n_records: int


def label_order(df: pd.DataFrame, suite: dict | None = None) -> list[str]:
    """Labels in the order of the suite's [[runs]] (as its author lists them), then any others
    found in the records, sorted."""
    present = set(df["label"])
    listed = [r["label"] for r in (suite or {}).get("runs", []) if r.get("label") in present]
    return listed + sorted(present - set(listed))


def _quality_kinds(df: pd.DataFrame, keys: tuple[str, ...]) -> list[str]:
    """The distances with a value in some finished run for one of ``keys``: ['FID', 'CFD'] (FID
    beside the classifier distance), one of them, or ['FID'] (all dashes; the caption says why)."""
    fin = df[df["status"] == "finished"]
    kinds = []
    for kind in ("fid", "cfd"):
        cols = [f"{kind}_{k}" for k in keys if f"{kind}_{k}" in fin]
        if cols and fin[cols].notna().to_numpy().any():
            kinds.append(kind.upper())
    return kinds or ["FID"]


def _quality_kind(df: pd.DataFrame, keys: tuple[str, ...]) -> str:
    """The headline distance: 'FID' where any run has one, else 'CFD' (see _quality_kinds)."""
    return _quality_kinds(df, keys)[0]


def _columns(sample_kinds: list[str], recon_kinds: list[str]) -> list[Column]:
    dag = lambda kind: "CFD†" if kind == "CFD" else "FID"  # noqa: E731  (CFD is footnoted)
    return [
        Column("params", "Params"),
        *(Column(f"samples_{k.lower()}", "Samples", dag(k), "lower") for k in sample_kinds),
        *(Column(f"recon_{k.lower()}", "Recon.", dag(k), "lower") for k in recon_kinds),
        Column("recon_mse", "MSE", "", "lower"),
        Column("psnr", "PSNR", "dB", "higher"),
        Column("kl", "KL", "nats"),
        Column("active_units", "AU", integer=True),
        Column("train_tflop", "Cost", "TFLOP"),  # training FLOPs (FlopCounterMode), both stages on 2-stage rows
    ]


def _stat(values: pd.Series) -> Cell:
    """Mean and sample std of the finite values; no std for a single seed."""
    v = pd.to_numeric(values, errors="coerce").astype(float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return Cell()
    return Cell(float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else None, len(v))


def _fixed(cell: Cell) -> Cell:
    """A cell whose spread is not information (parameter counts, FLOPs: the same for every seed)."""
    cell.std = None
    return cell


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    """A frame column, or all-NaN when no record has that metric."""
    return df[name] if name in df else pd.Series(np.nan, index=df.index)


def _seeds_text(seeds) -> str:
    seeds = sorted(int(s) for s in seeds if pd.notna(s))
    return ", ".join(map(str, seeds)) if seeds else "none"


def _reasons_note(label: str, runs: pd.DataFrame, n_total: int) -> str:
    """'label: 2 of 3 runs failed (seeds 0, 2: reason)' with identical reasons grouped."""
    parts = []
    # one line per reason: a traceback's newlines would break the Markdown list and the LaTeX notes
    reasons = runs["reason"].fillna("no reason recorded").map(lambda r: " ".join(str(r).split()))
    for (status, reason), g in runs.groupby([runs["status"], reasons], sort=True):
        parts.append(f"{status}, seed{'s' if len(g) > 1 else ''} {_seeds_text(g['seed'])}: {reason}")
    return f"{label}: {len(runs)} of {n_total} runs not finished ({'; '.join(parts)})"


def _setup_sentence(df: pd.DataFrame) -> tuple[str, list[str]]:
    """How FID was computed (engine and version, images, resize, weights) for the caption, and
    the reasons it is missing for some runs (for a footnote and the log, not the caption)."""
    fin = df[df["status"] == "finished"]
    setups, missing, biased = set(), set(), False
    for k in ("samples", "stage2", "recon"):
        m = f"fid_{k}"
        if m not in fin:
            continue
        for _, r in fin.iterrows():
            if pd.notna(r[m]):
                real = f" vs {_int_text(r.get(f'{m}_reference_n'))} real"
                split = r.get(f"{m}_reference_split")
                real += f" ({split} split)" if isinstance(split, str) else ""
                weights = r.get(f"{m}_weights_source")
                setups.add(f"{r.get(f'{m}_engine')} {r.get(f'{m}_engine_version')}, "
                           f"{_int_text(r.get(f'{m}_n_images'))} generated{real} images, "
                           f"resized {r.get(f'{m}_resize')}".replace(" vs nan real", "")
                           + (f", Inception weights {weights}" if isinstance(weights, str) else ""))
                biased |= bool(pd.to_numeric(r.get(f"{m}_reference_n"), errors="coerce") < BIASED_BELOW)
            elif isinstance(r.get(f"{m}_missing"), str):
                missing.add(r[f"{m}_missing"])
    missing = sorted(missing)
    if setups:
        # more than one setup in a table is worth seeing: the numbers are then not comparable
        return ("FID: " + "; ".join(sorted(setups)) + "."
                + (f" FID on fewer than {BIASED_BELOW:,} real images is biased (upward, by the rank-deficient "
                   "2048-d covariance): compare it within this table only, never with published FIDs."
                   if biased else "")
                + (" FID is missing for some runs (‡)." if missing else "")), missing
    if missing:
        return "FID unavailable (‡).", missing
    return "FID not computed (the records hold none).", missing


def _int_text(v) -> str:
    try:
        return str(int(float(v)))
    except (TypeError, ValueError):
        return "nan"


def _one(df: pd.DataFrame, col: str) -> Any:
    """The single value of ``col`` over finished runs, a 'a-b' range, or None."""
    fin = df[df["status"] == "finished"]
    vals = sorted({v for v in (fin if len(fin) else df)[col].dropna().tolist()})
    # a column with a missing value is float: print 6 epochs, not 6.0
    vals = [int(v) if isinstance(v, float) and v.is_integer() else v for v in vals]
    if not vals:
        return None
    return vals[0] if len(vals) == 1 else f"{vals[0]}-{vals[-1]}"


def _protocol_sentence(df: pd.DataFrame) -> str:
    epochs, lr, halve, batch = (_one(df, c) for c in ("epochs", "lr", "lr_halve_every", "batch_size"))
    s = f"Adam, {epochs} epochs, lr {lr}"
    if halve not in (None, 0):
        s += f" halved every {halve} epochs"
    s += f", batch {batch}"
    if df["two_stage"].any():
        s += f"; second stage {_one(df[df['two_stage']], 'stage2_epochs')} epochs"
    n_train, n_held = _one(df, "n_train"), _one(df, "n_heldout")
    if n_train is not None:
        s += f"; {n_train} training and {n_held} held-out images"
    return s + "."


def _display_name(dataset: str) -> str:
    try:
        return get_dataset(dataset).display_name
    except ValueError:  # records of a data set this version does not know
        return dataset


def _published(df: pd.DataFrame, suite: dict, dataset: str,
               sample_kind: str) -> tuple[list[tuple[ledger.Entry, str]], str | None]:
    """The ledger's figures for the suite's data set ``dataset`` (even when the runs' images are
    another data set: the verdicts then say so), each with its verdict against the matching
    run's record; and a note when they are left out on purpose."""
    flag = suite.get("reference")
    if flag is False:
        return [], None
    published = ledger.rows_for(dataset)
    if flag and not published:
        raise ValueError(
            f"suite {suite.get('name')!r} sets reference: true, but benchmarks/ledger.toml holds no "
            f"published FID for dataset {dataset!r} (it covers {', '.join(ledger.datasets())})")
    if published and sample_kind != "FID":
        return [], ("Published FIDs (benchmarks/ledger.toml) are not listed: these runs have no FID, "
                    "and a classifier distance is not comparable with them." if flag else None)
    return ledger.verdicts_for(df, dataset), None


def build_table(df: pd.DataFrame, suite: dict | None = None) -> Table:
    """The comparison table of a suite's runs (``df`` from :func:`load_records`).

    One row per label (mean +- std over its finished seeds), one '<label> (2-stage)' row per
    two-stage label, one row marked failed / interrupted for a label without a finished seed,
    and Dai & Wipf's reported FIDs when the suite asks for them (``reference: true``) or its
    data set is one of theirs and the sample metric is a real FID. Bold marks the best mean
    of each column that has a direction (lower FID, CFD, MSE; higher PSNR).
    """
    suite = dict(suite or {})
    if df.empty:
        raise ValueError("no runs to tabulate")
    datasets = sorted(df["dataset"].unique())
    if len(datasets) > 1:
        raise ValueError(f"a table compares runs on one data set; these records cover {datasets} "
                         "(split the folder or filter the frame by 'dataset')")
    dataset = datasets[0]
    ref_dataset = suite.get("dataset") or dataset  # published figures are the suite's data set's
    if suite.get("dataset") not in (None, dataset):
        # the suite pointed at other images (--set dataset=npz data_root=...): its protocol, their
        # data; the published rows stay (of the suite's data set), and their verdicts say so
        suite.update(description=(suite.get("description") or "").rstrip(".")
                     + f"; its protocol run on {_display_name(dataset)} instead of {_display_name(suite['dataset'])}",
                     dataset=dataset)
    sample_kinds = _quality_kinds(df, ("samples", "stage2"))
    recon_kinds = _quality_kinds(df, ("recon",))
    sample_kind = sample_kinds[0]
    columns = _columns(sample_kinds, recon_kinds)
    rows: list[Row] = []
    notes: list[tuple[str, str]] = []

    def marker() -> str:
        return "abcdefghijklmnopqrstuvwxyz"[len([n for n in notes if n[0]]) % 26]

    for label in label_order(df, suite):
        runs = df[df["label"] == label]
        fin = runs[runs["status"] == "finished"]
        unfinished = runs[runs["status"] != "finished"]
        params = _fixed(_stat(runs["n_params"]))
        if fin.empty:
            m = marker()
            notes.append((m, _reasons_note(str(label), unfinished, len(runs))))
            status = "failed" if (unfinished["status"] == "failed").any() else \
                "/".join(sorted(unfinished["status"].unique()))
            rows.append(Row(str(label), "incomplete", {"params": params}, status=status, notes=[m]))
            continue
        row = Row(str(label), "run", {
            "params": params,
            **{f"samples_{k.lower()}": _stat(_col(fin, f"{k.lower()}_samples")) for k in sample_kinds},
            **{f"recon_{k.lower()}": _stat(_col(fin, f"{k.lower()}_recon")) for k in recon_kinds},
            "recon_mse": _stat(_col(fin, "recon_mse")),
            "psnr": _stat(_col(fin, "psnr")),
            "kl": _stat(_col(fin, "kl")),
            "active_units": _stat(_col(fin, "active_units")),
            "train_tflop": _fixed(_stat(_col(fin, "train_flops") / 1e12)),
        })
        if not unfinished.empty:
            m = marker()
            notes.append((m, _reasons_note(str(label), unfinished, len(runs))
                          + "; the row averages the finished seeds"))
            row.notes.append(m)
        _flag_unconverged(row, fin, "gamma_ratio", "first stage", notes, marker)
        rows.append(row)
        if fin["two_stage"].any():
            total = _fixed(_stat(fin["n_params"] + fin["n_params_stage2"].fillna(0)))
            rows.append(Row(f"{label} (2-stage)", "stage2",
                            {"params": total, **{f"samples_{k.lower()}": _stat(_col(fin, f"{k.lower()}_stage2"))
                                                 for k in sample_kinds},
                             "train_tflop": _fixed(_stat((_col(fin, "train_flops") + _col(fin, "train_flops_stage2")) / 1e12))}))
            _flag_unconverged(rows[-1], fin, "gamma_ratio_stage2", "second stage", notes, marker)

    columns = [_with_shift(c, rows) for c in columns]
    _bold_best(rows, columns)
    published, ref_note = _published(df, suite, ref_dataset, sample_kind)
    for entry, text in published:  # a note per row: its source and its verdict
        m = marker()
        notes.append((m, f"{entry.name} ({entry.source.table.split(' (')[0]}, arXiv {entry.source.arxiv}; "
                         f"{_display_name(entry.dataset)}): {text}"))
        rows.append(Row(entry.name, "reference", {"samples_fid": Cell(entry.value)}, notes=[m]))

    name = suite.get("name") or "suite"
    setup, fid_missing = _setup_sentence(df)
    for reason in fid_missing:  # the report's log says it in full; the table keeps a footnote
        print(f"report: FID missing: {reason}", file=sys.stderr)
    seeds = sorted(df["seed"].dropna().unique())  # what ran (a suite's seed count can be overridden)
    seeds_text = _seeds_text(seeds)
    caption = [
        f"{_display_name(dataset)}, suite {name}"
        + (f": {suite['description'].rstrip('.')}" if suite.get("description") else "") + ".",
        (f"Mean ± std over the finished runs of seeds {seeds_text}" if len(seeds) > 1 else
         f"One seed ({seeds_text}), so no std")
        + ("; bold: best of a column and every value not significantly worse (Welch's t-test, "
           f"two-sided, p ≥ {SIG_P}; ↓ lower, ↑ higher is better)." if len(seeds) > 1 else
           "; bold: best of a column (↓ lower, ↑ higher is better)."),
        _protocol_sentence(df),
        setup,
    ]
    general = [
        ("", "Samples: quality of generated images (first-stage prior; on '(2-stage)' rows, "
             "of the second-stage VAE, whose parameters are added to Params, with z = decoder2(u) as in "
             "Asperti & Trentin's code; Dai & Wipf's z = decoder2(u) + gamma_z eps is recorded as "
             "*_stage2_ancestral). Recon.: quality of reconstructions decode(posterior mean) of held-out "
             "images (the originals decode one sample z ~ q(z|x): recorded as *_recon_sample). MSE: per-pixel reconstruction error, PSNR in dB, "
             "KL in nats per image, AU: active latent units (posterior-mean variance > 0.01). Cost: "
             "training FLOPs (torch's FlopCounterMode on the loss, forward and backward, times the images "
             "processed; the 2-stage rows add the second stage's)."),
    ]
    if fid_missing:
        general.append(("‡", "FID missing for some runs: " + "; ".join(fid_missing)))
    if "CFD" in sample_kinds + recon_kinds:
        general.append(("†", f"CFD is NOT FID: it is the Fréchet distance between features of a small "
                             f"classifier trained on {_display_name(dataset)} itself, "
                             "comparable only within this table, never with published FIDs."))
    if published:
        general.append(("", f"{REFERENCE_SOURCE}: FIDs as printed in their papers, not bolded; the "
                            "ledger holds each one's table, where it was read and its protocol. Each "
                            "row's note says whether the matching run here was measured alike "
                            "('comparable': no difference known to both sides) or names the differences."))
    if ref_note:
        general.append(("", ref_note))
    return Table(str(name), columns, rows, caption, general + notes, len(df))


def _flag_unconverged(row: Row, fin: pd.DataFrame, column: str, stage: str,
                      notes: list[tuple[str, str]], marker: Callable[[], str]) -> None:
    """A note on ``row`` when gamma / sqrt(MSE) ends above CONVERGED_RATIO (gamma still falling)."""
    ratio = _stat(_col(fin, column)).mean
    if ratio is not None and ratio > CONVERGED_RATIO:
        m = marker()
        notes.append((m, f"{row.name}: not converged: gamma / sqrt(MSE) = {ratio:.2f} at the end of "
                         f"the {stage} (above {CONVERGED_RATIO}; 1 is the optimum), so gamma was still "
                         "falling when training stopped"))
        row.notes.append(m)


def _with_shift(col: Column, rows: list[Row]) -> Column:
    """Show a column of small numbers (MSE ~ 0.005) as 'MSE (x10^-3)' with 1-10 entries: papers
    do so, and 0.00445 +- 0.00048 makes the LaTeX table too wide for a page."""
    if col.key == "params" or col.integer:
        return col
    means = [abs(r.cells[col.key].mean) for r in rows if r.kind in ("run", "stage2") and col.key in r.cells
             and r.cells[col.key].mean is not None and math.isfinite(r.cells[col.key].mean)]
    top = max(means, default=0.0)
    if not 0 < top < 0.1:
        return col
    return dataclasses.replace(col, shift=-math.floor(math.log10(top)))


# numbers as the tables print them (bold ties are decided on the printed value)

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


def _bold_best(rows: list[Row], columns: list[Column]) -> None:
    """Mark the best measured mean of each directed column (ties on the printed value all bold)."""
    for col in columns:
        if col.better is None:
            continue
        cells = [r.cells[col.key] for r in rows
                 if r.kind in ("run", "stage2") and col.key in r.cells and r.cells[col.key].mean is not None
                 and math.isfinite(r.cells[col.key].mean)]
        if len(cells) < 2:
            continue  # a lone value is not 'best' of anything
        pick = min if col.better == "lower" else max
        shown = lambda x: _number(x * 10.0**col.shift, col.integer, "plain")  # noqa: E731
        top = pick(cells, key=lambda c: c.mean)
        for c in cells:
            c.bold = shown(c.mean) == shown(top.mean) or not _significantly_worse(c, top)


def _significantly_worse(cell: Cell, best: Cell) -> bool:
    """Welch's t-test (two-sided, unequal variances) of a cell against the best one at p < SIG_P;
    with fewer than two seeds on either side nothing is significant (only ties are bold)."""
    if cell is best:
        return False
    if cell.n < 2 or best.n < 2 or cell.std is None or best.std is None:
        return True
    p = stats.ttest_ind_from_stats(cell.mean, cell.std, cell.n, best.mean, best.std, best.n,
                                   equal_var=False).pvalue
    return not (p >= SIG_P)  # nan (two constant columns that differ) counts as significant
