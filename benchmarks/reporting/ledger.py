"""The published-numbers ledger (benchmarks/reporting/ledger.toml): load and check it, pick the figures
of a data set, and say whether a run's record was measured under the same protocol.

A published FID means something beside ours only when both were measured alike: the same data
(and JPEG round trip), network, training length, FID engine, image counts, reference split,
pixel normalisation and sampler (docs/evaluation.md, "The originals' evaluation, as options").
:func:`verdict` compares what both sides know and names every difference; a field the paper does not state ("unknown") is never compared, so "comparable" means "no known difference".
"""
from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path
from typing import Any

import pandas as pd

from vaes.data import list_datasets
from vaes.evaluation.catalog import provenance
from vaes.networks import default_network
from vaes.registry import list_variants
from vaes.store import RunFolder

LEDGER_PATH = Path(__file__).with_name("ledger.toml")
UNKNOWN = "unknown"
STAGES = ("first", "two-stage")
# protocol field -> its type when known (every field may also be "unknown")
PROTOCOL_FIELDS: dict[str, type] = {
    "network": str, "network_note": str, "params": int, "latent_dim": int, "epochs": int,
    "batch_size": int, "image_size": int, "fid_engine": str, "fid_weights": str,
    "n_generated": int, "n_real": int, "reference_split": str, "jpeg_quality": int,
    "sample_normalisation": str, "sampler": str, "stage2_variant": str,
}
SOURCE_FIELDS = ("id", "authors", "year", "title", "venue", "arxiv", "table", "read_at", "protocol_source")
# which record FID set shows which sampler (vaes/evaluate.py; the brief's agreed metric names)
SET_SAMPLER = {"samples": "prior", "stage2": "stage2-mean", "stage2_ancestral": "stage2-ancestral",
               "samples_renorm": "prior, renormalised", "stage2_renorm": "stage2-mean, renormalised"}
PARAMS_TOLERANCE = 0.05  # parameter counts within 5% count as the same network size
# labels of the differences, in the order a verdict lists them
DIFFERENCE_LABELS = {
    "dataset": "data set", "image_size": "image size", "jpeg_quality": "JPEG quality (0 = none)",
    "network": "network", "params": "parameters", "latent_dim": "latent dim", "epochs": "epochs",
    "batch_size": "batch", "stage2_variant": "second-stage variant", "sampler": "sampler",
    "sample_normalisation": "sample normalisation", "fid_engine": "FID engine",
    "n_generated": "generated images", "n_real": "real images", "reference_split": "reference split",
}


class LedgerError(ValueError):
    """A malformed ledger: the message names the file, the entry and the field."""


@dataclasses.dataclass(frozen=True)
class Source:
    """A paper and the table its figures come from, with where it was read."""

    id: str
    authors: str
    year: int
    title: str
    venue: str
    arxiv: str
    table: str
    read_at: str
    protocol_source: str

    @property
    def short(self) -> str:
        """'Dai & Wipf 2019', 'Rybkin et al. 2021'."""
        surnames = [a.split()[-1] for a in self.authors.split(",")]
        who = " & ".join(surnames) if len(surnames) <= 2 else f"{surnames[0]} et al."
        return f"{who} {self.year}"


@dataclasses.dataclass(frozen=True)
class Entry:
    """One published figure: FID ``value`` (± ``std`` where given) of ``model`` on ``dataset``,
    its protocol (the source's, with the entry's overrides) and the vaebench row it corresponds
    to (``variant``, ``stage``)."""

    source: Source
    model: str
    dataset: str
    value: float
    std: float | None
    variant: str
    stage: str
    protocol: dict[str, Any]
    table_ref: str = ""             # the entry's own table ('Table 3') where the source spans several
    likelihood: str | None = None   # the counterpart's decoder likelihood where it matters (bernoulli)

    @property
    def table(self) -> str:
        """The paper's table this figure is printed in: 'Table 1'."""
        return self.table_ref or self.source.table.split(" (")[0]

    @property
    def name(self) -> str:
        """The table row's name: 'Dai & Wipf 2019: 2-Stage VAE'."""
        return f"{self.source.short}: {self.model}"

    @property
    def ours(self) -> str:
        """The vaebench row it corresponds to: 'learned_gamma (2-stage)'."""
        return self.variant + (" (2-stage)" if self.stage == "two-stage" else "")


def _check_protocol(protocol: Any, where: str) -> dict[str, Any]:
    if not isinstance(protocol, dict):
        raise LedgerError(f"{where}: field 'protocol' must be a table of protocol fields")
    for key, value in protocol.items():
        if key not in PROTOCOL_FIELDS:
            raise LedgerError(f"{where}: protocol field {key!r} is unknown; the fields are "
                              f"{', '.join(PROTOCOL_FIELDS)}")
        kind = PROTOCOL_FIELDS[key]
        if value != UNKNOWN and not (isinstance(value, kind) and not isinstance(value, bool)):
            raise LedgerError(f"{where}: protocol field {key!r} = {value!r} must be "
                              f"{kind.__name__} or \"unknown\"")
    return dict(protocol)


def _load_source(raw: dict, where: str) -> Source:
    for key in SOURCE_FIELDS:
        value = raw.get(key)
        if key == "year" and not isinstance(value, int):
            raise LedgerError(f"{where}: field 'year' must be an integer, not {value!r}")
        if key != "year" and not (isinstance(value, str) and value.strip()):
            raise LedgerError(f"{where}: field {key!r} is missing or empty (every figure needs its source)")
    protocol = _check_protocol(raw.get("protocol"), f"{where} ({raw['id']})")
    missing = [k for k in PROTOCOL_FIELDS if k not in protocol]
    if missing:
        raise LedgerError(f"{where} ({raw['id']}): protocol lacks {', '.join(missing)} "
                          "(write \"unknown\" where the paper does not say)")
    return Source(**{k: raw[k] for k in SOURCE_FIELDS}), protocol


def _load_entry(raw: dict, where: str, sources: dict) -> Entry:
    name = f"{where} ({raw.get('model')!r}, {raw.get('dataset')!r})"
    if raw.get("source") not in sources:
        raise LedgerError(f"{name}: field 'source' = {raw.get('source')!r} names no [[source]]; "
                          f"known: {', '.join(sources)}")
    source, base = sources[raw["source"]]
    if not (isinstance(raw.get("model"), str) and raw["model"].strip()):
        raise LedgerError(f"{name}: field 'model' is missing or empty")
    if raw.get("dataset") not in list_datasets():
        raise LedgerError(f"{name}: field 'dataset' = {raw.get('dataset')!r} is no registered data set; "
                          f"choose one of {', '.join(list_datasets())}")
    for key in ("value", "std"):
        value = raw.get(key)
        if (key == "value" or value is not None) and not (isinstance(value, (int, float))
                                                          and not isinstance(value, bool) and value >= 0):
            raise LedgerError(f"{name}: field {key!r} = {value!r} must be a non-negative number")
    ours = raw.get("ours")
    if not isinstance(ours, dict) or ours.get("variant") not in list_variants() or ours.get("stage") not in STAGES:
        raise LedgerError(f"{name}: field 'ours' = {ours!r} must be {{ variant = one of "
                          f"{', '.join(list_variants())}, stage = one of {', '.join(STAGES)} }}")
    protocol = {**base, **_check_protocol(raw.get("protocol", {}), name)}
    std = raw.get("std")
    for key in ("table",):
        if key in raw and not (isinstance(raw[key], str) and raw[key].strip()):
            raise LedgerError(f"{name}: field {key!r} = {raw[key]!r} must be a non-empty text")
    likelihood = ours.get("likelihood")
    if likelihood not in (None, "gaussian", "bernoulli"):
        raise LedgerError(f"{name}: ours.likelihood = {likelihood!r} must be gaussian or bernoulli")
    return Entry(source, raw["model"], raw["dataset"], float(raw["value"]),
                 None if std is None else float(std), ours["variant"], ours["stage"], protocol,
                 raw.get("table", ""), likelihood)


def load_ledger(path: str | Path = LEDGER_PATH) -> list[Entry]:
    """Every figure of the ledger, checked; a :class:`LedgerError` names the bad entry and field."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise LedgerError(f"{path}: cannot read the ledger ({err})") from None
    sources: dict[str, tuple[Source, dict]] = {}
    for i, s in enumerate(raw.get("source", [])):
        source, protocol = _load_source(s, f"{path}: [[source]] {i + 1}")
        if source.id in sources:
            raise LedgerError(f"{path}: [[source]] {i + 1}: id {source.id!r} is used twice")
        sources[source.id] = (source, protocol)
    entries = [_load_entry(e, f"{path}: [[entry]] {i + 1}", sources) for i, e in enumerate(raw.get("entry", []))]
    seen = set()
    for e in entries:
        if (e.name, e.dataset) in seen:
            raise LedgerError(f"{path}: {e.name} on {e.dataset} is listed twice")
        seen.add((e.name, e.dataset))
    return entries


def rows_for(dataset: str, entries: list[Entry] | None = None) -> list[Entry]:
    """The ledger's figures for ``dataset``, in file order."""
    return [e for e in (load_ledger() if entries is None else entries) if e.dataset == dataset]


def datasets(entries: list[Entry] | None = None) -> list[str]:
    """The data sets with at least one published figure."""
    return sorted({e.dataset for e in (load_ledger() if entries is None else entries)})


# ----------------------------------------------------------------------------- verdicts

def fid_set(entry: Entry, record: dict) -> str:
    """The record's FID set that shows ``entry``'s row: the first stage's samples, or for a
    two-stage figure the set with the paper's sampler where the record has it."""
    if entry.stage == "first":
        return "samples"
    metrics = record.get("metrics") or {}
    wanted = [s for s, sampler in SET_SAMPLER.items() if sampler == entry.protocol.get("sampler")]
    return next((s for s in wanted if f"fid_{s}" in metrics), "stage2")


def record_protocol(record: dict, set_name: str) -> dict[str, Any]:
    """What a run's record says of the protocol fields (absent ones are left out)."""
    cfg = record.get("config") or {}
    shape = (record.get("data") or {}).get("shape") or []
    two = set_name.startswith("stage2") and bool(cfg.get("two_stage"))
    ours: dict[str, Any] = {
        "dataset": cfg.get("dataset"), "latent_dim": cfg.get("latent_dim"), "epochs": cfg.get("epochs"),
        "batch_size": cfg.get("batch_size"), "jpeg_quality": cfg.get("jpeg_quality", 0),
        # old records have no fid_reference: they measured against held-out images
        "reference_split": {"heldout": "test", "train": "train"}.get(cfg.get("fid_reference", "heldout")),
        "sample_normalisation": "none",  # vaebench never rescales a generated image on its own
        "sampler": SET_SAMPLER.get(set_name), "image_size": shape[-1] if shape else None,
        "stage2_variant": cfg.get("stage2_variant") if two else None,
    }
    network = cfg.get("network")
    if network == "auto" and shape:  # the builder's own rule (vaes.networks.default_network)
        network = default_network(tuple(shape))
    ours["network"] = None if network == "auto" else network
    params = record.get("n_params")
    if params is not None and two:
        stage2 = (record.get("stage2") or {}).get("n_params")
        params = params + stage2 if stage2 is not None else None
    ours["params"] = params
    fid = (record.get("metrics") or {}).get(f"fid_{set_name}")
    if isinstance(fid, dict):
        setup = provenance(record.get("evaluations"), record.get("metrics"), f"fid_{set_name}")
        ours.update(fid_engine=setup.get("engine"), n_generated=fid.get("n_images"),
                    n_real=(setup.get("reference") or {}).get("n"))
    return {k: v for k, v in ours.items() if v is not None}


def _differs(key: str, ours: Any, theirs: Any) -> bool:
    if key == "params":
        return abs(ours - theirs) > PARAMS_TOLERANCE * theirs
    return ours != theirs


def differences(entry: Entry, record: dict) -> list[str]:
    """Every protocol difference both sides know of, as 'label: ours here, theirs published'."""
    set_name = fid_set(entry, record)
    ours = record_protocol(record, set_name)
    theirs = {**entry.protocol, "dataset": entry.dataset}
    out = []
    cfg = record.get("config") or {}
    if cfg.get("variant") != entry.variant:
        out.append(f"variant: {cfg.get('variant')} here, {entry.variant} published")
    if entry.stage == "two-stage" and not cfg.get("two_stage"):
        out.append("no second stage here")
    mine = (cfg.get("options") or {}).get("likelihood", "gaussian")
    if entry.likelihood and mine != entry.likelihood:
        out.append(f"likelihood: {mine} here, {entry.likelihood} published")
    if not isinstance((record.get("metrics") or {}).get(f"fid_{set_name}"), dict):
        out.append(f"no FID (fid_{set_name}) in the run's record")
    for key, label in DIFFERENCE_LABELS.items():
        mine, other = ours.get(key), theirs.get(key)
        if mine is None or other in (None, UNKNOWN) or not _differs(key, mine, other):
            continue
        if key == "network":
            other = f"{other} ({entry.protocol.get('network_note', '')})".replace(" ()", "")
        out.append(f"{label}: {mine} here, {other} published")
    return out


# Without these a published FID cannot be called comparable, however few differences are known:
# FID moves with the network, the engine and (by its bias) the image counts.
ESSENTIAL = ("network", "fid_engine", "n_generated", "n_real")


def unstated(entry: Entry) -> list[str]:
    """The essential protocol fields the source leaves unknown, by their labels."""
    return [DIFFERENCE_LABELS[k] for k in ESSENTIAL if entry.protocol.get(k, UNKNOWN) == UNKNOWN]


def verdict(entry: Entry, record: dict) -> str:
    """'comparable' (every essential field stated and no difference that both sides know of) or
    'not comparable: <differences>', ending with the essential fields the source does not state."""
    diffs = differences(entry, record)
    missing = unstated(entry)
    if missing:
        diffs.append(f"not stated in the source: {', '.join(missing)}")
    return "comparable" if not diffs else "not comparable: " + "; ".join(diffs)


def matching_run(df: pd.DataFrame, entry: Entry) -> pd.Series | None:
    """The finished run of ``df`` (benchmarks.reporting.frames.read_runs(...).frame) that ``entry``'s
    row corresponds to: its variant (a run labelled as the variant first), two-stage where the
    figure is; the lowest seed."""
    fin = df[(df["status"] == "finished") & (df["variant"] == entry.variant)]
    if entry.likelihood and "options" in fin:  # a run with the counterpart's likelihood first
        same = fin["options"].map(lambda o: json.loads(o or "{}").get("likelihood", "gaussian") == entry.likelihood)
        fin = fin[same] if same.any() else fin
    if entry.stage == "two-stage":
        fin = fin[fin["two_stage"].astype(bool)]
    if fin.empty:
        return None
    fin = fin.assign(_own=fin["label"] != entry.variant).sort_values(["_own", "seed"], kind="stable")
    return fin.iloc[0]


def verdicts_for(df: pd.DataFrame, dataset: str, records: dict | None = None) -> list[tuple[Entry, str]]:
    """The ledger's figures for ``dataset`` with each one's verdict against its matching run of
    ``df`` (its record: from ``records``, run_dir -> Record, else read through vaes.store), or
    a sentence saying there is none."""
    out = []
    for entry in rows_for(dataset):
        run = matching_run(df, entry)
        if run is None:
            out.append((entry, f"no finished {entry.ours} run here to compare with"))
            continue
        rec = (records or {}).get(str(run["run_dir"]))
        record = (rec if rec is not None else RunFolder(run["run_dir"]).read()).to_json()
        out.append((entry, f"vs {run['label']}{' (2-stage)' if entry.stage == 'two-stage' else ''}: "
                           + verdict(entry, record)))
    return out
