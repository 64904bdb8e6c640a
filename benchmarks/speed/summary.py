"""One speed result as Markdown (OUT/<device>-<dataset>.md) and as a summary on the console."""
from __future__ import annotations


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.{digits}g}"
    return str(v)


def _ratio_cells(res: dict, name: str) -> tuple[str, str, str]:
    """vaebench's ratio over ``name``: of the medians, median per round, of the best rounds."""
    keys = (f"vaebench_over_{name}", f"vaebench_over_{name}_per_round_median", f"vaebench_over_{name}_best")
    return tuple("-" if res["ratios"].get(k) is None else f"{res['ratios'][k]:.2f}x" for k in keys)


def _projection_line(p: dict) -> str:
    fid = f" + {p['fid_hours']:.2f} h FIDs" if p["fid_hours"] else ""
    return (f"Paper's CIFAR-10 protocol ({p['source']}): {p['first_stage_hours']:.1f} h first stage + "
            f"{p['stage2_hours']:.1f} h second stage{fid} = {p['total_hours']:.1f} h")


def markdown(res: dict) -> str:
    """A short Markdown report of one result."""
    d = res["dataset"]
    options = "".join([", bf16" if res["bf16"] else "", ", compiled" if res["compile"] else ""])
    lines = [f"# Speed: {d['name']} on {res['device']['name']}", "",
             f"{res['device']['type']}, torch {res['torch']}, {res['threads']} threads, load average "
             f"{res['load_average']['before'][0]:.1f} on {res['cores']} cores; network {res['network']['name']} "
             f"({res['network']['n_params']:,} parameters), variant {res['variant']}{options}, Adam, batch "
             f"{res['batch_size']}, {d['n_train']} {'synthetic' if d['synthetic'] else 'real'} images, "
             f"{res['epochs_per_round']} epochs per round, median of {res['rounds']} rounds.", "",
             "| trainer | images/s (median) | vaebench is | median of per-round ratios | best round | "
             "vaebench is (best) | peak memory, MiB (growth in the round) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, rec in res["trainers"].items():
        r, rr, rb = _ratio_cells(res, name)
        lines.append(f"| {name} | {_fmt(rec['images_per_second'])} | {r} | {rr} | "
                     f"{_fmt(rec['images_per_second_best'])} | {rb} | {rec['peak_memory_bytes'] / 2**20:,.0f} "
                     f"(+{rec['peak_memory_delta_bytes'] / 2**20:,.0f}) |")
    for k, v in res["targets"].items():
        lines.append(f"\nTarget {k} >= {v['target']}x: {v['ratio']:.2f}x, {'met' if v['met'] else 'not met'}.")
    if res.get("flops"):
        f = res["flops"]
        peak = (f", {100 * f['fraction_of_peak']:.2f}% of {f['peak_name']} ({f['peak_tflops']:g} TFLOP/s)"
                if f.get("fraction_of_peak") is not None else "")
        lines += ["", f"Model FLOPs per image (forward + backward, {f['precision']}): {f['per_image']:.3g}; "
                      f"vaebench achieves {f['vaebench_tflops']:.3g} TFLOP/s{peak}."]
    if res.get("profile"):
        p = res["profile"]
        lines += ["", f"Profile of vaebench's step ({p['note']}): " + ", ".join(
            f"{k[:-3].replace('_', ' ')} {v:.2f} ms" for k, v in p.items() if k.endswith("_ms")) + "."]
    if res.get("stage2"):
        s = res["stage2"]
        lines += ["", f"Second stage (MLP {s['depth']} x {s['width']}, {s['n_params']:,} parameters): "
                      f"{_fmt(s['codes_per_second'])} codes/s."]
    ev = res.get("eval") or {}
    if ev.get("inception", {}).get("images_per_second"):
        i = ev["inception"]
        per_bs = ", ".join(f"batch {bs}: {_fmt(v['images_per_second'])} images/s"
                           for bs, v in i["by_batch_size"].items())
        lines += ["", f"Inception features ({i['extractor']}): {per_bs}; one FID on 10k + 10k images: "
                      f"{i['fid_10k_seconds'] / 60:.1f} min."]
    if ev.get("classifier", {}).get("images_per_second"):
        lines += ["", f"Classifier distance: {_fmt(ev['classifier']['images_per_second'])} images/s."]
    if res.get("projection"):
        lines += ["", _projection_line(res["projection"]) + "."]
    lines += ["", *(f"- {n}" for n in res["notes"])]
    return "\n".join(lines) + "\n"


def print_summary(res: dict) -> None:
    print(f"\n{res['dataset']['name']} on {res['device']['name']} ({res['device']['type']}, {res['threads']} "
          f"threads), batch {res['batch_size']}, {res['rounds']} rounds x {res['epochs_per_round']} epochs, "
          f"load average {res['load_average']['before'][0]:.1f} on {res['cores']} cores")
    for name, rec in res["trainers"].items():
        r, rr, rb = _ratio_cells(res, name)
        tail = "" if name == "vaebench" else f"   vaebench is {r} (per round {rr}, best rounds {rb})"
        best = rec["images_per_second_best"]
        print(f"  {name:<9} {rec['images_per_second']:>10,.0f} images/s (best {best:,.0f}){tail}")
    for k, v in res["targets"].items():
        print(f"  target {k} >= {v['target']}x: {v['ratio']:.2f}x, {'met' if v['met'] else 'NOT met'}")
    if res.get("stage2"):
        print(f"  stage 2   {res['stage2']['codes_per_second']:>10,.0f} codes/s")
    ev = res.get("eval") or {}
    for k in ("inception", "classifier"):
        if ev.get(k, {}).get("images_per_second"):
            print(f"  eval {k:<10} {ev[k]['images_per_second']:>8,.1f} images/s")
    if res.get("projection"):
        print("  " + _projection_line(res["projection"]))

