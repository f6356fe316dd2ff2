"""`robust-eval run`: exit codes, --dry-run listing, config errors naming the field."""
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from robust_eval.cli import main


@pytest.fixture
def config(tmp_path):
    from robust_eval.checkpoints import save_checkpoint
    from robust_eval.models import create_model

    torch.manual_seed(0)
    model = create_model("tiny_cnn", norm="bn")
    save_checkpoint(model, tmp_path / "m.safetensors", arch="tiny_cnn", norm="bn",
                    num_classes=10, mean=model.mean, std=model.std, input_size=(32, 32))
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({
        "name": "cli", "device": "cpu",
        "models": [{"name": "m", "checkpoint": "m.safetensors"},
                   {"name": "gone", "checkpoint": "gone.safetensors"}],
        "datasets": [{"name": "digits", "kind": "digits", "limit": 30}],
        "benchmarks": [{"type": "clean"}],
    }))
    return path


def test_run_dry_run_then_run_exit_codes(config, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out), "--dry-run"]) == 0
    listing = capsys.readouterr().out
    assert "[pending] m digits clean" in listing and "[pending] gone digits clean" in listing
    assert "checkpoint not found" in listing and "2 cells: 2 pending" in listing
    assert main(["run", str(config), "--out", str(out), "--no-progress"]) == 1  # a failed cell
    printed = capsys.readouterr().out
    assert "1/2 cells ok" in printed and "FAILED gone digits clean" in printed
    assert str(out / "results.csv") in printed
    table = pd.read_csv(out / "results.csv")
    assert table["status"].tolist() == ["ok", "failed"]
    assert main(["run", str(config), "--out", str(out), "--dry-run"]) == 0
    listing = capsys.readouterr().out
    assert "[   done] m digits clean" in listing and "[ failed] gone digits clean" in listing


def test_bad_config_exits_2_naming_the_field(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({
        "models": [{"name": "m", "checkpoint": "x"}],
        "datasets": [{"name": "digits", "kind": "digits"}],
        "benchmarks": [{"type": "clean"}, {"type": "clean"},
                       {"type": "attack", "attack": "pgd", "eps": [0.1, "eight"]}],
    }))
    assert main(["run", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "robust-eval run: error:" in err and "benchmarks[2].eps[1]" in err
    assert main(["run", str(tmp_path / "absent.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err
