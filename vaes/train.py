"""The command line of one run: config in (key=value), record out.

    python -m vaes.train variant=balanced dataset=digits epochs=5 seed=0 out=runs/demo

writes ``out/record.json``. Running the same command again resumes from the checkpoint
(written every ``checkpoint_every`` epochs and on SIGTERM / SIGUSR1, which SLURM sends
before a time limit or preemption), or returns the finished record untouched. The run
itself is vaes/run.py (``vaes.run.run(cfg)`` from Python), its loop vaes/fit.py.
An ``out`` that holds another run (another variant, data, seed, ... : vaes.config.identity)
is refused, and nothing is written there.
"""
from __future__ import annotations

import dataclasses
import sys

from vaes.cli import EXIT_STATUSES, entry_point, output_refusal, refuse
from vaes.config import field_help, parse_overrides
from vaes.evaluation.catalog import METRICS, value
from vaes.evaluation.quality import HEADLINE_SETS
from vaes.registry import list_variants, variant_options
from vaes.run import run
from vaes.store import FolderTaken, RunFolder


def _help() -> str:
    lines = [__doc__.strip(), "", "usage: python -m vaes.train [key=value ...]", "", EXIT_STATUSES, "",
             "config fields (key=value; unset fields follow the data set's protocol):"]
    for name, default, comment in field_help():
        lines.append(f"  {name:<18} {default:<18} {comment}")
    lines += ["", "variant options (key=value, for the chosen variant):"]
    for v in list_variants():
        for f in dataclasses.fields(variant_options(v)):
            lines.append(f"  {v + '.' + f.name:<26} {f.default!r}")
    return "\n".join(lines)


@entry_point
def main(argv: list[str] | None = None, *, validate_only: bool = False) -> int:
    """Command line: key=value overrides; prints where the record is and its status.
    ``validate_only`` parses and checks the arguments and stops (exit 0 or 2): the path the
    property-based tests take (tests/test_cli_properties.py)."""
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(_help())
        return 0
    try:
        cfg = parse_overrides(argv)
    except (ValueError, KeyError, TypeError) as e:
        return refuse(e)
    if why := output_refusal(cfg.out, "out"):
        return refuse(why)
    if validate_only:
        return 0
    try:
        rec = run(cfg)
    except FolderTaken as e:
        return refuse(e)
    print(f"{rec.status}: {RunFolder(cfg.out).record_path}"
          + (f"  reason: {rec.reason}" if rec.reason else "")
          + "".join(f"  {k}={v:.4g}" for k in headline_keys(rec.metrics) if (v := value(rec.metrics, k)) is not None))
    return {"finished": 0, "interrupted": 3}.get(rec.status, 1)


def headline_keys(metrics: dict | None) -> list[str]:
    """The record keys a finished run's line shows, in the catalog's order: every single-number
    metric a table can show, and the per-set ones of the headline sets; record.json has them all."""
    keys = []
    for m in METRICS:
        if m.record and m.field == "value" and m.table is not None:
            keys += [f"{m.key}_{s}" for s in HEADLINE_SETS] if m.per_set else [m.key]
    return [k for k in keys if k in (metrics or {})]


if __name__ == "__main__":
    sys.exit(main())
