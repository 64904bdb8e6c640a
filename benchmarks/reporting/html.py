"""report.html: a suite's report as one static page, opened from disk and shared as a folder.

The table is the Table model of benchmarks/reporting/table.py (the same rows, cells, bold flags, caption
and notes as table.md and table.tex, so the published-numbers verdicts come with it); the
figures are the report's PNGs beside it plus effective_beta.png (vaes.balance); each run
shows its grids, its training curves as a small inline SVG (no file per run, so the tree stays
small) and its effective beta, and links to its record.json.

Offline by construction: no script, no web font, no CDN; every image is a RELATIVE link (a
folder moved or zipped keeps working; nothing embedded, so the HTML stays a few tens of kB).
The template (benchmarks/reporting/templates/report.html.j2) is rendered by Jinja2 with autoescaping on:
labels, notes and failure reasons are text, never markup.
"""
from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path, PurePath
from urllib.parse import quote

import jinja2
import pandas as pd

from benchmarks.reporting.frames import Runs, record_label
from benchmarks.reporting.render import _cell_text, _headers, row_name
from benchmarks.reporting.table import Table, label_order
from vaes.balance import effective_beta, plot_effective_beta
from vaes.store import RunFolder

TEMPLATE = "report.html.j2"
# the report's figures, in the order the page shows them (written by benchmarks.report)
FIGURES = (("curves.png", "Training curves"), ("metrics.png", "Metrics per run"),
           ("tradeoff.png", "Reconstruction against generation"), ("samples.png", "Samples per label"),
           ("effective_beta.png", "Effective beta over training (k gamma², against ½ SSE; stage 2 dashed)"))
# a run folder's grids (vaes.store.GRIDS), in the order the page shows them, with their captions
GRIDS = (("samples", "samples"), ("samples_stage2", "two-stage samples"),
         ("samples_renorm", "samples, renormalised"),
         ("samples_stage2_renorm", "two-stage samples, renormalised"),
         ("reconstructions", "reconstructions (originals above)"))
# the curves of a run's inline SVG: history term, its title, log scale
CURVE_TERMS = (("loss", "loss", False), ("mse", "MSE", True), ("kl", "KL (nats)", False),
               ("gamma", "decoder gamma", True))
SVG_W, SVG_H, PAD = 160, 64, 4  # one panel of the inline SVG, in its own units


@dataclasses.dataclass(frozen=True)
class Panel:
    """One small curve of a run's SVG: its title, last value and polylines (stage 1, stage 2)."""
    title: str
    last: str
    lines: tuple[tuple[int, str], ...]  # (stage, 'x,y x,y ...') in the panel's units


@dataclasses.dataclass(frozen=True)
class RunView:
    """What the page shows of one run."""
    anchor: str
    label: str
    seed: str
    status: str
    reason: str
    record: str                        # relative link to record.json
    grids: tuple[tuple[str, str], ...]  # (relative link, caption)
    panels: tuple[Panel, ...]
    balance: tuple[str, ...]           # one sentence per stage


def _link(target: Path, out: Path) -> str:
    """``target`` as a relative URL from the folder ``out`` (percent-encoded, '/' separators)."""
    rel = PurePath(os.path.relpath(Path(target).resolve(), out.resolve()))
    return "/".join(quote(part) for part in rel.parts)


def _fmt(x: float) -> str:
    return f"{x:.3g}" if math.isfinite(x) else str(x)


def _panels(hist: pd.DataFrame) -> tuple[Panel, ...]:
    """Small curves of one run's history (both stages on one x axis of epochs)."""
    panels = []
    for term, title, log in CURVE_TERMS:
        h = hist[["stage", "epoch", term]].dropna()
        if log:
            h = h[h[term] > 0]
        if h.empty:
            continue
        y = h[term].map(math.log10) if log else h[term]
        x0, x1 = h["epoch"].min(), max(h["epoch"].max(), h["epoch"].min() + 1)
        y0, y1 = y.min(), y.max()
        y1 = y1 if y1 > y0 else y0 + 1  # a flat curve sits in the middle of an honest range
        lines = []
        for stage, g in h.groupby("stage", sort=True):
            gy = y[g.index]
            pts = " ".join(f"{PAD + (e - x0) / (x1 - x0) * (SVG_W - 2 * PAD):.1f},"
                           f"{SVG_H - PAD - (v - y0) / (y1 - y0) * (SVG_H - 2 * PAD):.1f}"
                           for e, v in zip(g["epoch"], gy))
            lines.append((int(stage), pts))
        last = h[h["stage"] == h["stage"].min()][term].iloc[-1]
        panels.append(Panel(title + (" (log)" if log else ""), _fmt(float(last)), tuple(lines)))
    return tuple(panels)


def _curves(rec) -> list | str:
    """The record's effective-beta curves (vaes.balance), or why they cannot be computed from it:
    a record that lacks what the conversion needs (a hand-made one without latent_dim, say)
    must not cost the suite its report."""
    try:
        return effective_beta(rec)
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
        return f"not computable from this record ({type(e).__name__}: {e})"


def _balance(rec) -> tuple[str, ...]:
    """One sentence per stage of a record: the effective beta's first and last value, or why there is none."""
    curves = _curves(rec)
    if isinstance(curves, str):
        return (f"effective beta {curves}",)
    out = []
    for c in curves:
        stage = "second stage" if c.stage == 2 else "first stage"
        if c.beta:
            out.append(f"{stage} ({c.variant}): beta {_fmt(c.beta[0])} at epoch {c.epochs[0]} → "
                       f"{_fmt(c.beta[-1])} at epoch {c.epochs[-1]}; {c.note}")
        else:
            out.append(f"{stage} ({c.variant}): no effective beta; {c.note}")
    return tuple(out)


def run_views(runs: Runs, out: Path, order: list[str]) -> list[RunView]:
    """Every run of ``runs.frame`` (label order, then seed) as the page shows it."""
    df, hist = runs.frame, runs.history
    views = []
    rank = {label: i for i, label in enumerate(order)}
    for _, r in df.sort_values(["label", "seed"], key=lambda s: s.map(rank) if s.name == "label" else s).iterrows():
        run_dir = Path(r["run_dir"])
        folder = RunFolder(run_dir)
        mine = hist[hist["run_id"] == r["run_id"]] if len(hist) else hist
        reason = r.get("reason")
        views.append(RunView(
            anchor="run-" + "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in str(r["run_id"])),
            label=str(r["label"]), seed=str(r["seed"]), status=str(r["status"]),
            reason=" ".join(str(reason).split()) if isinstance(reason, str) else "",
            record=_link(folder.record_path, out),
            grids=tuple((_link(folder.grid(g), out), caption) for g, caption in GRIDS if folder.grid(g).is_file()),
            panels=_panels(mine) if len(mine) else (),
            balance=_balance(runs.record(run_dir))))
    return views


def table_view(table: Table) -> dict:
    """The Table as header texts and rows of (text, bold) cells, formatted by the Markdown
    renderer's functions (benchmarks/reporting/render.py) so that every number reads the same."""
    rows = []
    for row in table.rows:
        if row.kind == "incomplete":
            cells = [(_cell_text(row.cells["params"], table.columns[0], "html"), False), (row.status, True)]
            cells += [("", False)] * (len(table.columns) - 2)
        else:
            cells = [(_cell_text(dataclasses.replace(row.cells[c.key], bold=False), c, "html"),
                      row.cells[c.key].bold) if c.key in row.cells else ("", False) for c in table.columns]
        rows.append({"name": row_name(row), "kind": row.kind, "notes": row.notes, "cells": cells})
    first = next((i for i, r in enumerate(table.rows) if r.kind == "reference"), None)
    return {"headers": _headers(table, "md"), "rows": rows, "first_reference": first}


def environment() -> jinja2.Environment:
    """Jinja2 with the package's templates, autoescaping every template (not only *.html)."""
    return jinja2.Environment(loader=jinja2.PackageLoader("benchmarks.reporting", "templates"),
                              autoescape=True, undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)


def write_html(runs: Runs, out_dir: str | Path, table: Table, suite: dict | None = None) -> dict[str, Path]:
    """Write effective_beta.png and report.html into ``out_dir`` (where benchmarks.report has
    written the other figures) from the runs of ``runs.frame``, whose records ``runs`` already
    holds (none is read again); returns {file name: path}."""
    out = Path(out_dir)
    order = label_order(runs.frame, suite)
    views = run_views(runs, out, order)
    records = [runs.record(d) for d in runs.frame["run_dir"]]
    records = [r for r in records if not isinstance(_curves(r), str)]  # each run's section says why
    plot_effective_beta(records, out / "effective_beta.png", [record_label(r) for r in records])
    figures = [(quote(name), title) for name, title in FIGURES if (out / name).is_file()]
    html = environment().get_template(TEMPLATE).render(
        title=f"vaebench: {table.name}", table=table, view=table_view(table), figures=figures,
        runs=views, svg=dict(w=SVG_W, h=SVG_H))
    (out / "report.html").write_text(html, encoding="utf-8")
    return {"effective_beta.png": out / "effective_beta.png", "report.html": out / "report.html"}
