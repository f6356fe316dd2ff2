"""`robust-eval evaluate`: the contract other tools call, on real data, and its refusals."""
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from robust_eval.cli import main
from robust_eval.schema import COLUMNS

REPO = Path(__file__).resolve().parents[3]
IMAGENET_STATS = ["--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225"]


@pytest.mark.slow
def test_cli_subprocess_on_real_checkpoint(he2016_checkpoints, cifar10_test_npz, tmp_path):
    from robust_eval.checkpoints import load_checkpoint
    from robust_eval.data import load_split
    from robust_eval.evaluate.clean import count_correct

    checkpoint = he2016_checkpoints / "resnet20-12fca82f.th"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-m", "robust_eval", "evaluate", "--arch", "resnet20", "--checkpoint",
         str(checkpoint), *IMAGENET_STATS, "--dataset", "cifar10", "--data-root",
         str(cifar10_test_npz.parent), "--benchmark", "clean", "--limit", "200", "--device", "cpu",
         "--batch-size", "100", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "clean" in result.stdout and "resnet20" in result.stdout
    frame = pd.read_csv(tmp_path / "out" / "results.csv")
    assert list(frame.columns[: len(COLUMNS)]) == COLUMNS and len(frame) == 1
    row = frame.iloc[0]
    assert (row["benchmark"], row["arch"], row["norm"], row["n"]) == ("clean", "resnet20", "bn", 200)
    assert row["checkpoint_sha256"].startswith("12fca82f0bebc413")
    # the same number computed in-process, independently of the CLI
    model = load_checkpoint(checkpoint, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    data = load_split("cifar10", cifar10_test_npz.parent, limit=200)
    correct, n = count_correct(model, data.images, data.labels, 100)
    assert row["correct"] == correct and row["accuracy"] == pytest.approx(correct / 200)
    assert 0.8 < row["accuracy"] <= 1 and row["ci_low"] < row["accuracy"] < row["ci_high"]


def test_own_checkpoint_metadata_fills_flags(tmp_path, capsys):
    from robust_eval.checkpoints import save_checkpoint
    from robust_eval.models import create_model

    torch.manual_seed(0)
    model = create_model("tiny_cnn", norm="convnorm", mean=(0.1,) * 3, std=(0.3,) * 3).eval()
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(model, path, arch="tiny_cnn", norm="convnorm", num_classes=10,
                    mean=model.mean, std=model.std, input_size=(32, 32))
    rc = main(["evaluate", "--checkpoint", str(path), "--dataset", "digits", "--limit", "40",
               "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert rc == 0 and "tiny_cnn (norm convnorm)" in out and "mean=(0.1, 0.1, 0.1)" in out
    frame = pd.read_csv(tmp_path / "out" / "results.csv")
    assert frame.loc[0, "n"] == 40 and frame.loc[0, "norm"] == "convnorm"
    assert frame.loc[0, "dataset"] == "digits" and frame.loc[0, "model"] == "tiny"


@pytest.fixture
def tiny_file(tmp_path):
    from robust_eval.models import create_model

    path = tmp_path / "tiny.pt"
    torch.save(create_model("tiny_cnn").model.state_dict(), path)
    return path


@pytest.mark.parametrize("extra,message", [
    (["--checkpoint", "/no/such/file.pt"], "--checkpoint: file /no/such/file.pt does not exist"),
    (["--arch", "resnet_20"], "--arch: unknown model 'resnet_20'; did you mean 'resnet20'"),
    (["--mean", "0.5,0.5", "--std", "0.2,0.2,0.2"], "--mean has 2 values but --std has 3"),
    (["--mean", "0.5,0.5", "--std", "0.2,0.2"], "--mean/--std have 2 values; the models take 3 input channels"),
    (["--mean", "0.5,x,0.5", "--std", "0.2,0.2,0.2"], "--mean: mean must be comma-separated"),
    (["--benchmark", "clean,pgdd"], "unknown benchmark(s) pgdd (known: "),
    (["--dataset", "cifar10", "--data-root", "/no/such/dir"], "/no/such/dir does not exist"),
    (["--device", "cuda:7"] if not torch.cuda.is_available() else ["--device", "tpu"],
     "--device"),
])
def test_bad_input_is_a_clear_error(tiny_file, capsys, extra, message):
    args = ["evaluate", "--checkpoint", str(tiny_file), "--dataset", "digits", "--limit", "8"]
    rc = main(args + extra)
    err = capsys.readouterr().err
    assert rc == 2 and message in err, err


def test_limit_must_be_positive(tiny_file, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--checkpoint", str(tiny_file), "--dataset", "digits", "--limit", "0"])
    assert exit_info.value.code == 2
    assert "--limit: must be a positive integer, got 0" in capsys.readouterr().err


def test_robustbench_source_errors_name_the_expected_file(tmp_path, capsys):
    rc = main(["evaluate", "--robustbench", "Standard", "--model-dir", str(tmp_path),
               "--dataset", "digits", "--limit", "4"])
    assert rc == 2 and ("unknown RobustBench dataset 'digits': choose cifar10, cifar100, "
                        "imagenet") in capsys.readouterr().err
    rc = main(["evaluate", "--robustbench", "Standard", "--model-dir", str(tmp_path),
               "--dataset", "cifar10", "--data-root", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and f"{tmp_path}/cifar10/Linf/Standard.pt does not exist" in err
    rc = main(["evaluate", "--robustbench", "Standard", "--arch", "resnet20", "--dataset",
               "cifar10", "--data-root", str(tmp_path)])
    assert rc == 2 and "drop --arch" in capsys.readouterr().err
