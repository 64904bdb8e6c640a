"""Tables (LaTeX, Markdown), figures and an HTML page from run records, plus the CLI

    python -m benchmarks.report --suite NAME [--runs DIR] [--out DIR]

which reads every record.json under DIR (default runs/NAME/runs) and writes into OUT
(default runs/NAME): table.tex, table.md, runs.csv, curves.png, metrics.png,
tradeoff.png, samples.png, effective_beta.png and report.html (benchmarks/reporting/html.py). NAME is a suite of benchmarks/suites (or a .toml path): its
description, data set, ``reference`` flag and the order of its [[runs]] shape the table.

One function writes a report, :func:`write_report` (the CLI and :func:`report_or_say`, which
the suite runner, cluster array tasks and sweeps call, both use it): it reads every record once
(benchmarks/reporting/frames.py read_runs) and writes the table model (benchmarks/reporting/table.py, its columns
from the one list of metrics, vaes.evaluation.catalog.METRICS) through its renderers
(benchmarks/reporting/render.py), the figures (benchmarks/reporting/figures.py) and the page (benchmarks/reporting/html.py)
into one folder.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

from benchmarks.reporting.figures import label_palette, plot_curves, plot_metrics, plot_samples, plot_tradeoff
from benchmarks.reporting.columns import QUALITY_SETS
from benchmarks.reporting.frames import Runs, read_runs
from benchmarks.reporting.html import write_html
from benchmarks.reporting.render import render_latex, render_markdown
from benchmarks.suite import load_suite
from vaes.cli import dirty_refusal, entry_point, output_refusal, parser
from vaes.schema import record_refusal
from vaes.store import RunFolder, read_index, runs_dir
from benchmarks.reporting.table import Table, build_table, label_order

# ----------------------------------------------------------------------------- the report

@dataclasses.dataclass(frozen=True)
class Report:
    """What :func:`write_report` wrote: {file name: path}, and the table it rendered."""

    files: dict[str, Path]
    table: Table

    def published_lines(self) -> list[str]:
        """One line per published figure beside the table: its FID and comparability verdict."""
        return [f"published: {name}: FID {value:g}; {verdict}" for name, value, verdict in self.table.published]


def write_report(runs: str | Path | Runs, out: str | Path, suite: dict | None = None,
                 sets: str | None = None) -> Report:
    """Write runs.csv, table.tex, table.md, the five figures and report.html into ``out``.

    ``runs`` is a folder searched recursively for record.json files, or the
    :class:`~benchmarks.reporting.frames.Runs` of :func:`~benchmarks.reporting.frames.read_runs` (a test may change
    its frame); either way each record is read once. ``suite`` (the dict of
    benchmarks.suite.load_suite, or any dict with some of name, dataset, description,
    reference, runs, quality_sets) feeds the caption and orders the rows; ``sets`` ('vaebench'
    or 'renorm', default the suite's quality_sets, else 'vaebench') picks the image sets of the
    quality columns (:func:`benchmarks.reporting.table.build_table`).
    """
    runs = runs if isinstance(runs, Runs) else read_runs(runs)
    df, hist = runs.frame, runs.history
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = build_table(df, suite, sets, runs.by_dir)
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
    written.update(write_html(runs, out, table, suite))  # last: it links the figures above
    return Report(written, table)


def _suite_meta(name: str) -> dict:
    """The suite's TOML (benchmarks/suites/NAME.toml or a path) for the caption and row order;
    just its name when there is none (a folder of runs made by hand or by a sweep)."""
    try:
        return load_suite(name)
    except FileNotFoundError as e:
        print(f"note: {e}; the caption names the suite only", file=sys.stderr)
        return {"name": Path(name).stem}


def report_or_say(suite: dict, out: Path) -> None:
    """The report of whatever has finished under OUT/runs, written into OUT (:func:`write_report`)
    and its files named in one line; a report that cannot be made (no finished run, a damaged
    record) is said in one line and never raised: the runs themselves are done and recorded."""
    try:
        report = write_report(runs_dir(out), out, suite)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"report skipped: {type(e).__name__}: {e}", flush=True)
        return
    print("report: " + ", ".join(str(p) for p in report.files.values()))
    for line in report.published_lines():
        print(line)


@entry_point
def main(argv: list[str] | None = None, *, validate_only: bool = False) -> int:
    """CLI: build a suite's report from its records; ``validate_only`` stops after the checks
    (the arguments, the output folder and every record's shape)."""
    p = parser("python -m benchmarks.report", __doc__.split("\n\n")[0])
    p.add_argument("--suite", required=True,
                   help="suite name or .toml path (caption, row order, defaults of --runs and --out)")
    p.add_argument("--runs", help="folder searched for record.json files (default runs/NAME/runs)")
    p.add_argument("--out", help="where tables and figures go (default runs/NAME)")
    p.add_argument("--sets", choices=tuple(QUALITY_SETS),
                   help="image sets of the quality columns: vaebench's own, or the original code's "
                        "renormalised *_renorm sets (default: the suite's quality_sets, else vaebench)")
    p.add_argument("--allow-dirty", action="store_true",
                   help="write into results/ from a tree with uncommitted changes")
    a = p.parse_args(argv)
    try:
        suite = _suite_meta(a.suite)
        name = suite["name"]
        runs = Path(a.runs or runs_dir(Path("runs") / name))
        out = Path(a.out or Path("runs") / name)
        if not runs.is_dir():
            raise FileNotFoundError(f"--runs {runs} is no folder; give the folder a suite wrote "
                                    f"(OUT/runs of python -m benchmarks.run --suite {name} --out OUT)")
        if why := dirty_refusal(out, a.allow_dirty) or output_refusal(out, "--out"):
            raise ValueError(why)
        index = read_index(runs)  # each record read once: checked here, then reported
        for rec, folder in zip(index.records, index.dirs):
            if why := record_refusal(rec, RunFolder(folder).record_path):
                raise ValueError(f"{why}; this record was not written by vaebench as it is: restore it "
                                 "from a copy, or move its run folder out of --runs")
        if validate_only:
            return 0
        report = write_report(read_runs(index), out, suite, a.sets)
        for line in [*map(str, report.files.values()), *report.published_lines()]:
            print(line)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
