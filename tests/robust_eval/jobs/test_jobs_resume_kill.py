"""A run killed with SIGKILL mid-way, then rerun, ends with exactly the rows of an
uninterrupted run: none lost, none duplicated (a real subprocess and kill -9)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[3]
IDENTITY = ["model", "benchmark", "attack", "eps", "n", "correct", "accuracy", "ci_low",
            "ci_high", "cell_key", "status"]


def run_cli(config: Path, out: Path, code_version: str):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1",
               ROBUST_EVAL_CODE_VERSION=code_version)
    return subprocess.Popen([sys.executable, "-m", "robust_eval", "run", str(config), "--out",
                             str(out), "--no-progress"], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_sigkill_then_rerun_gives_the_rows_of_an_uninterrupted_run(tmp_path):
    from robust_eval.checkpoints import save_checkpoint
    from robust_eval.models import create_model

    torch.manual_seed(0)
    model = create_model("tiny_cnn", norm="bn")
    ckpt = tmp_path / "m.safetensors"
    save_checkpoint(model, ckpt, arch="tiny_cnn", norm="bn", num_classes=10, mean=model.mean,
                    std=model.std, input_size=(32, 32))
    eps = [f"{i}/255" for i in range(14)]
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "name": "kill", "device": "cpu", "batch_size": 120,
        "models": [{"name": "m", "checkpoint": str(ckpt)}],
        "datasets": [{"name": "digits", "kind": "digits", "limit": 120}],
        "benchmarks": [{"type": "clean"},
                       {"type": "attack", "attack": "fgsm", "eps": eps}],
    }))
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = run_cli(config, killed, "test-1")
    cells = killed / "cells"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if cells.is_dir() and len(list(cells.glob("*.json"))) >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed: " + proc.stdout.read()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_at_kill = len(list(cells.glob("*.json")))
    assert 3 <= done_at_kill < 15
    assert not (killed / "results.csv").exists()  # no table that looks complete

    resumed = run_cli(config, killed, "test-1")
    output = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, output
    assert f"{done_at_kill} already done" in output or \
        f"{done_at_kill + 1} already done" in output  # a cell may land as the kill arrives
    full = run_cli(config, clean, "test-1")
    output = full.communicate(timeout=600)[0]
    assert full.returncode == 0, output

    a = pd.read_csv(killed / "results.csv")[IDENTITY]
    b = pd.read_csv(clean / "results.csv")[IDENTITY]
    assert len(a) == 15 and a["cell_key"].is_unique
    pd.testing.assert_frame_equal(a, b)
