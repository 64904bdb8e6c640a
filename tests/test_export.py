"""python -m vaes.export: a finished two-stage run as a Hugging Face model-card folder that
vaes.load_run loads back to the same models, and a push that refuses offline before any connection."""
import json
import os
import shutil
import socket
import subprocess
import sys

import pytest
import torch
import yaml
from PIL import Image

from vaes.config import TrainConfig
from vaes.export import main, model_index, to_yaml
from vaes.load import RunNotLoadable, load_run
from vaes.records import Record
from vaes.run import run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny finished two-stage digits run (2 + 2 epochs, about 2 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # 8x8 nets: one thread is fastest on a shared machine
    out = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(dataset="digits", variant="balanced", epochs=2, two_stage=True, stage2_epochs=2,
                      stage2_width=64, eval_images=50, fid=False, device="cpu", out=str(out),
                      cache_dir=str(tmp_path_factory.mktemp("cache")))
    rec = run(cfg, progress=False, evaluate=False)
    torch.set_num_threads(before)
    assert rec.status == "finished", rec.reason
    return out


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "model"
    assert main([str(run_dir), str(out), "--n", "16"]) == 0
    return out


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""
    def refuse(self, *a, **k):
        raise AssertionError(f"a connection was attempted: {a}")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: refuse(None, *a))


def test_exported_folder_loads_back_and_samples_the_same_images(run_dir, exported):
    assert sorted(p.name for p in exported.iterdir()) == ["README.md", "config.json", "model.safetensors",
                                                         "record.json", "samples.png", "stage2.safetensors"]
    assert not (exported / "model.pt").exists()
    a, b = load_run(run_dir), load_run(exported)
    assert b.stage2 is not None and b.config == a.config and b.shape == a.shape == (1, 8, 8)
    for net_a, net_b in ((a.model, b.model), (a.stage2, b.stage2)):
        sa, sb = net_a.state_dict(), net_b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    for stage, sampler in ((1, "mean"), (2, "mean"), (2, "ancestral")):
        x = a.sample(32, stage=stage, seed=7, sampler=sampler)
        assert torch.equal(x, b.sample(32, stage=stage, seed=7, sampler=sampler))
    assert not torch.equal(b.sample(32, stage=1, seed=7), b.sample(32, stage=2, seed=7))  # two models, not one
    assert json.loads((exported / "config.json").read_text()) == a.record.config
    with Image.open(exported / "samples.png") as im:
        assert im.size == (4 * 9 + 1, 4 * 9 + 1)  # 16 images of 8x8, 4 a row, 1 pixel padding


def test_model_card_front_matter_is_the_hubs(exported):
    text = (exported / "README.md").read_text()
    assert text.startswith("---\n")
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["library_name"] == "vaebench" and front["datasets"] == ["digits"]
    assert {"balanced", "two-stage-vae"} <= set(front["tags"])
    (entry,) = front["model-index"]
    (result,) = entry["results"]
    assert result["task"]["type"] == "unconditional-image-generation" and result["dataset"]["type"] == "digits"
    mse = next(m for m in result["metrics"] if m["type"] == "mse")
    rec = json.loads((exported / "record.json").read_text())
    n_heldout = rec["evaluations"]["heldout"]["n_images"]
    assert mse["value"] == pytest.approx(rec["metrics"]["recon_mse"]["value"]) and f"{n_heldout} held-out images" in mse["name"]
    hub = pytest.importorskip("huggingface_hub")
    card = hub.ModelCard.load(exported / "README.md")  # the Hub's own parser (no network for a path)
    assert card.data.library_name == "vaebench" and any(r.metric_type == "mse" for r in card.data.eval_results)


def test_fid_metrics_name_their_protocol():
    rec = Record.from_json({"config": {"dataset": "cifar10", "eval_images": 1000}, "metrics": {
        "fid_stage2": {"value": 71.2, "engine": "torch-fidelity", "engine_version": "0.4.0", "n_images": 10000,
                       "resize": "tf1x-bilinear-299", "reference": {"split": "heldout:test", "n": 10000}},
        "kid_samples": {"value": 0.05, "std": 0.01, "subset_size": 1000, "subsets": 100, "n_images": 10000},
        "cfd_samples": float("nan")}})  # an older record's form, migrated on reading
    (entry,) = model_index(rec, "m")
    (result,) = entry["results"]
    fid, kid = result["metrics"]
    assert fid["type"] == "fid" and fid["value"] == 71.2 and result["dataset"]["split"] == "heldout:test"
    assert "torch-fidelity 0.4.0, 10000 generated vs 10000 heldout:test images" in fid["name"]
    assert "decoder2(u)" in fid["name"] and kid["type"] == "kid" and kid["args"]["subsets"] == 100
    assert yaml.safe_load(to_yaml({"model-index": [entry]})) == {"model-index": [entry]}


def test_an_existing_folder_is_refused(run_dir, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    assert main([str(run_dir), str(tmp_path / "out")]) == 2
    assert "OUT" in capsys.readouterr().err and (tmp_path / "out" / "mine.txt").read_text() == "keep"
    assert main([str(tmp_path / "out"), str(tmp_path / "new")]) == 2  # not a run folder
    assert "RUN_DIR" in capsys.readouterr().err and not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()  # an empty OUT is filled
    assert main([str(run_dir), str(tmp_path / "empty"), "--n", "4"]) == 0 and load_run(tmp_path / "empty").stage2 is not None
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


@pytest.mark.parametrize("env", [{"HF_HUB_OFFLINE": "1", "HF_TOKEN": "hf_not_a_real_token"}, {}])
def test_push_refuses_offline_or_without_token_before_any_connection(env, run_dir, tmp_path, monkeypatch,
                                                                     no_network, capsys):
    pytest.importorskip("huggingface_hub")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no stored login token
    monkeypatch.setenv("HF_TOKEN_PATH", str(tmp_path / "hf" / "token"))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert main([str(run_dir), str(tmp_path / "out"), "--push", "someone/vae"]) == 2
    err = capsys.readouterr().err
    assert ("HF_HUB_OFFLINE" if env else "token") in err and "--push" in err
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))  # nothing half-written


def test_push_refusal_in_a_fresh_process(run_dir, tmp_path):
    # huggingface_hub loads its submodules lazily: in a process where nothing imported
    # huggingface_hub.constants before, the refusal must still be a message, not a traceback
    pytest.importorskip("huggingface_hub")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env |= {"HF_HOME": str(tmp_path / "hf"), "HF_TOKEN_PATH": str(tmp_path / "hf" / "token")}
    p = subprocess.run([sys.executable, "-m", "vaes.export", str(run_dir), str(tmp_path / "out"), "--push", "someone/vae"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 2 and "token" in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert not (tmp_path / "out").exists()


def test_push_without_huggingface_hub_says_how_to_install(run_dir, tmp_path, monkeypatch, no_network, capsys):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import huggingface_hub now raises ImportError
    assert main([str(run_dir), str(tmp_path / "out"), "--push", "someone/vae"]) == 2
    assert "pip install 'vaebench[hub]'" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_damaged_export_is_refused(exported, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(exported, bad)
    (bad / "stage2.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(RunNotLoadable, match="stage2.safetensors"):
        load_run(bad)
    (bad / "stage2.safetensors").unlink()
    with pytest.raises(RunNotLoadable, match="two-stage"):
        load_run(bad)
