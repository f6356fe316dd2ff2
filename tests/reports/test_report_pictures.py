"""The picture pages: a job writes examples.npz (images as the model saw them), the report draws
them; a folder without it gets no picture page."""
import numpy as np
import pytest
import torch

from reports.pictures import load_examples, picture_figures


@pytest.fixture(scope="module")
def job_folder(tmp_path_factory):
    from robust_eval.checkpoints import save_checkpoint
    from robust_eval.jobs import parse_config, run_job
    from robust_eval.models import create_model

    folder = tmp_path_factory.mktemp("pictures")
    torch.manual_seed(0)
    model = create_model("tiny_cnn", norm="bn").eval()
    save_checkpoint(model, folder / "m.safetensors", arch="tiny_cnn", norm="bn", num_classes=10,
                    mean=model.mean, std=model.std, input_size=(32, 32))
    config = parse_config({
        "name": "pictures", "models": [{"name": "m", "checkpoint": str(folder / "m.safetensors")}],
        "datasets": [{"name": "digits", "kind": "digits", "limit": 8}],
        "benchmarks": [{"type": "corruption", "corruptions": ["fog", "contrast"],
                        "severities": [2]},
                       {"type": "attack", "attack": "fgsm", "eps": ["2/255", "8/255"]}]},
        source="pictures")
    run_job(config, folder / "out", progress=False, echo=lambda line: None)
    return folder / "out"


def test_the_job_writes_what_the_model_saw(job_folder):
    examples = load_examples(job_folder)
    assert list(examples["corruptions"]) == ["fog", "contrast"]
    assert list(examples["severities"]) == [1, 3, 5]
    assert examples["corrupted"].shape == (2, 3, 3, 3, 32, 32)
    assert examples["corrupted"].dtype == np.uint8
    assert list(examples["attacks"]) == ["fgsm"] and examples["attack_eps"][0] == 8 / 255
    delta = examples["adversarial"][0] - examples["images"].astype(np.float32) / 255
    assert 0 < np.abs(delta).max() <= 8 / 255 + 1e-6  # inside the threat model
    assert examples["corrupted_pred"].shape == (2, 3, 3)


def test_the_report_draws_a_picture_page_when_images_are_there(job_folder, tmp_path):
    from pypdf import PdfReader

    from reports import load_results
    from reports.pdf import build_pdf_report

    titles = [title for title, _ in picture_figures(job_folder, (11.69, 8.27))]
    assert titles == ["Pictures: corruptions", "Pictures: adversarial examples"]
    assert picture_figures(tmp_path, (11.69, 8.27)) == []
    path = build_pdf_report(load_results(job_folder), tmp_path / "r.pdf")
    reader = PdfReader(str(path))
    text = " ".join(page.extract_text() for page in reader.pages)
    assert "What m saw" in text and "Adversarial examples for m" in text
    outline = {item.title: reader.get_destination_page_number(item) for item in reader.outline}
    assert "What m saw" in reader.pages[outline["Pictures"]].extract_text()
