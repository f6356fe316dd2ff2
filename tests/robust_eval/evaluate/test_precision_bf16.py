"""precision bf16: a cell's model runs under bf16 autocast, and on a trained model its predictions
mostly equal fp32's (scikit-learn digits, tiny_cnn trained here)."""
import pytest
import torch
import torch.nn.functional as F

from robust_eval.data.digits import load_digits
from robust_eval.evaluate import CellContext
from robust_eval.models import create_model


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    train, test = load_digits(split="train", size=12), load_digits(split="test", size=12)
    model = create_model("tiny_cnn", norm="bn")
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    x, y = train.images[:700].float() / 255, train.labels[:700]
    for _ in range(25):  # full batch, ~3 s
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model.eval(), test


def predictions(model, data, precision):
    ctx = CellContext(cell={"precision": precision}, device="cpu", cache=None)
    with torch.no_grad(), ctx.autocast():
        return model(data.images.float() / 255)


def test_bf16_runs_the_model_in_bf16_and_mostly_agrees_with_fp32(trained):
    model, test = trained
    fp32, bf16 = predictions(model, test, "fp32"), predictions(model, test, "bf16")
    assert fp32.dtype == torch.float32 and bf16.dtype == torch.bfloat16
    assert (fp32.argmax(1) == test.labels).float().mean() > 0.8  # a trained model
    assert not torch.equal(fp32, bf16.float())  # really computed in bf16
    assert (fp32.argmax(1) == bf16.argmax(1)).float().mean() >= 0.97


def test_bf16_cells_count_the_bf16_predictions(trained, measure):
    model, test = trained
    bf16 = predictions(model, test, "bf16").argmax(1)
    for benchmark, raw in (("clean", None),
                           ("corruption", {"corruptions": ["contrast"], "severities": [1]})):
        rows = {p: measure(benchmark, model, test, raw, precision=p)[0]
                for p in ("fp32", "bf16")}
        assert rows["bf16"]["precision"] == "bf16" and rows["fp32"]["precision"] == "fp32"
        assert abs(rows["bf16"]["correct"] - rows["fp32"]["correct"]) <= 0.03 * len(test)
    clean = measure("clean", model, test, precision="bf16")[0]
    assert clean["correct"] == int((bf16 == test.labels).sum())


def test_bf16_pgd_keeps_its_strength_on_the_trained_model(trained, measure):
    model, test = trained
    raw = {"attack": "pgd", "eps": [4 / 255], "steps": 5}
    rows = {p: measure("attack", model, test, raw, precision=p)[0] for p in ("fp32", "bf16")}
    assert rows["bf16"]["precision"] == "bf16"
    assert rows["fp32"]["correct"] < 0.9 * int((predictions(model, test, "fp32").argmax(1)
                                                == test.labels).sum())  # the attack bites
    assert abs(rows["bf16"]["correct"] - rows["fp32"]["correct"]) <= 0.03 * len(test)
