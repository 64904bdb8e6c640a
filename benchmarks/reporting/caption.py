"""The prose of a suite's table: a short caption above it (what the rows are, the seeds that
finished, the image counts, what bold and ≈ mean: at most CAPTION_CHARS characters) and the
numbered notes under it (the protocol, how each metric was computed, the detectable
difference). Every number in them is read from the records, never from the suite's file, whose
description is not printed (a suite's name is the title). Pure functions of the records' frame
(benchmarks/reporting/frames.py); benchmarks/reporting/table.py puts them into the :class:`Table` model, so that
every renderer says the same."""
from __future__ import annotations

from typing import Any

import pandas as pd

from benchmarks.reporting.columns import BIASED_BELOW, QUALITY_SETS, _number, fid_biased, metric_sentences
from benchmarks.reporting.stats import ALPHA, LEVEL, POWER, detectable_difference, pooled_std
from vaes.data import get_dataset

CAPTION_CHARS = 600  # the caption above a table stays short; the rest goes to numbered notes


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
            if pd.notna(r[m]):  # the setup is the run's Inception evaluation's (inception_*)
                real = f" vs {_int_text(r.get('inception_reference_n'))} real"
                split = r.get("inception_reference_split")
                real += f" ({split} split)" if isinstance(split, str) else ""
                weights = r.get("inception_weights_source")
                setups.add(f"{r.get('inception_engine')} {r.get('inception_engine_version')}, "
                           f"{_int_text(r.get(f'{m}_n_images'))} generated{real} images, "
                           f"resized {r.get('inception_resize')}".replace(" vs nan real", "")
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
    """What a cell's ± is (a note under the table)."""
    text = seeds_text(seeds)
    if len(seeds) < 2:
        return f"One seed ({text}), so no interval over seeds and no test (KID: ± its std over subsets)."
    return (f"± is the half-width of the {LEVEL:.0%} confidence interval of the mean over the finished runs of "
            f"seeds {text} (Student t, n − 1 degrees of freedom; a row with one finished seed has no interval, "
            f"or KID's std over subsets). ≈: a two-sided Welch t-test (unequal variances) at alpha {ALPHA} over "
            "the seeds cannot tell the row's mean from the bold one.")


def _counts(fin: pd.DataFrame, cols: list[str]) -> str | None:
    """The distinct counts in ``cols`` of the finished runs ``fin``: '300' or '50, 300'
    (overridden per run); None when none is recorded."""
    cols = [c for c in cols if c in fin]
    vals = pd.concat([pd.to_numeric(fin[c], errors="coerce") for c in cols]).dropna() if cols else []
    return ", ".join(f"{int(v):,}" for v in sorted(set(vals))) if len(vals) else None


def _generated_counts(fin: pd.DataFrame, sets: list[str]) -> str | None:
    """The generated images of ``sets`` that the first Inception metric recorded (FID, else KID,
    else precision/recall)."""
    return next((c for metric in ("fid", "kid", "prc")
                 if (c := _counts(fin, [f"{metric}_{s}_n_images" for s in sets]))), None)


def short_caption(df: pd.DataFrame, name: str, dataset: str, sets: list[str], collapsed: bool) -> list[str]:
    """The caption above the table: the rows, the seeds that finished, the image counts, bold and ≈."""
    fin = df[df["status"] == "finished"]
    seeds = sorted(fin["seed"].dropna().unique())
    stat = (f"mean ± {LEVEL:.0%} interval over the seeds that finished ({seeds_text(seeds)}; "
            f"{len(fin)} of {len(df)} runs)" if len(seeds) > 1 else
            f"one seed that finished ({seeds_text(seeds)}; {len(fin)} of {len(df)} runs), no interval")
    out = [f"{display_name(dataset)}, suite {name}: one row per variant, {stat}; '(2-stage)' rows: the second stage's samples."]
    gen, real = _generated_counts(fin, sets), _counts(fin, ["inception_reference_n"])
    if gen:
        out.append(f"Sample metrics on {gen} generated" + (f" vs {real} held-out images." if real else " images per set."))
    out.append("Bold: the best mean of a column (↓ lower, ↑ higher is better)"
               + ("; ≈: not told apart from it by a Welch t-test over the seeds." if len(seeds) > 1 else "."))
    if collapsed:
        out.append("'collapsed': a generator whose samples are one image (never bold in precision/recall).")
    return out


def caption_and_notes(df: pd.DataFrame, suite: dict, name: str, dataset: str, columns, sets: str,
                      stage2_sets: dict, rows, *, published: bool, ref_note: str | None
                      ) -> tuple[list[str], list[tuple[str, str]], list[str]]:
    """The caption (short_caption), the general notes under the table (marker '': numbered by
    the renderers) and the reasons FID is missing for some runs."""
    used = [*QUALITY_SETS[sets].values(), *{s for s, _ in stage2_sets.values()}]
    caption = short_caption(df, name, dataset, used, any(r.collapsed for r in rows))
    setup, fid_missing = setup_sentence(df, used)
    fin = df[df["status"] == "finished"]
    notes = [statistics_sentence(sorted(fin["seed"].dropna().unique())), protocol_sentence(df), setup]
    notes += [suite["data_note"]] if suite.get("data_note") else []
    notes += metric_sentences(df, columns, sets, {f"{l} (2-stage)": v for l, v in stage2_sets.items()})
    general = [("", n) for n in notes] + _general_notes(rows, columns, dataset, fid_missing, published, ref_note)
    return caption, general, fid_missing


def _general_notes(rows, columns, dataset: str, fid_missing: list[str], published: bool,
                   ref_note: str | None) -> list[tuple[str, str]]:
    """The notes that no row marks: the columns, the detectable difference, FID missing (‡), the
    classifier's distances (†), the published rows."""
    general = [
        ("", "Samples: quality of generated images (first-stage prior; on '(2-stage)' rows, of the "
             "second-stage VAE, whose parameters are added to Params). MSE: per-pixel reconstruction "
             "error, PSNR in dB, KL in nats per image, AU: active latent units (posterior-mean variance "
             "> 0.01). Cost: training FLOPs (torch's FlopCounterMode on the loss, forward and backward, "
             "times the images processed; the 2-stage rows add the second stage's)."),
    ]
    detectable = _detectable_note(rows, columns)
    if detectable:
        general.append(("", detectable))
    if fid_missing:
        general.append(("‡", "FID missing for some runs: " + "; ".join(fid_missing)))
    if any("†" in c.unit for c in columns):
        general.append(("†", "CFD (Fréchet) and CKID (kernel distance) are NOT FID or KID: they use the "
                             f"features of a small classifier trained on {display_name(dataset)} itself, "
                             "comparable only within this table, never with published FIDs."))
    if published:
        general.append(("", "Published (benchmarks/reporting/ledger.toml): FIDs as printed in their papers, never bold, "
                            "± their standard deviation over the paper's trials (not an interval); a row whose "
                            "image count or normalisation differs from the runs' says so in its name. The ledger "
                            "holds each one's table and protocol; each row's note says whether the matching run "
                            "here was measured alike ('comparable') or names the differences."))
    if ref_note:
        general.append(("", ref_note))
    return general


def _detectable_note(rows, columns) -> str | None:
    """Per directed column, the smallest difference between two rows that their seeds detect
    (benchmarks.reporting.stats.detectable_difference) from the within-row std pooled over the table's rows
    (rows without spread left out: benchmarks.reporting.stats.pooled_std); None when no column has one."""
    parts = []
    ns = [c.n for r in rows if r.kind in ("run", "stage2") for c in r.cells.values() if c.n >= 2]
    min_n = min(ns, default=0)
    for col in columns:
        cells = [r.cells[col.key] for r in rows if r.kind in ("run", "stage2") and col.key in r.cells]
        cells = [c for c in cells if c.n >= 2 and c.std is not None]
        if col.better is None or not cells:
            continue
        n = min(c.n for c in cells)  # the fewest seeds a compared row has: the weakest comparison
        delta = detectable_difference(pooled_std([c.std for c in cells], [c.n for c in cells]), n)
        if delta is not None:
            scale = f" ×10^-{col.shift}" if col.shift else ""
            parts.append(f"{col.header} {col.unit}{scale}: {_number(delta * 10.0**col.shift, False, 'plain')}"
                         + (f" ({n} seeds a row)" if n != min_n else ""))
    if not parts:
        return None
    return (f"Smallest true difference between two rows of {min_n} seeds that the seeds detect (two-sided two-sample "
            f"t-test, alpha {ALPHA}, power {POWER}, from the seeds' std pooled over the rows that have a spread; "
            "noncentral t; a smaller gap between two means may be noise): "
            + "; ".join(p.replace("  ", " ") for p in parts) + ".")
