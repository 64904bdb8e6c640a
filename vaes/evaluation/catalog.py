"""Every metric a run record holds, declared once, and the record's form of them.

A record keeps two things apart (``Record.metrics`` and ``Record.evaluations``):

- a **metric entry** per metric and image set: its number (``value``; precision/recall have
  ``precision`` and ``recall``), optionally its spread (``std``) and subset size, the images it
  was measured on (``n_images``), a ``missing`` reason when it could not be had, and
  ``evaluation``: the name of the evaluation it came from;
- an **evaluation** per way of measuring, written once: :data:`EVALUATIONS` says what each
  holds (Inception: engine and version, weights and their hash, the reference set with its
  split, count and hash, resize, JPEG quality; the classifier; the likelihood bound; the
  renormalisation; the held-out pass).

:data:`METRICS` declares every metric: the record key (a per-set family is ``KEY_SET``), the
evaluation it belongs to, and how a report shows it (table column, figure panel). The record's
form (:func:`record_form`), the frames of a report, its table, its figures and the HTML page
all read it, so a new metric is one :class:`Metric` here, plus the code that computes it.

The evaluation code returns what it measured with its setup beside each number (a standalone
``compute_inception_metrics`` call must say how its FID was made); :func:`record_form` moves
that setup into the evaluations. Records written before this form hold exactly that output,
so the same function migrates them (``vaes.records.Record.from_json``).
"""
from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

FORMAT = 2  # the record's metrics form; records without a ``format`` field are the older form 1

# The evaluations a metric can come from, and what each one's provenance holds.
EVALUATIONS = {
    "heldout": "the model's own loss on the held-out images: n_images",
    "likelihood": "the importance-weighted bound: k samples, n_images held-out images, bpd_levels, the decoder "
                  "std (gamma) and where it came from (gamma_source)",
    "classifier": "the data set's own classifier: its held-out accuracy, the real images (reference: n), KID's "
                  "subsets, precision/recall's k, jpeg_quality",
    "inception": "Inception-v3 features: engine and engine_version, weights (source, sha256), resize, extractor, "
                 "threads, the reference set (dataset, split, n, shape, sha256), KID's subsets, precision/recall's "
                 "k, jpeg_quality (without weights only the engine: each entry then says why it is missing)",
    "renorm": "the original code's renormalisation of the *_renorm sets (vaes.evaluation.renorm)",
}

# Fields of a metric entry besides its numbers; everything else an evaluation's output puts
# beside a number is the evaluation's setup and goes into its provenance (an FID's reference
# repeats the engine, weights and resize of the FID itself: those copies are not kept twice).
ENTRY_FIELDS = ("std", "subset_size", "n_images", "missing")


@dataclasses.dataclass(frozen=True)
class Metric:
    """One metric: its record key, its evaluation, and how a report shows it.

    ``key`` is the record key, or with ``per_set`` a family whose keys are ``{key}_{SET}`` for
    each image set (fid_samples, kid_recon). ``field`` is the entry's number this declaration
    reads: 'value', or 'precision' / 'recall' of a precision/recall entry (two declarations of
    one key). Report: ``short`` heads the table column (for a per-set metric, the line under
    'Samples' / 'Recon.'), ``unit`` is its second header line; ``title`` is the figure panel's
    (a per-set one gets ': samples ↓' and the like added), '' leaves it out of the figure;
    ``table``: shown 'always', only where 'recorded' by some finished run, or never (None);
    per-set metrics are shown where recorded. ``spread``: its entry's std is a one-run spread
    (KID's over subsets) that a single seed's cell shows; ``recon``: also a reconstruction
    column (the lead Inception distance and CFD only). ``record``: False for a report column
    computed from another part of the record (the training cost).
    """

    key: str
    evaluation: str | None
    short: str = ""
    title: str = ""
    better: str | None = None  # 'lower', 'higher' or None (never bolded, no arrow)
    unit: str = ""
    per_set: bool = False
    field: str = "value"
    spread: bool = False
    recon: bool = False
    integer: bool = False  # counts (active units): no decimals when the mean is whole
    table: str | None = "always"
    record: bool = True

    def column(self, image_set: str | None = None) -> str:
        """The frame column of this metric (for a per-set one, of ``image_set``)."""
        key = f"{self.key}_{image_set}" if self.per_set else self.key
        return key if self.field == "value" else f"{key}_{self.field}"


# Every metric, in the report's display order. KID and FID swap where FID leads
# (benchmarks.reporting.columns.lead_with_kid). The classifier's distances are never called FID or KID.
METRICS = (
    Metric("kid", "inception", "KID", "KID", "lower", per_set=True, spread=True, recon=True),
    Metric("fid", "inception", "FID", "FID", "lower", per_set=True, recon=True),
    Metric("prc", "inception", "Prec.", "precision", "higher", per_set=True, field="precision"),
    Metric("prc", "inception", "Rec.", "recall", "higher", per_set=True, field="recall"),
    Metric("cfd", "classifier", "CFD†", "CFD (classifier, not FID)", "lower", per_set=True, recon=True),
    Metric("ckid", "classifier", "CKID†", "CKID (classifier, not KID)", "lower", per_set=True, spread=True),
    Metric("cprc", "classifier", field="precision", per_set=True, table=None),
    Metric("cprc", "classifier", field="recall", per_set=True, table=None),
    Metric("recon_mse", "heldout", "MSE", "reconstruction MSE ↓", "lower"),
    Metric("psnr", "heldout", "PSNR", "PSNR (dB) ↑", "higher", "dB"),
    # -L_1 on NLL_K's images with NLL_K's decoder std; records without it show neg_elbo (all
    # held-out images, the training-time std), and a note says the two are not on one footing
    Metric("iw_elbo", "likelihood", "−ELBO", "−ELBO (nats)", "lower", "nats", table="recorded"),
    Metric("neg_elbo", "heldout", "−ELBO", "−ELBO, all held-out (nats)", "lower", "nats", table="recorded"),
    Metric("iw_nll", "likelihood", "NLL_K", "IW bound NLL_K (nats)", "lower", "nats", table="recorded"),
    Metric("iw_bpd", "likelihood", "NLL_K", "IW bound (bits/dim)", "lower", "bpd", table="recorded"),
    Metric("iw_elbo_bpd", "likelihood", table=None),
    Metric("kl", "heldout", "KL", "KL (nats)", unit="nats"),
    Metric("active_units", "heldout", "AU", "active units", integer=True),
    # the variant's own decoder std at the end of training, and the spread of its prior samples
    Metric("gamma", None, "", "γ (final)", table=None),
    Metric("sample_spread", None, table=None),
    # training FLOPs (FlopCounterMode) in TFLOP, from the record's cost; both stages on 2-stage rows
    Metric("train_tflop", None, "Cost", "", unit="TFLOP", record=False),
)

# Keys of an evaluation's output that are its setup, not a metric: raw key -> (evaluation, field).
SETUP_KEYS = {
    "likelihood_gamma": ("likelihood", "gamma"), "likelihood_gamma_source": ("likelihood", "gamma_source"),
    "iw_k": ("likelihood", "k"), "iw_images": ("likelihood", "n_images"), "bpd_levels": ("likelihood", "bpd_levels"),
    "heldout_images": ("heldout", "n_images"), "classifier_accuracy": ("classifier", "accuracy"),
    "classifier_reference_n": ("classifier", "reference_n"),
    "iw_gamma": ("likelihood", "gamma"),  # the same std under a second name (older records have only this one)
}

# moved from an entry into its evaluation: entry field -> provenance field
_ENTRY_SETUP = {"subsets": "kid_subsets", "k": "prc_k"}
# an Inception FID's setup; its reference names the images only (engine and weights are the evaluation's)
_FID_SETUP = ("engine", "engine_version", "resize", "weights")
_REFERENCE_FIELDS = ("dataset", "split", "n", "shape", "sha256")


def declaration(key: str) -> Metric | None:
    """The declaration of record key ``key`` (fid_samples -> the fid family), or None. METRICS is
    read at each call, so a declaration added to it is known at once."""
    stem, _, image_set = key.partition("_")
    return next((m for m in METRICS if m.record and (m.key == key and not m.per_set
                                                     or m.per_set and image_set and m.key == stem)), None)


def record_form(raw: dict, *, context: dict | None = None, strict: bool = True) -> tuple[dict, dict]:
    """(metrics, evaluations) of a record from an evaluation's output ``raw``: each number a
    metric entry naming its evaluation, each evaluation's setup written once.

    ``context`` adds provenance the output does not carry: ``jpeg_quality`` (of the images both
    Inception and the classifier saw) and ``n_heldout`` (the held-out pass's images, where the
    output does not say). ``strict``: a key no :class:`Metric` declares, or a field of an entry
    that is neither a number of it nor its evaluation's setup, raises ValueError (writing a
    record); otherwise it is kept as it is (reading an old one). Two sets
    of one evaluation that disagree on its setup raise ValueError: a record has one of each.
    """
    metrics: dict = {}
    evaluations: dict = {}

    def setup(name: str, field: str, value: Any, key: str) -> None:
        prov = evaluations.setdefault(name, {})
        if field in prov and prov[field] != value and not (_nan(prov[field]) and _nan(value)):
            raise ValueError(f"metric {key!r}: its {name} evaluation's {field} is {value!r}, another set's "
                             f"{prov[field]!r}; one record holds one {name} evaluation")
        prov[field] = value

    for key, value in raw.items():
        if key in SETUP_KEYS:
            setup(*SETUP_KEYS[key], value, key)
            continue
        if key == "renorm":
            if not isinstance(value, dict):
                raise ValueError(f"'renorm' is {value!r:.60}, not the renormalisation's object of numbers")
            evaluations["renorm"] = copy.deepcopy(value)
            continue
        m = declaration(key)
        if m is None:
            if strict:
                raise ValueError(f"metric {key!r} is declared nowhere: add a Metric to "
                                 "vaes.evaluation.catalog.METRICS (its evaluation, how a report shows it)")
            metrics[key] = value
            continue
        entry: dict = {}
        if isinstance(value, dict):
            for field, v in value.items():
                if field in ("value", "precision", "recall") or field in ENTRY_FIELDS:
                    entry[field] = v
                elif field in _ENTRY_SETUP:
                    setup(m.evaluation, _ENTRY_SETUP[field], v, key)
                elif field == "reference" and isinstance(v, dict):
                    for ref_field, ref_value in v.items():
                        if ref_field in _REFERENCE_FIELDS:
                            setup(m.evaluation, f"reference_{ref_field}", ref_value, key)
                        elif ref_field in ("extractor", "threads"):
                            setup(m.evaluation, ref_field, ref_value, key)
                elif field in _FID_SETUP:
                    setup(m.evaluation, field, v, key)
                elif field != "evaluation" and strict:
                    raise ValueError(f"metric {key!r}: field {field!r} is neither an entry field nor a known "
                                     "part of its evaluation's setup (vaes.evaluation.catalog)")
                elif field != "evaluation":  # an older record's field this version does not know: kept
                    entry[field] = v
        else:
            entry["value"] = value
        if m.evaluation is not None:
            entry["evaluation"] = m.evaluation
            evaluations.setdefault(m.evaluation, {})
        metrics[key] = entry
    context = {k: v for k, v in (context or {}).items() if v is not None}
    for name in ("inception", "classifier"):
        if name in evaluations and "jpeg_quality" in context:
            evaluations[name].setdefault("jpeg_quality", context["jpeg_quality"])
    if "heldout" in evaluations and "n_heldout" in context:
        evaluations["heldout"].setdefault("n_images", context["n_heldout"])
    for name, prov in evaluations.items():
        evaluations[name] = _nest(prov)
    return metrics, evaluations


def _nan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _nest(prov: dict) -> dict:
    """``reference_*`` fields as one ``reference`` object, in the order of _REFERENCE_FIELDS."""
    ref = {f: prov.pop(f"reference_{f}") for f in _REFERENCE_FIELDS if f"reference_{f}" in prov}
    return {**prov, "reference": ref} if ref else prov


def value(metrics: dict | None, key: str, field: str = "value") -> float | None:
    """The number ``field`` of metric ``key`` as a float; None when absent or None."""
    entry = (metrics or {}).get(key)
    v = entry.get(field) if isinstance(entry, dict) else entry if field == "value" else None
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def provenance(evaluations: dict | None, metrics: dict | None, key: str) -> dict:
    """The setup of the evaluation metric ``key`` came from ({} when it names none)."""
    entry = (metrics or {}).get(key)
    name = entry.get("evaluation") if isinstance(entry, dict) else None
    return (evaluations or {}).get(name) or {}
