"""Executors: worker processes (one dies -> only its cell fails) and Ray (same rows as local)."""
import os
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from robust_eval.jobs import run_job
from robust_eval.jobs.config import parse_config
from robust_eval.jobs.executors import LocalExecutor, RayExecutor
from robust_eval.jobs.grid import expand, model_identity

REPO = Path(__file__).resolve().parents[3]
COMPARE = ["model", "benchmark", "corruption", "severity", "attack", "eps", "n", "correct",
           "accuracy", "ci_low", "ci_high", "cell_key", "status"]

CRASHY = textwrap.dedent("""
    import os
    from robust_eval.jobs.cells import cell_rows

    def run(cell, device):
        if cell["params"]["eps"] == 0.5:
            os._exit(3)  # what a segfault or the OOM killer looks like from outside
        [row] = cell_rows(cell, [{"correct": 1, "n": 1}], seconds=0, device="cpu")
        row.update(device=str(os.getpid()))
        return {"key": cell["key"], "status": "ok", "rows": [row], "error": None, "seconds": 0}
""")


def crash_cells():
    config = parse_config({
        "models": [{"name": "m", "checkpoint": "x", "arch": "tiny_cnn", "norm": "bn"}],
        "datasets": [{"name": "digits", "kind": "digits"}],
        "benchmarks": [{"type": "attack", "attack": "fgsm", "eps": [0.1, 0.5, 0.2, 0.3]}],
    }, source="x", base_dir=Path("/"))
    return expand(config, {"m": model_identity(config.models[0], "a" * 64)}, "v")


@pytest.mark.slow
def test_a_dying_worker_fails_only_its_cell(tmp_path, monkeypatch):
    (tmp_path / "crashy_cells.py").write_text(CRASHY)
    monkeypatch.syspath_prepend(str(tmp_path))  # spawned workers inherit sys.path
    executor = LocalExecutor(device="cpu", workers=2, cell_function="crashy_cells:run")
    outcomes = {}
    executor.run(crash_cells(), lambda cell, outcome: outcomes.__setitem__(
        cell.params["eps"], outcome))
    assert set(outcomes) == {0.1, 0.5, 0.2, 0.3}
    assert outcomes[0.5]["status"] == "failed"
    assert "worker process died (exit code 3)" in outcomes[0.5]["error"]
    assert outcomes[0.5]["rows"][0]["status"] == "failed"
    for eps in (0.1, 0.2, 0.3):
        assert outcomes[eps]["status"] == "ok"


def write_config(tmp_path: Path) -> Path:
    from robust_eval.checkpoints import save_checkpoint
    from robust_eval.models import create_model

    torch.manual_seed(1)
    model = create_model("tiny_cnn", norm="bn")
    ckpt = tmp_path / "m.safetensors"
    save_checkpoint(model, ckpt, arch="tiny_cnn", norm="bn", num_classes=10, mean=model.mean,
                    std=model.std, input_size=(32, 32))
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "name": "ray", "device": "cpu", "batch_size": 64,
        "models": [{"name": "m", "checkpoint": str(ckpt)}],
        "datasets": [{"name": "digits", "kind": "digits", "limit": 48}],
        "benchmarks": [{"type": "clean"},
                       {"type": "corruption", "corruptions": ["contrast"], "severities": [2]},
                       {"type": "attack", "attack": "pgd", "eps": ["4/255"], "steps": 2}],
    }))
    return config


@pytest.mark.slow
def test_ray_gives_the_same_rows_as_local(tmp_path):
    ray = pytest.importorskip("ray")
    config = write_config(tmp_path)
    local = run_job(config, tmp_path / "local", progress=False, echo=lambda s: None,
                    code_version="t")
    try:
        remote = run_job(config, tmp_path / "ray", progress=False, echo=lambda s: None,
                         code_version="t",
                         executor=RayExecutor(device="cpu", num_cpus=2))
    finally:
        ray.shutdown()
    assert local.exit_code == remote.exit_code == 0
    a = pd.read_csv(tmp_path / "local" / "results.csv")[COMPARE]
    b = pd.read_csv(tmp_path / "ray" / "results.csv")[COMPARE]
    assert len(a) == 3
    pd.testing.assert_frame_equal(a, b)
    run = (tmp_path / "ray" / "run.json").read_text()
    assert '"executor": "ray (local)"' in run
