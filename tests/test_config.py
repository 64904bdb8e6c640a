import subprocess
import sys

import pytest

from vaes import list_variants
from vaes.config import TrainConfig, from_dict, parse_overrides, run_id, to_dict
from vaes.data import list_datasets
from vaes.build import resolve


def test_overrides_set_fields_and_variant_options():
    cfg = parse_overrides(["variant=balanced", "momentum=0.95", "epochs=3", "monotone=false",
                           "kl_weight=paper", "fid_weights=none"])
    assert cfg.epochs == 3 and cfg.options == {"momentum": 0.95, "monotone": False, "kl_weight": "paper"}
    assert cfg.fid_weights is None
    assert parse_overrides(["variant=beta", "beta=4"]).options == {"beta": 4.0}


@pytest.mark.parametrize("args,message", [
    (["foo=1"], "unknown key 'foo'.*Config fields:.*epochs.*Options of variant 'balanced': gamma_floor"),
    (["epochs=x"], "epochs='x': expected int"),
    (["two_stage=maybe"], "expected a boolean"),
    (["variant=nope"], "choose one of: " + ", ".join(list_variants())),
    (["variant=beta", "momentum=0.9"], "unknown key 'momentum'.*Options of variant 'beta': beta, likelihood"),
    (["network=huge"], "network='huge' is not valid; choose one of: auto, resnet, conv"),
    (["dataset=imagenet"], "dataset='imagenet' is unknown; choose one of: " + ", ".join(list_datasets())),
    (["momentum=1.5"], r"momentum must be in \[0, 1\)"),
    (["kl_weight=lots"], "kl_weight must be a number >= 0 or 'paper'"),
    (["batch_size=0"], "batch_size must be >= 1"),
    (["epochs"], "expected key=value"),
])
def test_bad_values_name_the_field_and_the_choices(args, message):
    with pytest.raises((ValueError, KeyError), match=message):
        parse_overrides(args)


def test_round_trip_and_identity():
    cfg = parse_overrides(["variant=beta", "beta=4", "seed=3"])
    assert from_dict(to_dict(cfg)).options == {"beta": 4.0, "likelihood": "gaussian"}
    assert run_id(from_dict(to_dict(cfg))) == run_id(cfg)
    assert run_id(cfg) == run_id(TrainConfig(variant="beta", options={"beta": 4}, seed=3, out="elsewhere"))
    assert run_id(cfg) != run_id(cfg.replace(seed=4))


def test_cli_help_lists_fields_with_their_meaning():
    out = subprocess.run([sys.executable, "-m", "vaes.train", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "momentum" in out.stdout and "the paper's batch size" in out.stdout
    for field in ("variant", "dataset", "epochs", "two_stage", "bf16", "compile"):
        assert f"\n  {field} " in out.stdout


def test_cli_bad_key_exits_2_with_the_choices():
    out = subprocess.run([sys.executable, "-m", "vaes.train", "epochz=3"], capture_output=True, text=True)
    assert out.returncode == 2 and "unknown key 'epochz'" in out.stderr and "epochs" in out.stderr


def test_second_stage_halving_follows_the_originals_configurations():
    # Asperti & Trentin's suggested configurations: lr_epochs2 400 (CIFAR-10), 120 (CelebA)
    assert resolve(TrainConfig(dataset="cifar10")).stage2_lr_halve_every == 400
    assert resolve(TrainConfig(dataset="celeba")).stage2_lr_halve_every == 120
    assert resolve(TrainConfig(dataset="cifar10", lr_halve_every=100)).stage2_lr_halve_every == 200
    with pytest.raises(ValueError, match="stage2_lr_halve_every"):
        TrainConfig(stage2_lr_halve_every=-1)
