"""The ImageNet path: a val folder built from the 100 real sample images, ImageNet-C generated
with the ImageNet parameters, a randomly initialised ResNet-18 (the pipeline is under test, not
the accuracy); and the mCE table on a complete grid."""
import csv
import math

import pandas as pd
import pytest
import torch
import yaml

from robust_eval.jobs import run_job
from robust_eval.jobs.runner import write_pivots
from robust_eval.schema import make_row


@pytest.mark.slow
def test_imagenet_val_folder_with_generated_imagenet_c(imagenet_samples, tmp_path):
    from corruptions.datasets import imagenet_wnids
    from robust_eval.checkpoints import save_checkpoint
    from robust_eval.models import create_model

    val = tmp_path / "val"
    with open(imagenet_samples / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))[:12]
    for row in rows:
        (val / row["wnid"]).mkdir(parents=True)
        (val / row["wnid"] / row["file"]).symlink_to(imagenet_samples / row["file"])
    (val / "wnids.txt").write_text("\n".join(imagenet_wnids()) + "\n")
    torch.manual_seed(0)
    model = create_model("imagenet_resnet18", norm="bn", num_classes=1000)
    save_checkpoint(model, tmp_path / "r18.safetensors", arch="imagenet_resnet18", norm="bn",
                    num_classes=1000, mean=model.mean, std=model.std, input_size=(224, 224))
    config = tmp_path / "imagenet.yaml"
    config.write_text(yaml.safe_dump({
        "name": "imagenet", "device": "cpu", "batch_size": 12,
        "models": [{"name": "r18-random", "checkpoint": "r18.safetensors"}],
        "datasets": [{"name": "imagenet", "kind": "imagenet", "root": "val", "split": "val"}],
        "benchmarks": [{"type": "clean"},
                       {"type": "corruption", "source": "generated", "params": "imagenet",
                        "corruptions": ["gaussian_noise", "contrast"], "severities": [3]}],
    }))
    summary = run_job(config, tmp_path / "out", progress=False, echo=lambda s: None)
    assert summary.exit_code == 0, summary.frame[["benchmark", "error"]]
    table = pd.read_csv(tmp_path / "out" / "results.csv")
    assert len(table) == 3 and (table["n"] == 12).all() and set(table["status"]) == {"ok"}
    corrupted = table[table["benchmark"] == "corruption"]
    assert set(corrupted["param_set"]) == {"imagenet"}  # the ImageNet-C severities were used
    # labels follow labels.csv's class_index through the wnid folders
    from robust_eval.data import load_split

    data = load_split("imagenet", val, split="val")
    assert data.images.shape[1:] == (3, 224, 224)
    expected = sorted((r["wnid"], r["file"], int(r["class_index"])) for r in rows)
    assert data.labels.tolist() == [c for _, _, c in expected]
    # two corruptions of one severity: mCE is not comparable to AlexNet, so it is not a number
    mce = pd.read_csv(tmp_path / "out" / "tables" / "mce.csv")
    assert math.isnan(mce.loc[0, "mce"]) and "missing" in mce.loc[0, "note"]


def test_mce_table_on_a_complete_grid_uses_the_alexnet_normalisation(tmp_path):
    from corruptions.metrics import ALEXNET_CLEAN_ERROR, ALEXNET_ERRORS, BENCHMARK_CORRUPTIONS

    base = dict(model="m", dataset="imagenet", code_version="v", checkpoint_sha256="s")
    rows = [make_row(correct=60, n=100, benchmark="clean", **base)]
    for name in BENCHMARK_CORRUPTIONS:
        for severity in range(1, 6):
            rows.append(make_row(correct=50 - 5 * severity, n=100, benchmark="corruption",
                                 corruption=name, severity=severity, param_set="imagenet", **base))
    from robust_eval.jobs.store import results_frame

    written = write_pivots(results_frame(rows), tmp_path)
    table = pd.read_csv(written["mce"]).iloc[0]
    errors = [0.5 + 0.05 * s for s in range(1, 6)]
    expected = sum(sum(errors) / sum(ALEXNET_ERRORS[c]) for c in BENCHMARK_CORRUPTIONS) / 15
    relative = sum((sum(errors) - 5 * 0.4) / (sum(ALEXNET_ERRORS[c]) - 5 * ALEXNET_CLEAN_ERROR)
                   for c in BENCHMARK_CORRUPTIONS) / 15
    assert table["mce"] == pytest.approx(expected)
    assert table["relative_mce"] == pytest.approx(relative)
    assert table["clean_error"] == pytest.approx(0.4)
