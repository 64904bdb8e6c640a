"""Tables (LaTeX, Markdown) and figures from run records: pure functions of the frames of
benchmarks/records.py, plus the CLI

    python -m benchmarks.report --suite NAME [--runs DIR] [--out DIR]

which reads every record.json under DIR (default runs/NAME/runs) and writes into OUT
(default runs/NAME): table.tex, table.md, runs.csv, curves.png, metrics.png,
tradeoff.png, samples.png. NAME is a suite of benchmarks/suites (or a .toml path): its
description, data set, ``reference`` flag and the order of its [[runs]] shape the table.

Table rows are labels (a record's ``label``, else its variant); numbers are mean +- std over
the finished seeds. A two-stage label gets a second row '<label> (2-stage)' whose sample
quality is that of the second stage (as Dai & Wipf 2019, Table 1, list the 2-stage VAE as a
model of its own). Sample quality is FID when the records hold one; otherwise the classifier
Frechet distance, always headed 'CFD' and never called FID (DESIGN.md).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from scipy import stats

from benchmarks.records import load_histories, load_records
from benchmarks.suite import load_suite
from vaes.data import REFERENCE_SOURCE, get_dataset, list_datasets
from vaes.metrics import CONVERGED_RATIO

# Dai & Wipf's reported FIDs and each data set's display name live in the data-set registry
# (vaes/data.py); the table asks it.
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


def _reference_fid(dataset: str) -> dict[str, float]:
    try:
        return get_dataset(dataset).reference_fid
    except ValueError:
        return {}


def _check_reference(suite: dict, dataset: str, sample_kind: str) -> tuple[bool, str | None]:
    """Whether to add Dai & Wipf's reported FIDs, and a note when they are left out on purpose."""
    flag = suite.get("reference")
    if flag is False:
        return False, None
    known = bool(_reference_fid(dataset))
    if flag and not known:
        covered = [d for d in list_datasets() if get_dataset(d).reference_fid]
        raise ValueError(
            f"suite {suite.get('name')!r} sets reference: true, but Dai & Wipf 2019 report no FID for "
            f"dataset {dataset!r} (they cover {', '.join(covered)})")
    if known and sample_kind != "FID":
        return False, ("Dai & Wipf's published FIDs are not listed: these runs have no FID, and a "
                       "classifier distance is not comparable with them." if flag else None)
    return known, None


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
    if suite.get("dataset") not in (None, dataset):
        # the suite pointed at other images (--set dataset=npz data_root=...): its protocol, their data;
        # the published reference FIDs are for the suite's own data set, so they are left out
        suite.update(reference=False, description=(suite.get("description") or "").rstrip(".")
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
        params = _stat(runs["n_params"])
        params.std = None  # same for every seed; its spread is not information
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
            "train_tflop": _stat(_col(fin, "train_flops") / 1e12),
        })
        if not unfinished.empty:
            m = marker()
            notes.append((m, _reasons_note(str(label), unfinished, len(runs))
                          + "; the row averages the finished seeds"))
            row.notes.append(m)
        _flag_unconverged(row, fin, "gamma_ratio", "first stage", notes, marker)
        rows.append(row)
        if fin["two_stage"].any():
            total = _stat(fin["n_params"] + fin["n_params_stage2"].fillna(0))
            total.std = None
            rows.append(Row(f"{label} (2-stage)", "stage2",
                            {"params": total, **{f"samples_{k.lower()}": _stat(_col(fin, f"{k.lower()}_stage2"))
                                                 for k in sample_kinds},
                             "train_tflop": _stat((_col(fin, "train_flops") + _col(fin, "train_flops_stage2")) / 1e12)}))
            _flag_unconverged(rows[-1], fin, "gamma_ratio_stage2", "second stage", notes, marker)

    columns = [_with_shift(c, rows) for c in columns]
    _bold_best(rows, columns)
    show_ref, ref_note = _check_reference(suite, dataset, sample_kind)
    if show_ref:
        for model, value in _reference_fid(dataset).items():
            rows.append(Row(model, "reference", {"samples_fid": Cell(value, None, 10)}))

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
    if show_ref:
        general.append(("", f"{REFERENCE_SOURCE}: FIDs copied from their Table 1 (InfoGAN-style "
                            "network, latent 64, mean of 10 runs; a different network and "
                            "protocol, shown for orientation, not bolded)."))
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


# ----------------------------------------------------------------------------- formatting

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


def _params(x: float) -> str:
    """A parameter count as 211k / 5.20M."""
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e3:
        return f"{x / 1e3:.0f}k"
    return str(int(x))


def _cell_text(cell: Cell, col: Column, style: str) -> str:
    """mean ± std (no std for one seed), a dash when missing, bold when best."""
    if cell.mean is None:
        return "--" if style == "tex" else "–"
    if col.key == "params":
        return _params(cell.mean)
    mean = cell.mean * 10.0**col.shift
    s = _number(mean, col.integer, style)
    if cell.std is not None:
        std = cell.std * 10.0**col.shift
        if abs(mean) < 1e-3 and mean != 0:
            sd = _number(std, False, style) if std else "0"
        else:
            sd = f"{std:.{(1 if std else 0) if col.integer else _decimals(mean)}f}"
        # LaTeX: the spread in a smaller font keeps a 7-column table near the text width
        s += rf" {{\scriptsize$\pm${sd}}}" if style == "tex" else f" ± {sd}"
    if cell.bold:
        s = rf"\textbf{{{s}}}" if style == "tex" else f"**{s}**"
    return s


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
                "|": r"\textbar{}", "γ": r"$\gamma$", "β": r"$\beta$", "σ": r"$\sigma$",
                "μ": r"$\mu$", "α": r"$\alpha$", "λ": r"$\lambda$", "κ": r"$\kappa$",
                "±": r"$\pm$", "×": r"$\times$", "↓": r"$\downarrow$", "↑": r"$\uparrow$",
                "†": r"$^\dagger$", "‡": r"$^\ddagger$", "≤": r"$\le$", "≥": r"$\ge$", "–": "--", "—": "---",
                "é": r"\'e", "→": r"$\to$"}


def tex_escape(text: str) -> str:
    """Text safe inside a LaTeX document with the default (OT1/UTF-8) setup: specials escaped,
    the few non-ASCII characters our captions use mapped to commands, others replaced by '?'
    (pdflatex stops on an unknown Unicode character)."""
    out = []
    for ch in str(text):
        if ch in _TEX_SPECIAL:
            out.append(_TEX_SPECIAL[ch])
        elif ord(ch) < 128:
            out.append(ch)
        else:
            out.append("?")
    return "".join(out)


def _cut(text: str, n: int = REASON_CHARS) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _headers(table: Table, style: str) -> list[str]:
    """Column headers: name, then metric / unit, scale and direction (two lines in LaTeX, where
    the headers would otherwise set the table's width)."""
    arrow = {"lower": "↓", "higher": "↑", None: ""}
    sup = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
    out = ["Model"]
    for c in table.columns:
        if style == "tex":
            scale = rf"$\times10^{{-{c.shift}}}$" if c.shift else ""
            second = " ".join(x for x in (tex_escape(c.unit), scale, tex_escape(arrow[c.better])) if x)
            out.append(rf"\begin{{tabular}}[b]{{@{{}}r@{{}}}}{tex_escape(c.header)}\\{second}\end{{tabular}}"
                       if second else tex_escape(c.header))
        else:
            scale = f"×10⁻{str(c.shift).translate(sup)}" if c.shift else ""
            out.append(" ".join(x for x in (c.header, c.unit, scale, arrow[c.better]) if x))
    return out


def render_latex(table: Table) -> str:
    """A booktabs ``table`` float (caption, label tab:<suite>, notes under the tabular); needs
    only \\usepackage{booktabs}. One table row per source line."""
    ncol = len(table.columns) + 1
    lines = [f"% generated by benchmarks.report from {table.n_records} run records; do not edit",
             r"\begin{table}[t]", r"\centering", r"\small", r"\setlength{\tabcolsep}{4pt}",
             r"\caption{" + tex_escape(" ".join(table.caption)) + "}",
             r"\label{tab:" + "".join(ch if ch.isalnum() or ch in "-_:." else "-" for ch in table.name) + "}",
             r"\begin{tabular}{l" + "r" * (ncol - 1) + "}", r"\toprule",
             " & ".join(_headers(table, "tex")) + r" \\", r"\midrule"]
    in_reference = False
    for row in table.rows:
        name = tex_escape(row.name) + "".join(rf"$^{{{m}}}$" for m in row.notes)
        if row.kind == "reference":
            if not in_reference:
                source = rf"\textit{{{tex_escape(REFERENCE_SOURCE)}}}"
                lines += [r"\midrule", rf"\multicolumn{{{ncol}}}{{l}}{{{source}}} \\"]
                in_reference = True
            name = r"\quad " + name
        if row.kind == "incomplete":
            params = _cell_text(row.cells["params"], table.columns[0], "tex")
            lines.append(f"{name} & {params} & "
                         rf"\multicolumn{{{ncol - 2}}}{{c}}{{\emph{{{tex_escape(row.status)}}}}} \\")
            continue
        cells = [_cell_text(row.cells[c.key], c, "tex") if c.key in row.cells else "" for c in table.columns]
        lines.append(" & ".join([name] + cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if table.notes:
        notes = []
        for m, text in table.notes:
            lead = {"†": r"$^\dagger$~", "‡": r"$^\ddagger$~"}.get(m, rf"$^{{{m}}}$~" if m else "")
            notes.append(lead + tex_escape(_cut(text, 600 if m in ("", "†", "‡") else REASON_CHARS)))
        lines += [r"\par\smallskip", r"\parbox{\linewidth}{\footnotesize\raggedright",
                  "\\par\n".join(notes) + "}"]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def _md_escape(text: str) -> str:
    return str(text).replace("|", r"\|")


def render_markdown(table: Table) -> str:
    """The same table in GitHub Markdown: caption above, notes (with full reasons) below."""
    heads = _headers(table, "md")
    lines = [f"**{_md_escape(table.name)}.** " + _md_escape(" ".join(table.caption)), "",
             "| " + " | ".join(map(_md_escape, heads)) + " |",
             "|" + "|".join([":--"] + ["--:"] * len(table.columns)) + "|"]
    for row in table.rows:
        name = _md_escape(row.name) + "".join(f" [{m}]" for m in row.notes)
        if row.kind == "reference":
            name = f"{REFERENCE_SOURCE}: {name}"
        if row.kind == "incomplete":
            cells = [_cell_text(row.cells["params"], table.columns[0], "md"), f"**{row.status}**"]
            cells += [""] * (len(table.columns) - 2)
        else:
            cells = [_cell_text(row.cells[c.key], c, "md") if c.key in row.cells else ""
                     for c in table.columns]
        lines.append("| " + " | ".join([name] + [_md_escape(c) for c in cells]) + " |")
    lines.append("")
    for m, text in table.notes:
        lines.append(f"- {'[' + m + '] ' if m and m != '†' else m + ' ' if m else ''}{_md_escape(text)}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- figures

def label_palette(labels) -> dict[str, Any]:
    """One colour per label, the same in every figure; its order is the order of the legends
    and panels (pass :func:`label_order` for the suite's order)."""
    import seaborn as sns
    labels = list(dict.fromkeys(map(str, labels)))
    colors = sns.color_palette("tab10" if len(labels) <= 10 else "husl", len(labels))
    return dict(zip(labels, colors))


def _figure(w: float, h: float):
    """A figure not tied to pyplot's global state (safe in a headless suite run)."""
    from matplotlib.figure import Figure
    return Figure(figsize=(w, h), dpi=120, layout="constrained")


def _message_figure(path: Path, text: str) -> None:
    fig = _figure(6, 2)
    ax = fig.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, "\n".join(textwrap.wrap(text, 70)), ha="center", va="center", fontsize=11)
    fig.savefig(path, bbox_inches="tight")


def _legend(fig, palette: dict, extra=None, where: str = "below") -> None:
    """One legend for the whole figure from the label colours, below it or on its right."""
    from matplotlib.lines import Line2D
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
    import seaborn as sns
    from matplotlib.ticker import MaxNLocator
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


def _metric_specs(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(column, title) of the metrics the finished runs hold, sample quality first."""
    fin = df[df["status"] == "finished"]
    specs = []
    for kind, name in (("fid", "FID"), ("cfd", "CFD (classifier, not FID)")):
        for k, what in (("samples", "samples"), ("stage2", "2-stage samples"), ("recon", "reconstructions")):
            specs.append((f"{kind}_{k}", f"{name}: {what} ↓"))
    specs += [("recon_mse", "reconstruction MSE ↓"), ("psnr", "PSNR (dB) ↑"), ("kl", "KL (nats)"),
              ("neg_elbo", "−ELBO (nats)"), ("active_units", "active units"), ("gamma", "γ (final)")]
    return [(c, t) for c, t in specs
            if c in fin and np.isfinite(pd.to_numeric(fin[c], errors="coerce")).any()]


def plot_metrics(df: pd.DataFrame, path: str | Path, palette: dict | None = None) -> None:
    """metrics.png: one panel per metric, a point per label (mean, bar = std over seeds) and
    the individual seeds as small dots."""
    import seaborn as sns
    from matplotlib.ticker import MaxNLocator
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


def plot_tradeoff(df: pd.DataFrame, path: str | Path, palette: dict | None = None) -> None:
    """tradeoff.png: reconstruction MSE against sample quality, one point per run (a cross
    for the second stage of a two-stage run), coloured by label."""
    import seaborn as sns
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator
    path = Path(path)
    fin = df[df["status"] == "finished"]
    kind = _quality_kind(df, ("samples", "stage2")).lower()
    points = []
    for stage, key in (("first stage", f"{kind}_samples"), ("second stage", f"{kind}_stage2")):
        if key in fin and "recon_mse" in fin:
            points.append(pd.DataFrame({"label": fin["label"], "recon_mse": fin["recon_mse"],
                                        "quality": pd.to_numeric(fin[key], errors="coerce"),
                                        "samples from": stage}))
    pts = pd.concat(points).dropna() if points else pd.DataFrame()
    if pts.empty:
        return _message_figure(path, "No finished run has both a reconstruction MSE and a sample-quality "
                                     "metric (FID or CFD), so there is no trade-off to plot.")
    palette = palette or label_palette(label_order(df))
    fig = _figure(6.4, 5.2)
    ax = fig.add_subplot()
    sns.scatterplot(data=pts, x="recon_mse", y="quality", hue="label", style="samples from",
                    markers={"first stage": "o", "second stage": "X"}, palette=palette, s=70,
                    alpha=0.85, ax=ax, legend=False)
    if pts["recon_mse"].max() > 10 * pts["recon_mse"].min() > 0:
        ax.set_xscale("log")  # variants differ by orders of magnitude in MSE
    name = "FID" if kind == "fid" else "CFD (classifier Fréchet distance, not FID)"
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
    import matplotlib.image as mpimg
    path = Path(path)
    fin = df[df["status"] == "finished"].sort_values(["label", "seed"])
    panels = []  # (title, grid file)
    for label in order or label_order(fin):
        for _, r in fin[fin["label"] == label].iterrows():
            grid = Path(r["run_dir"]) / "samples.png"
            if grid.is_file():  # the lowest seed that left a grid
                panels.append((str(label), r["seed"], grid))
                if grid.with_name("samples_stage2.png").is_file():
                    panels.append((f"{label} (2-stage)", r["seed"], grid.with_name("samples_stage2.png")))
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


# ----------------------------------------------------------------------------- the report

def make_report(df: pd.DataFrame, hist: pd.DataFrame, out_dir: str | Path,
                suite: dict | None = None) -> dict[str, Path]:
    """Write runs.csv, table.tex, table.md and the four figures into ``out_dir``.

    ``df`` and ``hist`` come from :func:`benchmarks.records.load_records` and
    :func:`~benchmarks.records.load_histories`; ``suite`` (the dict of
    benchmarks.suite.load_suite, or any dict with some of name, dataset, description,
    reference, runs) feeds the caption and orders the rows. Returns {file name: path}.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = build_table(df, suite)
    written = {}

    def put(name: str, text: str) -> None:
        (out / name).write_text(text)
        written[name] = out / name

    # run folders relative to the report, so that a committed runs.csv names no path of this machine
    df.assign(run_dir=[os.path.relpath(d, out.resolve()) for d in df["run_dir"]]).to_csv(out / "runs.csv", index=False)
    written["runs.csv"] = out / "runs.csv"
    put("table.tex", render_latex(table))
    put("table.md", render_markdown(table))
    order = label_order(df, suite)
    palette = label_palette(order)
    for name, fn, data in (("curves.png", plot_curves, hist), ("metrics.png", plot_metrics, df),
                           ("tradeoff.png", plot_tradeoff, df)):
        fn(data, out / name, palette)
        written[name] = out / name
    plot_samples(df, out / "samples.png", order)
    written["samples.png"] = out / "samples.png"
    return written


def report_folder(runs_dir: str | Path, out_dir: str | Path, suite: dict | None = None) -> list[Path]:
    """Read every record under ``runs_dir`` and write the report into ``out_dir`` (see
    :func:`make_report`); returns the files written. What benchmarks.run calls after a suite."""
    return list(make_report(load_records(runs_dir), load_histories(runs_dir), out_dir, suite).values())


def _suite_meta(name: str) -> dict:
    """The suite's TOML (benchmarks/suites/NAME.toml or a path) for the caption and row order;
    just its name when there is none (a folder of runs made by hand or by a sweep)."""
    try:
        return load_suite(name)
    except FileNotFoundError as e:
        print(f"note: {e}; the caption names the suite only", file=sys.stderr)
        return {"name": Path(name).stem}


def make_suite_report(suite: dict, out: Path) -> None:
    """Tables and figures of whatever has finished under OUT/runs."""
    paths = report_folder(out / "runs", out, suite)
    print("report: " + ", ".join(str(p) for p in paths))


def main(argv: list[str] | None = None) -> int:
    """CLI: build a suite's report from its records."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.split("\n\n")[0])
    p.add_argument("--suite", required=True,
                   help="suite name or .toml path (caption, row order, defaults of --runs and --out)")
    p.add_argument("--runs", help="folder searched for record.json files (default runs/NAME/runs)")
    p.add_argument("--out", help="where tables and figures go (default runs/NAME)")
    a = p.parse_args(argv)
    try:
        suite = _suite_meta(a.suite)
        name = suite["name"]
        runs = Path(a.runs or Path("runs") / name / "runs")
        out = Path(a.out or Path("runs") / name)
        for path in report_folder(runs, out, suite):
            print(path)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
