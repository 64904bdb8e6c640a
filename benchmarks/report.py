"""Tables (LaTeX, Markdown) and figures from run records: pure functions of the frames of
benchmarks/frames.py, plus the CLI

    python -m benchmarks.report --suite NAME [--runs DIR] [--out DIR]

which reads every record.json under DIR (default runs/NAME/runs) and writes into OUT
(default runs/NAME): table.tex, table.md, runs.csv, curves.png, metrics.png,
tradeoff.png, samples.png, effective_beta.png and report.html (benchmarks/html.py). NAME is a suite of benchmarks/suites (or a .toml path): its
description, data set, ``reference`` flag and the order of its [[runs]] shape the table.

The report is three modules: the table model (benchmarks/table.py), its renderers
(benchmarks/render.py) and the figures (benchmarks/figures.py); this one writes them into a
folder. Their public names are re-exported here.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd

from benchmarks.figures import label_palette, plot_curves, plot_metrics, plot_samples, plot_tradeoff
from benchmarks.frames import load_histories, load_records
from benchmarks.html import write_html
from benchmarks.render import render_latex, render_markdown
from benchmarks.suite import load_suite
from vaes.cli import dirty_refusal, parser
from benchmarks.table import build_table, label_order

# ----------------------------------------------------------------------------- the report

def make_report(df: pd.DataFrame, hist: pd.DataFrame, out_dir: str | Path,
                suite: dict | None = None, sets: str | None = None) -> dict[str, Path]:
    """Write runs.csv, table.tex, table.md, the five figures and report.html into ``out_dir``.

    ``df`` and ``hist`` come from :func:`benchmarks.frames.load_records` and
    :func:`~benchmarks.frames.load_histories`; ``suite`` (the dict of
    benchmarks.suite.load_suite, or any dict with some of name, dataset, description,
    reference, runs, quality_sets) feeds the caption and orders the rows; ``sets`` ('vaebench'
    or 'renorm', default the suite's quality_sets, else 'vaebench') picks the image sets of the
    quality columns (:func:`benchmarks.table.build_table`). Returns {file name: path}.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = build_table(df, suite, sets)
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
    written.update(write_html(df, hist, out, table, suite))  # last: it links the figures above
    return written


def report_folder(runs_dir: str | Path, out_dir: str | Path, suite: dict | None = None,
                  sets: str | None = None) -> list[Path]:
    """Read every record under ``runs_dir`` and write the report into ``out_dir`` (see
    :func:`make_report`); returns the files written. What benchmarks.run calls after a suite."""
    return list(make_report(load_records(runs_dir), load_histories(runs_dir), out_dir, suite, sets).values())


def _suite_meta(name: str) -> dict:
    """The suite's TOML (benchmarks/suites/NAME.toml or a path) for the caption and row order;
    just its name when there is none (a folder of runs made by hand or by a sweep)."""
    try:
        return load_suite(name)
    except FileNotFoundError as e:
        print(f"note: {e}; the caption names the suite only", file=sys.stderr)
        return {"name": Path(name).stem}


def report_or_say(suite: dict, out: Path) -> None:
    """:func:`make_suite_report`, where a report that cannot be made (no finished run, a damaged
    record) is said in one line and never raised: the runs themselves are done and recorded."""
    try:
        make_suite_report(suite, out)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"report skipped: {type(e).__name__}: {e}", flush=True)


def make_suite_report(suite: dict, out: Path) -> None:
    """Tables and figures of whatever has finished under OUT/runs."""
    paths = report_folder(out / "runs", out, suite)
    print("report: " + ", ".join(str(p) for p in paths))


def main(argv: list[str] | None = None, *, validate_only: bool = False) -> int:
    """CLI: build a suite's report from its records; ``validate_only`` stops after the checks."""
    p = parser("python -m benchmarks.report", __doc__.split("\n\n")[0])
    p.add_argument("--suite", required=True,
                   help="suite name or .toml path (caption, row order, defaults of --runs and --out)")
    p.add_argument("--runs", help="folder searched for record.json files (default runs/NAME/runs)")
    p.add_argument("--out", help="where tables and figures go (default runs/NAME)")
    p.add_argument("--sets", choices=("vaebench", "renorm"),
                   help="image sets of the quality columns: vaebench's own, or the original code's "
                        "renormalised *_renorm sets (default: the suite's quality_sets, else vaebench)")
    a = p.parse_args(argv)
    try:
        suite = _suite_meta(a.suite)
        name = suite["name"]
        runs = Path(a.runs or Path("runs") / name / "runs")
        out = Path(a.out or Path("runs") / name)
        for path in report_folder(runs, out, suite, a.sets):
            print(path)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
