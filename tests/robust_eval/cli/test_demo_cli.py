"""`robust-eval demo`: trains and caches tiny BN/ConvNorm models on digits, runs the cells,
writes results, plots and the PDF report, and says where they are."""
import os

import pandas as pd
import pytest
import yaml

from robust_eval.cli import main


def test_demo_dry_run_lists_the_packaged_grid(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ROBUST_EVAL_CACHE", str(tmp_path / "cache"))
    assert main(["demo", "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    # 2 models x (clean + 15 x 5 corruptions + 5 FGSM + 3 PGD eps + 3 noise rates)
    assert out.strip().splitlines()[-1] == "174 cells: 174 pending"
    assert "model tiny-convnorm is not trained yet" in out
    assert not (tmp_path / "cache").exists()  # a dry run trains nothing


@pytest.mark.slow
def test_demo_end_to_end_on_a_small_config(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ROBUST_EVAL_CACHE", str(tmp_path / "cache"))
    train = {"dataset": "digits", "epochs": 1, "batch_size": 64, "augment": False,
             "limit": 300}
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump({
        "name": "small-demo", "device": "cpu",
        "models": [{"name": "tiny-bn", "arch": "tiny_cnn", "norm": "bn", "train": train},
                   {"name": "tiny-convnorm", "arch": "tiny_cnn", "norm": "convnorm",
                    "train": train}],
        "datasets": [{"name": "digits", "kind": "digits", "limit": 60}],
        "benchmarks": [
            {"type": "clean"},
            {"type": "corruption", "corruptions": ["fog"], "severities": [3]},
            {"type": "attack", "attack": "fgsm", "eps": ["8/255"]},
            {"type": "label_noise", "rates": [0.4],
             "recipe": {"epochs": 1, "batch_size": 64, "augment": False, "limit": 200}},
        ],
    }))
    out = tmp_path / "demo-out"
    code = main(["demo", "--config", str(config), "--out", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "clean accuracy of tiny-bn (bn) on digits:" in printed
    assert "clean accuracy of tiny-convnorm (convnorm) on digits:" in printed
    assert f"demo outputs are in {out.resolve()}" in printed
    assert (out / "report.pdf").read_bytes()[:5] == b"%PDF-"
    assert list((out / "plots").glob("*.png"))
    table = pd.read_csv(out / "results.csv")
    assert set(table["status"]) == {"ok"}
    assert set(table["benchmark"]) == {"clean", "corruption", "attack", "label_noise"}
    assert set(table["norm"]) == {"bn", "convnorm"}
    trained = sorted((tmp_path / "cache" / "trained").glob("*/*.safetensors"))
    stamps = {p: p.stat().st_mtime_ns for p in trained}
    assert len(trained) >= 2

    # a second demo reuses the cached models and the stored cells
    code = main(["demo", "--config", str(config), "--out", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0 and "8 already done, 0 to run" in printed
    assert "reused the cached checkpoint" in printed
    assert {p: p.stat().st_mtime_ns for p in trained} == stamps
