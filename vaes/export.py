"""A finished run as a folder in the Hugging Face Hub's model-card convention, made offline.

    python -m vaes.export RUN_DIR OUT [--n 64] [--seed 0] [--push USER/NAME]

OUT gets README.md (YAML front matter: library_name, tags, datasets and the metrics in the
Hub's ``model-index`` form, each named with its protocol: engine, image counts, reference
split), config.json (the resolved config), record.json (the run's record: history, metrics),
model.safetensors (the first stage's weights and buffers), stage2.safetensors for a two-stage
run, and samples.png. ``vaes.load_run(OUT)`` loads it as it loads the run folder.

OUT is written as a staging folder beside it, renamed at the end: it is complete or absent.
An existing non-empty OUT is refused. ``--push`` uploads OUT to the Hub afterwards; it needs
huggingface_hub (pip install 'vaebench[hub]') and a token (HF_TOKEN or `hf auth login`), and
refuses before anything is written or any connection is made where either is missing or
HF_HUB_OFFLINE is set. Exit status 1 here means the push failed; the local export is complete.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file
from torchvision.utils import save_image

from vaes import cli
from vaes.evaluation.catalog import provenance
from vaes.load import RunNotLoadable, load_run
from vaes.records import _umask, versions
from vaes.store import RunFolder

TASK = {"type": "unconditional-image-generation", "name": "Unconditional image generation"}
# what each image set of a record is, in words (the agreed SET names of the metric keys)
SETS = {"samples": "first-stage samples, z ~ N(0, I)",
        "stage2": "two-stage samples, z = decoder2(u) (Asperti & Trentin)",
        "stage2_ancestral": "two-stage samples, z = decoder2(u) + gamma_z eps (Dai & Wipf)",
        "recon": "reconstructions, decode(mu(x)) of held-out images",
        "recon_sample": "reconstructions, decode(z), z ~ q(z|x), of held-out images",
        "samples_renorm": "first-stage samples, renormalised prior", "stage2_renorm": "two-stage samples, renormalised",
        "recon_renorm": "reconstructions rescaled to the data's pixel spread"}
# held-out scalars: (Hub metric type, words)
SCALARS = {"recon_mse": ("mse", "mean squared error per pixel in [0, 1]"), "psnr": ("psnr", "PSNR in dB"),
           "kl": ("kl", "KL(q(z|x) || p(z)) in nats"), "neg_elbo": ("neg_elbo", "negative ELBO in nats"),
           "active_units": ("active_units", "active latent units"),
           "iw_nll": ("nll", "importance-weighted NLL in nats"), "iw_bpd": ("bpd", "bits per dim, 8-bit")}


class Refused(ValueError):
    """Input the command will not act on; the message names the argument and the fix."""


# ---- the model card -----------------------------------------------------------------------------------

def model_index(record, name: str) -> list[dict]:
    """The record's metrics as the Hub's ``model-index``: one result (the task on the data set's
    held-out split) whose metrics each say how they were measured."""
    cfg, metrics, evaluations = record.config, record.metrics or {}, record.evaluations or {}
    split = "heldout"
    out = []
    for key, entry in metrics.items():
        stem, _, image_set = key.partition("_")
        words = SETS.get(image_set)
        setup = provenance(evaluations, metrics, key)
        if words and stem in ("fid", "kid", "prc", "cfd", "ckid", "cprc"):
            split = (setup.get("reference") or {}).get("split", split) if stem == "fid" else split
            space = (f"features of a classifier trained on {cfg.get('dataset')} (not Inception)"
                     if stem.startswith("c") else "Inception features")
            out += _set_metrics(stem, entry, words, setup, space)
        elif key in SCALARS and _finite(entry.get("value")):
            kind, what = SCALARS[key]
            count = (f"{setup.get('k')} importance samples, {setup.get('n_images')}" if key.startswith("iw_")
                     else f"{setup.get('n_images')}")
            out.append({"type": kind, "value": entry["value"], "name": f"{what}, {count} held-out images"})
    dataset = {"type": str(cfg.get("dataset")), "name": str(cfg.get("dataset")), "split": split}
    return [{"name": name, "results": [{"task": TASK, "dataset": dataset, "metrics": out}] if out else []}]


def _set_metrics(stem: str, m: dict, words: str, setup: dict, space: str) -> list[dict]:
    """The Hub metrics of one image set's entry ``m``, each naming how it was measured (``setup``:
    its evaluation's provenance)."""
    n, ref = m.get("n_images"), setup.get("reference") or {}
    if stem == "fid" and _finite(m.get("value")):
        return [{"type": "fid", "value": m["value"], "args": {k: setup.get(k) for k in ("engine", "engine_version", "resize")},
                 "name": f"FID, {words}: {setup.get('engine')} {setup.get('engine_version')}, {n} generated vs "
                         f"{ref.get('n')} {ref.get('split')} images, {setup.get('resize')}"}]
    if stem == "cfd" and _finite(m.get("value")):
        return [{"type": "cfd", "value": m["value"], "name": f"Frechet distance in the {space}, {words}"}]
    if stem in ("kid", "ckid") and _finite(m.get("value")):
        subsets = setup.get("kid_subsets")
        return [{"type": stem, "value": m["value"], "args": {"std": m.get("std"), "subset_size": m.get("subset_size"),
                                                            "subsets": subsets},
                 "name": f"{stem.upper()}, {words}: {space}, mean of {subsets} subsets of "
                         f"{m.get('subset_size')}, {n} images"}]
    if stem in ("prc", "cprc"):
        return [{"type": part, "value": m[part], "name": f"{part} (k = {setup.get('prc_k')}), {words}: {space}, {n} images"}
                for part in ("precision", "recall") if _finite(m.get(part))]
    return []


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # a bar inside a Markdown table cell must be escaped


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def to_yaml(obj, indent: int = 0) -> str:
    """Block-style YAML of dicts, lists and JSON scalars (strings double-quoted, which YAML reads
    as JSON does), enough for model-card front matter without a YAML writer."""
    pad, lines = " " * indent, []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{k}:\n{to_yaml(v, indent + 2)}")
            else:
                lines.append(f"{pad}{k}: {json.dumps(v)}")  # scalars, and {} / [] in flow style
    else:
        for v in obj:
            if isinstance(v, (dict, list)) and v:
                inner = to_yaml(v, indent + 2)
                lines.append(f"{pad}- {inner[indent + 2:]}")  # the first key on the dash's line
            else:
                lines.append(f"{pad}- {json.dumps(v)}")
    return "\n".join(lines)


def model_card(run, name: str, n: int = 64, seed: int = 0) -> str:
    """README.md: front matter, then what the model is, how to load it and its metrics."""
    rec, cfg = run.record, run.config
    tags = ["vae", "variational-autoencoder", "vaebench", cfg.variant] + (["two-stage-vae"] if run.stage2 is not None else [])
    front = {"library_name": "vaebench", "pipeline_tag": TASK["type"], "tags": tags, "datasets": [cfg.dataset],
             "model-index": model_index(rec, name)}
    rows = [f"| {_cell(m['name'])} | {m['value']:.6g} |" for r in front["model-index"][0]["results"] for m in r["metrics"]]
    stage = ("two-stage: decoder1(z), z = decoder2(u), u ~ N(0, I)" if run.stage2 is not None
             else "one stage: decoder(z), z ~ N(0, I)")
    return "\n".join([
        "---", to_yaml(front), "---", "", f"# {name}", "",
        f"A `{cfg.variant}` VAE ({stage}) trained on `{cfg.dataset}` images of shape "
        f"{'x'.join(map(str, run.shape))} by [vaebench](https://pypi.org/project/vaebench/), seed {rec.seed}, "
        f"run {rec.run_id}, {cfg.epochs} epochs" + (f" + {cfg.stage2_epochs} second-stage epochs" if run.stage2 is not None else "")
        + f"; code {rec.git_commit or 'unknown'}.", "",
        "```python", "import vaes", "run = vaes.load_run('THIS_FOLDER')", "x = run.sample(64, seed=0)  # uint8 (64, C, H, W)", "```", "",
        f"`samples.png`: {n} samples, seed {seed}. `config.json`: the resolved config; `record.json`: the training "
        "history and every metric; `python -m vaes.balance --run THIS_FOLDER`: the KL weight this run "
        "trained with, in other conventions.", "",
        "| metric | value |", "|---|---|", *(rows or ["| (none recorded) | |"]), ""])


# ---- the folder --------------------------------------------------------------------------------------

def export(run_dir: str | Path, out: str | Path, *, n: int = 64, seed: int = 0) -> Path:
    """Write the model-card folder of the finished run ``run_dir`` to ``out`` (complete or absent)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise Refused(f"OUT {str(out)!r} exists and is not an empty folder; the export never writes into "
                      "another folder's files: give a new path, or delete it first")
    try:
        run = load_run(run_dir)
    except RunNotLoadable as e:
        raise Refused(f"RUN_DIR {str(run_dir)!r}: {e}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part"))
    try:
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700; a shared results tree needs the usual mode
        name = run.record.meta.get("label") or f"vaebench-{run.config.variant}-{run.config.dataset}-s{run.record.seed}"
        meta = {"format": "pt", "vaebench": versions().get("vaebench", "unknown"), "run_id": str(run.record.run_id)}
        save_file(_tensors(run.model), staging / "model.safetensors", metadata=meta)
        if run.stage2 is not None:
            save_file(_tensors(run.stage2), staging / "stage2.safetensors", metadata=meta)
        (staging / "config.json").write_text(json.dumps(run.record.config, indent=1))
        RunFolder(staging).write(run.record)
        save_image(run.sample(n, seed=seed).float() / 255, staging / "samples.png", nrow=max(1, math.isqrt(n - 1) + 1), padding=1)
        (staging / "README.md").write_text(model_card(run, name, n, seed))
        os.replace(staging, out)  # an empty OUT is replaced in the same step
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _tensors(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    # safetensors wants contiguous tensors that share no memory
    return {k: v.detach().cpu().contiguous().clone() for k, v in net.state_dict().items()}


# ---- the push ----------------------------------------------------------------------------------------

def push_refusal(repo_id: str) -> str | None:
    """Why ``--push repo_id`` cannot work here, found without any connection; None if it may."""
    try:
        # optional extra: only --push needs it, and the export itself must work without it
        import huggingface_hub  # the hub extra
        from huggingface_hub.utils import HFValidationError, validate_repo_id  # the hub extra
    except ImportError:
        return ("--push needs huggingface_hub, which is not installed: pip install 'vaebench[hub]' "
                "(or pip install huggingface_hub), or export without --push")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        return f"--push {repo_id!r}: not a Hub repository id ({e}); give USER/NAME"
    if "/" not in repo_id:
        return f"--push {repo_id!r}: give the full repository id, USER/NAME or ORG/NAME"
    # read now, as huggingface_hub reads them (its constant is fixed when the package is first imported)
    if any(os.environ.get(k, "").upper() in ("1", "ON", "YES", "TRUE") for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return (f"--push {repo_id}: HF_HUB_OFFLINE is set, so no connection to the Hub is allowed; unset it to "
                "push, or export without --push and upload the folder later (hf upload REPO_ID OUT)")
    if not huggingface_hub.get_token():
        return (f"--push {repo_id}: no Hugging Face token (HF_TOKEN is unset and no `hf auth login` token is "
                "stored); set one, or export without --push")
    return None


def push(out: Path, repo_id: str) -> str:
    """Upload the export to the Hub model repository ``repo_id`` (created if new); its URL."""
    # optional extra, checked by push_refusal before anything was written
    from huggingface_hub import HfApi  # the hub extra
    api = HfApi()
    api.create_repo(repo_id, exist_ok=True)
    return str(api.upload_folder(folder_path=str(out), repo_id=repo_id, commit_message="vaebench export"))


# ---- the command line ------------------------------------------------------------------------------------

def _count(name: str, low: int):
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            v = low - 1
        if v < low:
            raise argparse.ArgumentTypeError(f"{name} {text!r}: expected an integer >= {low}")
        return v
    return parse


def parser() -> argparse.ArgumentParser:
    p = cli.parser("python -m vaes.export", __doc__)  # --help ends with the exit statuses (1 here: the push failed)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run folder (out= of python -m vaes.train)")
    p.add_argument("out", metavar="OUT", help="the folder to create (absent or empty)")
    p.add_argument("--n", type=_count("--n", 1), default=64, help="images in samples.png (default 64)")
    p.add_argument("--seed", type=_count("--seed", 0), default=0, help="seed of samples.png (default 0)")
    p.add_argument("--push", metavar="REPO_ID", help="then upload OUT to this Hub model repository")
    return p


@cli.entry_point
def main(argv: list[str] | None = None) -> int:
    """Command line: export a finished run, then push it when asked."""
    args = parser().parse_args(argv)  # argparse exits 2 naming the argument
    try:
        why = (push_refusal(args.push) if args.push is not None else None) or cli.output_refusal(args.out, "OUT")
        if why:
            raise Refused(why)
        out = export(args.run_dir, args.out, n=args.n, seed=args.seed)
    except Refused as e:
        return cli.refuse(e)
    print(f"exported {args.run_dir} to {out}")
    if args.push is None:
        return 0
    try:
        print(f"pushed to {push(out, args.push)}")
    except Exception as e:  # noqa: BLE001 - any failure of the upload: the export stays, say why
        print(f"error: the push to {args.push} failed ({type(e).__name__}: {str(e)[:300]}); the export in "
              f"{out} is complete: push it again with --push into a new OUT, or hf upload {args.push} {out}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
