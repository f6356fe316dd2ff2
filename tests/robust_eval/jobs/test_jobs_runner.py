"""run_job end to end on real data (scikit-learn digits) with tiny checkpoints: rows, reruns,
failed cells (missing checkpoint, NaN model, corrupt cell file), run.json."""
import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from robust_eval.jobs import run_job
from robust_eval.jobs.store import ResultStore


def save_tiny(path: Path, seed: int = 0, nan: bool = False) -> Path:
    from robust_eval.checkpoints import save_checkpoint
    from robust_eval.models import create_model

    torch.manual_seed(seed)
    model = create_model("tiny_cnn", norm="bn")
    if nan:
        with torch.no_grad():
            model.model.linear.weight.fill_(float("nan"))
    save_checkpoint(model, path, arch="tiny_cnn", norm="bn", num_classes=10, mean=model.mean,
                    std=model.std, input_size=(32, 32))
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    return {"good": save_tiny(folder / "good.safetensors"),
            "nanmodel": save_tiny(folder / "nan.safetensors", nan=True)}


def write_config(path: Path, checkpoints, models=("good",), benchmarks=None, limit=40):
    config = {
        "name": "t", "device": "cpu", "batch_size": 64,
        "models": [{"name": name, "checkpoint": str(checkpoints.get(name, "/absent/x.pt"))}
                   for name in models],
        "datasets": [{"name": "digits", "kind": "digits", "limit": limit}],
        "benchmarks": benchmarks or [
            {"type": "clean"},
            {"type": "corruption", "corruptions": ["brightness"], "severities": [1]},
            {"type": "attack", "attack": "fgsm", "eps": [0, "8/255"]},
        ],
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_run_writes_rows_tables_run_json_and_skips_finished_cells(tmp_path, checkpoints):
    config = write_config(tmp_path / "c.yaml", checkpoints)
    out = tmp_path / "out"
    summary = run_job(config, out, progress=False, echo=lambda s: None)
    assert summary.exit_code == 0 and summary.ran == 4 and not summary.failed
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 4 and set(table["status"]) == {"ok"}
    assert table["cell_key"].is_unique
    assert (table["n"] == 40).all()
    assert (table["ci_low"] <= table["accuracy"]).all()
    assert (table["accuracy"] <= table["ci_high"]).all()
    clean = table[table.benchmark == "clean"].iloc[0]
    fgsm0 = table[(table.benchmark == "attack") & (table.eps == 0)].iloc[0]
    assert fgsm0["correct"] == clean["correct"]  # eps 0 is the clean accuracy
    sha = ResultStore(out).read(clean["cell_key"])["rows"][0]["checkpoint_sha256"]
    run = json.loads((out / "run.json").read_text())
    assert run["models"][0]["checkpoint_sha256"] == sha == clean["checkpoint_sha256"]
    assert run["environment"]["torch"] == torch.__version__ and run["code_version"]
    assert run["cells"] == {"total": 4, "skipped": 0, "ran": 4, "failed": 0}
    eps_table = pd.read_csv(out / "tables" / "accuracy_vs_eps.csv")  # one header row
    assert list(eps_table.columns[:4]) == ["attack", "threat", "steps", "eps"]
    assert all("/" in c for c in eps_table.columns[4:]) and set(eps_table["eps"]) == {"0", "8/255"}
    assert (out / "run.log").read_text().count("done ") == 4

    again = run_job(config, out, progress=False, echo=lambda s: None)
    assert again.ran == 0 and again.skipped == 4
    assert pd.read_csv(out / "results.csv").equals(table)


def test_failed_cells_are_recorded_not_numbers_and_retried(tmp_path, checkpoints):
    config = write_config(tmp_path / "c.yaml", checkpoints, models=("good", "missing", "nanmodel"),
                          benchmarks=[{"type": "clean"}])
    out = tmp_path / "out"
    lines = []
    summary = run_job(config, out, progress=False, echo=lines.append)
    assert summary.exit_code == 1
    table = pd.read_csv(out / "results.csv").set_index("model")
    assert table.loc["good", "status"] == "ok" and table.loc["good", "accuracy"] >= 0
    for model, words in (("missing", "checkpoint not found: /absent/x.pt"),
                         ("nanmodel", "non-finite outputs")):
        assert table.loc[model, "status"] == "failed"
        assert math.isnan(table.loc[model, "accuracy"])
        assert math.isnan(table.loc[model, "ci_low"])
        assert words in table.loc[model, "error"]
        assert any(line.startswith(f"FAILED {model}") and words in line for line in lines)
    again = run_job(config, out, progress=False, echo=lambda s: None)
    assert again.ran == 2 and again.exit_code == 1  # failed cells run again, ok ones do not


def test_corrupt_cell_file_is_moved_aside_and_the_cell_rerun(tmp_path, checkpoints):
    config = write_config(tmp_path / "c.yaml", checkpoints, benchmarks=[{"type": "clean"}])
    out = tmp_path / "out"
    first = run_job(config, out, progress=False, echo=lambda s: None)
    key = first.cells[0].key
    path = ResultStore(out).cell_path(key)
    path.write_text(path.read_text()[:50])  # a torn file, as a crashed copy tool might leave
    lines = []
    second = run_job(config, out, progress=False, echo=lines.append)
    assert second.status_before[key] == "corrupt" and second.ran == 1
    assert second.exit_code == 0
    assert any("corrupt cell file" in line for line in lines)
    assert list((out / "cells" / "corrupt").iterdir())
    assert pd.read_csv(out / "results.csv")["accuracy"].tolist() == \
        first.frame["accuracy"].tolist()


def test_dry_run_lists_cells_and_what_is_done(tmp_path, checkpoints):
    config = write_config(tmp_path / "c.yaml", checkpoints, benchmarks=[
        {"type": "clean"}, {"type": "attack", "attack": "fgsm", "eps": [0.01]}])
    out = tmp_path / "out"
    lines = []
    summary = run_job(config, out, dry_run=True, echo=lines.append)
    assert summary.dry_run and not out.exists()
    assert sum("[pending]" in line for line in lines) == 2
    run_job(config, out, progress=False, echo=lambda s: None)
    lines.clear()
    run_job(config, out, dry_run=True, echo=lines.append)
    assert sum("[   done]" in line for line in lines) == 2
    assert lines[-1] == "2 cells: 2 done"


def test_missing_data_fails_its_cells_with_the_path(tmp_path, checkpoints):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "name": "t", "device": "cpu",
        "models": [{"name": "good", "checkpoint": str(checkpoints["good"])}],
        "datasets": [{"name": "digits", "kind": "digits", "limit": 20},
                     {"name": "c10", "kind": "cifar10", "root": "no-such-folder"}],
        "benchmarks": [{"type": "clean"}],
    }))
    summary = run_job(config, tmp_path / "out", progress=False, echo=lambda s: None)
    assert summary.exit_code == 1 and [c.dataset for c in summary.failed] == ["c10"]
    table = pd.read_csv(tmp_path / "out" / "results.csv").set_index("dataset")
    assert table.loc["digits", "status"] == "ok"
    assert str(tmp_path / "no-such-folder") in table.loc["c10", "error"]


def test_generated_corruption_cells_match_the_evaluate_module(tmp_path, checkpoints,
                                                              monkeypatch):
    """The runner generates each corrupted set once and feeds it to every model; the numbers
    must equal robust_eval.evaluate.corruption's batched path (what `robust-eval evaluate`
    prints)."""
    import corruptions.generate

    from robust_eval.checkpoints import load_checkpoint
    from robust_eval.data import load_split
    from robust_eval.evaluate.corruption import corruption_rows

    other = save_tiny(tmp_path / "other.safetensors", seed=3)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "name": "t", "device": "cpu", "batch_size": 16,
        "models": [{"name": "a", "checkpoint": str(checkpoints["good"])},
                   {"name": "b", "checkpoint": str(other)}],
        "datasets": [{"name": "digits", "kind": "digits", "limit": 40}],
        "benchmarks": [{"type": "corruption", "corruptions": ["gaussian_noise", "pixelate"],
                        "severities": [4], "seed": 3}],
    }))
    generated = []
    original = corruptions.generate.apply_corruption

    def counting(images, name, severity, **kwargs):
        generated.append((name, severity, len(images)))
        return original(images, name, severity, **kwargs)

    monkeypatch.setattr(corruptions.generate, "apply_corruption", counting)
    summary = run_job(config, tmp_path / "out", progress=False, echo=lambda s: None)
    monkeypatch.undo()
    assert [c.model for c in summary.cells] == ["a", "b", "a", "b"]  # models inner
    cell_sets = [g for g in generated if g[2] == 40]  # examples.npz makes 3-image pictures
    assert cell_sets == [("gaussian_noise", 4, 40), ("pixelate", 4, 40)]  # once, not per model
    data = load_split("digits", split="test", limit=40)
    for name, path in (("a", checkpoints["good"]), ("b", other)):
        expected = corruption_rows(load_checkpoint(path), data,
                                   corruptions=["gaussian_noise", "pixelate"], severities=[4],
                                   params="cifar10", seed=3, batch_size=16)
        got = summary.frame[summary.frame.model == name]
        assert got["correct"].tolist() == [r["correct"] for r in expected]
        assert set(got["param_set"]) == {"cifar10"} and set(got["seed"]) == {3}


@pytest.mark.slow
def test_convnorm_model_clean_then_attack_in_one_worker(tmp_path):
    """The demo's path: a worker evaluates a ConvNorm model under inference_mode (clean), then
    attacks it (autograd) with the same cached model. Nothing created under inference_mode may
    leak into the later gradient computation."""
    from robust_eval.checkpoints import save_checkpoint
    from robust_eval.models import create_model

    torch.manual_seed(0)
    model = create_model("tiny_cnn", norm="convnorm")
    model.train()
    model(torch.rand(8, 3, 32, 32))  # one training step's running_V estimate
    model.eval()
    save_checkpoint(model, tmp_path / "cn.safetensors", arch="tiny_cnn", norm="convnorm",
                    num_classes=10, mean=model.mean, std=model.std, input_size=(32, 32))
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "name": "t", "device": "cpu",
        "models": [{"name": "cn", "checkpoint": "cn.safetensors"}],
        "datasets": [{"name": "digits", "kind": "digits", "limit": 16}],
        "benchmarks": [{"type": "clean"}, {"type": "attack", "attack": "fgsm", "eps": [0.01]}],
    }))
    import os
    import subprocess
    import sys

    # a fresh process: the first ConvNorm forward in it happens under inference_mode
    repo = Path(__file__).resolve().parents[3]
    done = subprocess.run([sys.executable, "-m", "robust_eval", "run", str(config), "--out",
                           str(tmp_path / "out"), "--no-progress"], cwd=repo, text=True,
                          capture_output=True, env=dict(os.environ, PYTHONPATH=str(repo),
                                                        OMP_NUM_THREADS="1"), timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    table = pd.read_csv(tmp_path / "out" / "results.csv")
    assert set(table["status"]) == {"ok"} and len(table) == 2
