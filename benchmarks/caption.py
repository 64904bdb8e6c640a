"""The prose of a suite's table: the caption's sentences (how FID was computed, the training
protocol, what a cell's ± and bold mean) and the notes on unfinished runs. Pure functions of the
records' frame (benchmarks/frames.py); benchmarks/table.py puts them into the :class:`Table`
model, so that every renderer says the same."""
from __future__ import annotations

from typing import Any

import pandas as pd

from benchmarks.columns import BIASED_BELOW, fid_biased
from benchmarks.stats import LEVEL
from vaes.data import get_dataset


def seeds_text(seeds) -> str:
    seeds = sorted(int(s) for s in seeds if pd.notna(s))
    return ", ".join(map(str, seeds)) if seeds else "none"


def reasons_note(label: str, runs: pd.DataFrame, n_total: int) -> str:
    """'label: 2 of 3 runs failed (seeds 0, 2: reason)' with identical reasons grouped."""
    parts = []
    # one line per reason: a traceback's newlines would break the Markdown list and the LaTeX notes
    reasons = runs["reason"].fillna("no reason recorded").map(lambda r: " ".join(str(r).split()))
    for (status, reason), g in runs.groupby([runs["status"], reasons], sort=True):
        parts.append(f"{status}, seed{'s' if len(g) > 1 else ''} {seeds_text(g['seed'])}: {reason}")
    return f"{label}: {len(runs)} of {n_total} runs not finished ({'; '.join(parts)})"


def setup_sentence(df: pd.DataFrame, image_sets: list[str]) -> tuple[str, list[str]]:
    """How FID was computed (engine and version, images, resize, weights) for the caption, and
    the reasons it is missing for some runs (for a footnote and the log, not the caption)."""
    fin = df[df["status"] == "finished"]
    setups, missing, biased = set(), set(), False
    for k in image_sets:
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
                biased = fid_biased(df)
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


def protocol_sentence(df: pd.DataFrame) -> str:
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


def display_name(dataset: str) -> str:
    try:
        return get_dataset(dataset).display_name
    except ValueError:  # records of a data set this version does not know
        return dataset


def statistics_sentence(seeds: list) -> str:
    """What a cell's ± is and what bold means."""
    text = seeds_text(seeds)
    if len(seeds) < 2:
        return (f"One seed ({text}), so no interval over seeds (KID: ± its std over subsets); "
                "bold: the best mean of a column (↓ lower, ↑ higher is better).")
    return (f"Mean ± the half-width of its {LEVEL:.0%} confidence interval over the finished runs of "
            f"seeds {text} (Student t, n − 1 degrees of freedom; a row with one finished seed has no "
            "interval, or KID's std over subsets); bold: the best mean of a column and nothing else "
            "(↓ lower, ↑ higher is better), whether or not the intervals overlap.")
