"""Sample a grid of images from a finished run.

    python -m vaes.sample RUN_DIR [n=64] [out=grid.png] [stage=1|2] [seed=0] [sampler=mean|ancestral] [device=cpu]

RUN_DIR is the out= of python -m vaes.train (or OUT/runs/FOLDER of a suite). stage 2, the
default where the run has a second stage, draws u ~ N(0, I) and z = decoder2(u) (sampler=mean,
the record's *_stage2) or z = decoder2(u) + gamma_z eps (sampler=ancestral); stage 1 decodes
z ~ N(0, I). The grid has ceil(sqrt(n)) images a row; its path is printed. Errors are printed
as 'error: ...' with exit status 2.

exit status: 0 done (also --help); 2 refused input or a run folder that cannot be loaded
(the message names the argument, the value and what is allowed)
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

from torchvision.utils import save_image

from vaes.cli import entry_point, output_refusal
from vaes.load import load_run

# key: (type, default); stage None = 2 where there is a second stage, else 1
KEYS: dict[str, tuple[type, object]] = {"n": (int, 64), "out": (str, "grid.png"), "stage": (int, None),
                                        "seed": (int, 0), "sampler": (str, "mean"), "device": (str, "cpu")}


def parse_args(argv: list[str]) -> tuple[str, dict]:
    """RUN_DIR and the key=value settings, typed and checked."""
    if not argv or "=" in argv[0]:
        raise ValueError("the first argument must be the run folder (RUN_DIR); see --help")
    settings = {k: default for k, (_, default) in KEYS.items()}
    for a in argv[1:]:
        if "=" not in a:
            raise ValueError(f"expected key=value, got {a!r}; keys: {', '.join(KEYS)}")
        k, v = (s.strip() for s in a.split("=", 1))
        if k not in KEYS:
            raise ValueError(f"unknown key {k!r}; keys: {', '.join(KEYS)}")
        tp = KEYS[k][0]
        try:
            settings[k] = tp(v)
        except ValueError:
            raise ValueError(f"{k}={v!r}: expected {tp.__name__}") from None
    if settings["n"] < 1:
        raise ValueError(f"n={settings['n']}: expected at least 1 image")
    if settings["stage"] not in (None, 1, 2):
        raise ValueError(f"stage={settings['stage']}: choose 1 (decode z ~ N(0, I)) or 2 (the second stage)")
    if settings["seed"] < 0:
        raise ValueError(f"seed={settings['seed']}: expected a whole number >= 0")
    if settings["sampler"] not in ("mean", "ancestral"):
        raise ValueError(f"sampler={settings['sampler']!r}: choose one of mean, ancestral")
    if settings["device"] not in ("cpu", "cuda", "auto"):
        raise ValueError(f"device={settings['device']!r}: choose one of cpu, cuda, auto")
    if Path(settings["out"]).suffix.lower() != ".png":
        raise ValueError(f"out={settings['out']!r}: the grid is a PNG; give a path ending in .png")
    return argv[0], settings


@entry_point
def main(argv: list[str] | None = None, *, validate_only: bool = False) -> int:
    """Command line; ``validate_only`` stops after checking the arguments (no run loaded)."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    try:
        run_dir, s = parse_args(argv)
        if why := output_refusal(s["out"], "out", folder=False):
            raise ValueError(why)
        if validate_only:
            return 0
        run = load_run(run_dir, device=s["device"])
        images = run.sample(s["n"], stage=s["stage"], seed=s["seed"], sampler=s["sampler"])
        out = Path(s["out"])
        out.parent.mkdir(parents=True, exist_ok=True)
        save_image(images.float() / 255, out, nrow=math.ceil(math.sqrt(s["n"])), padding=1)
    except (ValueError, RuntimeError) as e:  # RunNotLoadable is a ValueError; a file's OSError: entry_point
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
