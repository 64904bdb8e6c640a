"""The table model of a suite's report: one row per label (mean +- the half-width of a 95%
confidence interval over its finished seeds), a '<label> (2-stage)' row per two-stage label,
failed labels marked, Dai & Wipf's published FIDs where they apply; bold on the best mean of a
column; the caption and notes (with the difference the seeds can detect; their sentences are
benchmarks/reporting/caption.py). Renderers (benchmarks/reporting/render.py) turn a :class:`Table` into LaTeX and
Markdown.

Table rows are labels (a record's ``label``, else its variant). A two-stage label's second row
gives the second stage's sample quality (as Dai & Wipf 2019, Table 1, list the 2-stage VAE as a
model of its own). Which columns are shown, and from which image sets, is
benchmarks/reporting/columns.py; the statistics over seeds are benchmarks/reporting/stats.py. The classifier's
distances are always headed 'CFD' / 'CKID' with a dagger, never FID or KID.
"""
from __future__ import annotations

import dataclasses
import math
import sys
from typing import Callable

import numpy as np
import pandas as pd

from benchmarks.reporting.caption import caption_and_notes, display_name, reasons_note
from benchmarks.reporting.columns import (QUALITY_SETS, Column, _number, check_sets, quality_columns, stage2_set)
from benchmarks.reporting.stats import ci_half_width, indistinguishable
from benchmarks.reporting import ledger
from vaes.evaluation.metrics import COLLAPSED_SPREAD, CONVERGED_RATIO

# Published FIDs live in the ledger (benchmarks/reporting/ledger.toml, with their papers and protocols);
# each data set's display name in the data-set registry (vaes/data.py, via benchmarks/reporting/caption.py).
REFERENCE_SOURCE = "Published (benchmarks/reporting/ledger.toml)"  # the heading of the published rows
REASON_CHARS = 240  # a failure reason longer than this is cut in table.tex (table.md has it whole)

# ----------------------------------------------------------------------------- the table model


@dataclasses.dataclass
class Cell:
    """Mean, sample std and number of seeds of one entry, and ``half``, the ± it prints: the
    half-width of the 95% interval over seeds, or for one seed a metric's own spread (KID's std
    over subsets), else None. ``mean`` None renders as a dash."""

    mean: float | None = None
    std: float | None = None
    n: int = 0
    bold: bool = False
    half: float | None = None
    near: bool = False  # '≈': a Welch t-test over the seeds cannot tell it from the bold mean


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
    collapsed: bool = False              # some seed's generator collapsed: precision/recall never bold
    protocol: str = ""                   # a published row's protocol where it differs from the runs'
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
    published: list[tuple[str, float, str]] = dataclasses.field(default_factory=list)  # (row, FID, verdict)

    def numbered_notes(self) -> list[tuple[str, str]]:
        """The notes with each general one (marker '') numbered 1, 2, ... in order; a row's
        letter and the † / ‡ marks kept: what every renderer lists under the table."""
        out, k = [], 0
        for m, text in self.notes:
            if not m:
                k += 1
                m = str(k)
            out.append((m, text))
        return out


def label_order(df: pd.DataFrame, suite: dict | None = None) -> list[str]:
    """Labels in the order of the suite's [[runs]] (as its author lists them), then any others
    found in the records, sorted."""
    present = set(df["label"])
    listed = [r["label"] for r in (suite or {}).get("runs", []) if r.get("label") in present]
    return listed + sorted(present - set(listed))


def _stat(values: pd.Series) -> Cell:
    """Mean, sample std and interval half-width of the finite values; none for a single seed."""
    v = pd.to_numeric(values, errors="coerce").astype(float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return Cell()
    std = float(v.std(ddof=1)) if len(v) > 1 else None
    return Cell(float(v.mean()), std, len(v), half=ci_half_width(std, len(v)))


def _cell(fin: pd.DataFrame, col: Column, image_set: str | None = None) -> Cell:
    """The cell of ``col`` over a label's finished runs showing ``image_set``; a single seed of a
    metric with a spread of its own (KID) shows that spread as its ±."""
    values = pd.to_numeric(_col(fin, col.column(image_set)), errors="coerce")
    cell = _stat(values)
    if cell.n == 1 and col.spread:
        spread = pd.to_numeric(_col(fin, col.spread.format(set=image_set)), errors="coerce")[np.isfinite(values)]
        cell.half = float(spread.iloc[0]) if np.isfinite(spread.iloc[0]) else None
    return cell


def _fixed(cell: Cell) -> Cell:
    """A cell whose spread is not information (parameter counts, FLOPs: the same for every seed)."""
    cell.std = cell.half = None
    return cell


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    """A frame column, or all-NaN when no record has that metric."""
    return df[name] if name in df else pd.Series(np.nan, index=df.index)


def _published(df: pd.DataFrame, suite: dict, dataset: str, sample_kind: str,
               records: dict | None = None) -> tuple[list[tuple[ledger.Entry, str]], str | None]:
    """The ledger's figures for the suite's data set ``dataset`` (even when the runs' images are
    another data set: the verdicts then say so), each with its verdict against the matching
    run's record; and a note when they are left out on purpose."""
    flag = suite.get("reference")
    if flag is False:
        return [], None
    published = ledger.rows_for(dataset)
    if flag and not published:
        raise ValueError(
            f"suite {suite.get('name')!r} sets reference: true, but benchmarks/reporting/ledger.toml holds no "
            f"published FID for dataset {dataset!r} (it covers {', '.join(ledger.datasets())})")
    if published and sample_kind != "FID":
        return [], ("Published FIDs (benchmarks/reporting/ledger.toml) are not listed: these runs have no FID, "
                    "and a classifier distance is not comparable with them." if flag else None)
    return ledger.verdicts_for(df, dataset, records), None


def build_table(df: pd.DataFrame, suite: dict | None = None, sets: str | None = None,
                records: dict | None = None) -> Table:
    """The comparison table of a suite's runs (``df``: ``benchmarks.reporting.frames.read_runs(...).frame``).

    One row per label (mean +- the 95% interval's half-width over its finished seeds), one
    '<label> (2-stage)' row per two-stage label (the published sampler of its second stage), one
    row marked failed / interrupted for a label without a finished seed, and, in a block of their
    own, the published figures of the ledger (benchmarks/reporting/ledger.toml: several papers), each with
    its verdict, also in ``Table.published``, when the suite asks for them (``reference: true``)
    or its data set is one of theirs and the sample metric is a real FID. Bold marks the best
    mean of each column that has a direction, ≈ each row a Welch t-test cannot tell from it.
    ``sets`` (else the suite's ``quality_sets``, else 'vaebench') picks the image sets of the
    quality columns: 'vaebench' or 'renorm' (the original code's renormalised sets). ``records``
    (run_dir -> its Record, as :attr:`benchmarks.reporting.frames.Runs.by_dir`) spares the ledger's
    verdicts a second read of each record.
    """
    suite = dict(suite or {})
    dataset, ref_dataset = _dataset(df, suite)
    sets = check_sets(sets or suite.get("quality_sets", "vaebench"))
    shown = QUALITY_SETS[sets]
    stage2_sets = {label: _stage2_set(df[(df["label"] == label) & (df["status"] == "finished")], sets)
                   for label in df.loc[df["two_stage"].astype(bool), "label"].unique()}
    columns = quality_columns(df, [shown["samples"], *{s for s, _ in stage2_sets.values()}], shown["recon"])
    notes: list[tuple[str, str]] = []

    def marker() -> str:
        return "abcdefghijklmnopqrstuvwxyz"[len([n for n in notes if n[0]]) % 26]

    rows: list[Row] = []
    for label in label_order(df, suite):
        rows += _label_rows(df[df["label"] == label], str(label), columns, shown,
                            stage2_sets.get(label), notes, marker)
    columns = [_with_shift(c, rows) for c in columns]
    _bold_best(rows, columns)
    # the published FIDs are FIDs: they go beside a real sample FID only
    sample_kind = "FID" if any(c.key == "samples_fid" for c in columns) else "CFD"
    published, ref_note = _published(df, suite, ref_dataset, sample_kind, records)
    for entry, text in published:  # a note per row: its source and its verdict
        m = marker()
        notes.append((m, f"{entry.name} ({entry.table}, arXiv {entry.source.arxiv}; "
                         f"{display_name(entry.dataset)}): {text}"))
        # the published std is kept as its ±: the notes say it is the paper's std, not an interval
        rows.append(Row(entry.name, "reference", {"samples_fid": Cell(entry.value, half=entry.std)}, notes=[m],
                        protocol=_published_protocol(entry, df)))

    name = suite.get("name") or "suite"
    caption, general, fid_missing = caption_and_notes(df, suite, str(name), dataset, columns, sets, stage2_sets,
                                                      rows, published=bool(published), ref_note=ref_note)
    for reason in fid_missing:  # the report's log says it in full; the table keeps a footnote
        print(f"report: FID missing: {reason}", file=sys.stderr)
    return Table(str(name), columns, rows, caption, general + notes, len(df),
                 [(entry.name, entry.value, text) for entry, text in published])


def _dataset(df: pd.DataFrame, suite: dict) -> tuple[str, str]:
    """The one data set of the runs, and the data set of the published figures (the suite's);
    where the suite pointed at other images (--set dataset=npz data_root=...), ``suite``'s
    description and dataset are changed in place to say so: its protocol, their data."""
    if df.empty:
        raise ValueError("no runs to tabulate")
    datasets = sorted(df["dataset"].unique())
    if len(datasets) > 1:
        raise ValueError(f"a table compares runs on one data set; these records cover {datasets} "
                         "(split the folder or filter the frame by 'dataset')")
    dataset = datasets[0]
    ref_dataset = suite.get("dataset") or dataset  # published figures are the suite's data set's
    if suite.get("dataset") not in (None, dataset):
        # the published rows stay (of the suite's data set), and their verdicts say so
        suite.update(data_note=f"Suite {suite.get('name')}'s protocol run on {display_name(dataset)} "
                               f"instead of {display_name(suite['dataset'])}.", dataset=dataset)
    return dataset, ref_dataset


def _stage2_set(fin: pd.DataFrame, sets: str) -> tuple[str, str | None]:
    """(image set, second-stage variant) of a two-stage label's '(2-stage)' row: the published
    sampler of its second stage (benchmarks.reporting.columns.stage2_set); records older than the
    ancestral sampler fall back to 'stage2' (z = decoder2(u))."""
    variants = fin["stage2_variant"].dropna().unique() if "stage2_variant" in fin else []
    variant = str(variants[0]) if len(variants) == 1 else None
    image_set = stage2_set(variant, sets)
    if not any(np.isfinite(pd.to_numeric(_col(fin, f"{m}_{image_set}"), errors="coerce")).any()
               for m in ("kid", "fid", "cfd")):
        image_set = "stage2" if sets == "vaebench" else image_set
    return image_set, variant


def _label_rows(runs: pd.DataFrame, label: str, columns: list[Column], shown: dict[str, str],
                stage2: tuple[str, str | None] | None, notes: list[tuple[str, str]],
                marker: Callable[[], str]) -> list[Row]:
    """The rows of one label: its first-stage row (or an incomplete one) and, for a two-stage
    label, its '(2-stage)' row showing the image set ``stage2`` names."""
    fin = runs[runs["status"] == "finished"]
    unfinished = runs[runs["status"] != "finished"]
    params = _fixed(_stat(runs["n_params"]))
    if fin.empty:
        m = marker()
        notes.append((m, reasons_note(label, unfinished, len(runs))))
        status = "failed" if (unfinished["status"] == "failed").any() else \
            "/".join(sorted(unfinished["status"].unique()))
        return [Row(label, "incomplete", {"params": params}, status=status, notes=[m])]
    cells = {c.key: _cell(fin, c, shown.get(c.role)) for c in columns if c.key not in ("params", "train_tflop")}
    row = Row(label, "run", {"params": params, **cells,
                             "train_tflop": _fixed(_stat(_col(fin, "train_flops") / 1e12))})
    if not unfinished.empty:
        m = marker()
        notes.append((m, reasons_note(label, unfinished, len(runs)) + "; the row averages the finished seeds"))
        row.notes.append(m)
    _flag_unconverged(row, fin, "gamma_ratio", "first stage", notes, marker)
    collapsed = _flag_collapsed(row, fin, notes, marker)
    if stage2 is None or not fin["two_stage"].any():
        return [row]
    total = _fixed(_stat(fin["n_params"] + fin["n_params_stage2"].fillna(0)))
    second = Row(f"{label} (2-stage)", "stage2", {
        "params": total, **{c.key: _cell(fin, c, stage2[0]) for c in columns if c.role == "samples"},
        "train_tflop": _fixed(_stat((_col(fin, "train_flops") + _col(fin, "train_flops_stage2")) / 1e12))})
    _flag_unconverged(second, fin, "gamma_ratio_stage2", "second stage", notes, marker)
    if collapsed:  # the same decoder, whose output does not depend on its code: one image again
        second.collapsed = True
        second.notes.append(collapsed)
    return [row, second]


def collapsed_runs(fin: pd.DataFrame) -> pd.Series:
    """Per finished run, whether its generator collapsed: no active latent unit, or prior samples
    whose mean pixel std is below COLLAPSED_SPREAD (every sample about one image)."""
    au = pd.to_numeric(_col(fin, "active_units"), errors="coerce")
    spread = pd.to_numeric(_col(fin, "sample_spread"), errors="coerce")
    return (au == 0) | (spread < COLLAPSED_SPREAD)


def _flag_collapsed(row: Row, fin: pd.DataFrame, notes: list[tuple[str, str]],
                    marker: Callable[[], str]) -> str | None:
    """Mark ``row`` collapsed, with a note, when some seed's generator collapsed; its marker."""
    hit = collapsed_runs(fin)
    if not hit.any():
        return None
    m = marker()
    au = pd.to_numeric(_col(fin, "active_units"), errors="coerce")
    why = "0 active units" if (au[hit] == 0).all() else "0 active units or prior samples without spread"
    notes.append((m, f"{row.name}: collapsed generator in {int(hit.sum())} of {len(fin)} seeds ({why}): its samples "
                     "are about one image, whose precision is 1 and recall 0 by construction; they are shown, "
                     "never bold, and its '(2-stage)' row shares the decoder"))
    row.collapsed = True
    row.notes.append(m)
    return m


def _published_protocol(entry: ledger.Entry, df: pd.DataFrame) -> str:
    """How a published figure's protocol differs from the runs' in what moves FID most (image
    counts, normalisation of the samples): '' when it does not, or the ledger does not say."""
    fin = df[df["status"] == "finished"]
    ours = set(pd.to_numeric(_col(fin, "fid_samples_n_images"), errors="coerce").dropna().astype(int))
    n = entry.protocol.get("n_generated")
    parts = [f"{n:,} images"] if isinstance(n, int) and ours and ours != {n} else []
    norm = entry.protocol.get("sample_normalisation")
    if norm not in (None, "none", ledger.UNKNOWN):
        parts.append(f"{norm} normalised")
    return ", ".join(parts)


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
    """Mark the best measured mean of each directed column bold (ties on the printed value all
    bold, unless every row ties: then none is best), and '≈' each other row that a two-sided
    Welch t-test over the seeds cannot tell from it (benchmarks.reporting.stats.indistinguishable). A
    collapsed row's precision and recall are never bold nor ≈ (1 and 0 by construction)."""
    for col in columns:
        if col.better is None:
            continue
        by_prc = "_prc_" in col.key
        cells = [r.cells[col.key] for r in rows
                 if r.kind in ("run", "stage2") and col.key in r.cells and r.cells[col.key].mean is not None
                 and math.isfinite(r.cells[col.key].mean) and not (by_prc and r.collapsed)]
        if len(cells) < 2:
            continue  # a lone value is not 'best' of anything
        pick = min if col.better == "lower" else max
        top = pick(cells, key=lambda c: c.mean)
        best = [_shown(c.mean, col) == _shown(top.mean, col) for c in cells]  # ties as printed are ties
        if all(best):
            continue
        for c, b in zip(cells, best):
            c.bold = b
            c.near = not b and bool(indistinguishable((top.mean, top.std, top.n), (c.mean, c.std, c.n)))


def _shown(x: float, col: Column) -> str:
    """``x`` as its column prints it."""
    return _number(x * 10.0**col.shift, col.integer, "plain")
