"""Bad input and faults on the command line: one line naming the problem, exit 2, before any
cell runs and without leaving anything that looks like output."""
import pandas as pd
import pytest
import torch
import yaml

from robust_eval.cli import main


def _tiny(path, seed=0):
    from robust_eval.checkpoints import save_checkpoint
    from robust_eval.models import create_model

    torch.manual_seed(seed)
    model = create_model("tiny_cnn", norm="bn").eval()
    save_checkpoint(model, path, arch="tiny_cnn", norm="bn", num_classes=10, mean=model.mean,
                    std=model.std, input_size=(32, 32))
    return path


def _config(tmp_path, checkpoint, **top):
    config = {"name": "bad", "models": [{"name": "m", "checkpoint": str(checkpoint)}],
              "datasets": [{"name": "digits", "kind": "digits", "limit": 20}],
              "benchmarks": [{"type": "clean"}], **top}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_stops_before_any_cell(tmp_path, capsys):
    checkpoint = _tiny(tmp_path / "m.safetensors")
    out = tmp_path / "out"
    assert main(["run", str(_config(tmp_path, checkpoint, device="cuda")), "--out",
                 str(out)]) == 2
    err = capsys.readouterr().err
    assert "CUDA is not available" in err and "'cuda'" in err and len(err.splitlines()) == 1
    assert not (out / "cells").exists()
    assert main(["run", str(_config(tmp_path, checkpoint)), "--device", "cuda:1", "--out",
                 str(out)]) == 2
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--dataset", "digits",
                 "--device", "cuda"]) == 2
    assert "--device" in capsys.readouterr().err


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    checkpoint = _tiny(tmp_path / "m.safetensors")
    target = tmp_path / "taken"
    target.write_text("not a folder")
    assert main(["run", str(_config(tmp_path, checkpoint)), "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert f"{target} is a file, not a folder" in err and "Traceback" not in err
    assert target.read_text() == "not a folder"


def test_zero_accuracy_interval_is_exact_and_chance_level_is_flagged(tmp_path, capsys):
    from robust_eval.schema import make_row

    row = make_row(correct=0, n=100, model="m", benchmark="clean")
    assert row["ci_low"] == 0.0 and row["ci_high"] > 0
    row = make_row(correct=100, n=100, model="m", benchmark="clean")
    assert row["ci_high"] == 1.0
    checkpoint = _tiny(tmp_path / "random.safetensors")  # untrained: at chance on digits
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--dataset", "digits", "--limit",
                 "100", "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "not above chance (10% for 10 classes)" in out and "preprocessing" in out
    frame = pd.read_csv(tmp_path / "o" / "results.csv")
    assert frame.loc[0, "warnings"].startswith("clean accuracy")
    from reports import load_results
    from reports.headline import build_headline

    notes = build_headline(load_results(tmp_path / "o")).notes
    assert notes[0].startswith("WARNING random: clean accuracy") and "preprocessing" in notes[0]


def test_evaluate_prints_each_row_and_one_table_per_benchmark(tmp_path, capsys):
    checkpoint = _tiny(tmp_path / "m.safetensors")
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--dataset", "digits", "--limit",
                 "20", "--benchmark", "clean,fgsm,corruption", "--corruptions", "fog,contrast",
                 "--severities", "1,5", "--eps", "1/255,8/255", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.count("] m digits corruption") == 4 and "[1/7]" in out and "[7/7]" in out
    assert "[clean]" in out and "[attack]" in out and "[corruption]" in out
    assert "8/255" in out and "1.0 " not in out.split("[corruption]")[1].split("\n")[2]
    tables = out.split("[corruption]")[1]
    assert "fog" in tables and "contrast" in tables and "steps" not in tables


def test_outputs_respect_the_umask(tmp_path):
    import os
    import stat

    previous = os.umask(0o022)
    try:
        checkpoint = _tiny(tmp_path / "m.safetensors")
        out = tmp_path / "out"
        assert main(["run", str(_config(tmp_path, checkpoint)), "--out", str(out),
                     "--no-progress"]) == 0
        assert main(["report", str(out), "-o", str(tmp_path / "report.pdf")]) == 0
        assert main(["baseline", str(out), "-o", str(tmp_path / "baseline.json")]) == 0
    finally:
        os.umask(previous)
    written = [checkpoint, out / "results.csv", out / "results.parquet", out / "run.json",
               out / "index.json", *sorted((out / "cells").glob("*.json")),
               tmp_path / "report.pdf", tmp_path / "baseline.json"]
    modes = {str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode)) for p in written}
    assert set(modes.values()) == {"0o644"}, modes
