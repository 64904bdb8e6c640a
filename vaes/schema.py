"""The shape of a run record's parts, checked where a command reads records it did not write
(benchmarks.report, vaes.balance --run): a record that does not fit is refused naming its file,
instead of failing deep inside a table or a plot. Unknown extra fields are allowed (a newer or
older vaebench adds or drops some); known ones must have their types.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from vaes.config import from_dict
from vaes.evaluation.catalog import declaration
from vaes.records import Record


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _numbers(d: Any, *, text_ok: bool = False) -> bool:
    """A mapping of numbers or None (and strings where ``text_ok``: cost's notes)."""
    return isinstance(d, dict) and all(v is None or _number(v) or (text_ok and isinstance(v, str)) for v in d.values())


def _history(h: Any) -> str | None:
    """Why ``h`` is not a history (a list of epochs: a whole 'epoch' and numbers), or None."""
    if not isinstance(h, list):
        return f"holds {type(h).__name__}, not a list of epochs"
    for i, row in enumerate(h):
        if not (_numbers(row) and _whole(row.get("epoch"))):
            return f"epoch {i + 1} is {row!r:.60}, not an object of numbers with a whole 'epoch'"
    return None


def _metrics(metrics: Any) -> str | None:
    """Why a declared metric's entry is not one (an object whose numbers are numbers or None), or None.
    Metrics no declaration knows are the reader's to show as they are."""
    for key, entry in (metrics or {}).items() if isinstance(metrics, dict) else ():
        m = declaration(key)
        if m is None:
            continue
        if not isinstance(entry, dict):
            return f"{key!r} is {entry!r:.60}, not an object"
        bad = [f for f in ("value", "precision", "recall", "std", "subset_size", "n_images")
               if entry.get(f) is not None and not _number(entry[f])]
        if bad:
            return f"{key!r} has {bad[0]} {entry[bad[0]]!r:.60}, not a number"
    return None


# part -> (what it must be, its check); None always passes (an optional part not reached)
PARTS = {
    "seed": ("a whole number", _whole), "n_params": ("a whole number", _whole),
    "gamma_ratio": ("a number", _number), "run_id": ("a string", lambda v: isinstance(v, str)),
    "metrics": ("an object", lambda v: isinstance(v, dict)),
    "evaluations": ("an object of objects", lambda v: isinstance(v, dict) and all(isinstance(e, dict) for e in v.values())),
    "timings": ("an object of numbers", _numbers),
    "cost": ("an object of numbers and notes", lambda v: _numbers(v, text_ok=True)),
    "data": ("an object with a list 'shape' of whole numbers and whole counts", lambda v: isinstance(v, dict) and (
        v.get("shape") is None or (isinstance(v["shape"], list) and all(_whole(x) for x in v["shape"])))
        and all(v.get(k) is None or _whole(v[k]) for k in ("n_train", "n_heldout"))),
    "stage2": ("an object (n_params, history, train_seconds, gamma_ratio)", lambda v: isinstance(v, dict) and
               _numbers({k: v.get(k) for k in ("n_params", "train_seconds", "gamma_ratio")})),
}


def record_refusal(rec: Record, path: str | Path, names: tuple[str, ...] = ("variant", "dataset")) -> str | None:
    """Why the record read from ``path`` does not have a record's shape, or None; ``names``: the
    config fields the reader needs as names."""
    for name, (what, ok) in PARTS.items():
        value = getattr(rec, name)
        if value is not None and not ok(value):
            return f"{path}: its {name!r} is {value!r:.60}, not {what}"
    why = _metrics(rec.metrics)
    if why:
        return f"{path}: its metric {why}"
    for name, history in (("history", rec.history), ("stage2 history", (rec.stage2 or {}).get("history"))):
        why = history is not None and _history(history)
        if why:
            return f"{path}: its {name} {why}"
    bad = [k for k in names if not isinstance(rec.config.get(k), str)]
    if bad:
        return f"{path}: its config's {' and '.join(bad)} is {rec.config.get(bad[0])!r:.40}, not a name"
    try:  # the config read back passes the typed check every config passes, however it arrives
        from_dict(rec.config, f"{path}, its config")
    except (ValueError, TypeError) as e:
        return str(e)
    label = rec.meta.get("label")
    return f"{path}: its label is {label!r:.40}, not a string" if label is not None and not isinstance(label, str) else None
