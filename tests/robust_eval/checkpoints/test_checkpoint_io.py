"""Checkpoints: own format, plain/legacy/official/zoo files, and refusal of bad files by name."""
import json
import os
import warnings

import pytest
import torch

from robust_eval.checkpoints import (CheckpointError, file_sha256, load_checkpoint,
                                     read_checkpoint_metadata, read_state_dict, save_checkpoint,
                                     strip_prefixes, weights_sha256)
from robust_eval.models import create_model

STATS = dict(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    model = create_model("tiny_cnn", num_classes=10, **STATS)
    model.train()
    model(torch.rand(8, 3, 16, 16))  # move BN running stats off their defaults
    return model.eval()


def _same_outputs(a, b, size=16):
    x = torch.rand(4, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))


def test_own_format_round_trip_with_metadata(tiny, tmp_path):
    path = tmp_path / "tiny.safetensors"
    sha = save_checkpoint(tiny, path, arch="tiny_cnn", norm="bn", num_classes=10,
                          input_size=(16, 16), recipe={"epochs": 3, "lr": 0.1},
                          metrics={"clean_accuracy": 0.5}, **STATS)
    assert sha == file_sha256(path) and len(sha) == 64
    assert not [p for p in tmp_path.iterdir() if p.name != "tiny.safetensors"]  # no temp left
    meta = read_checkpoint_metadata(path)
    assert meta["arch"] == "tiny_cnn" and meta["norm"] == "bn" and meta["num_classes"] == 10
    assert meta["mean"] == [0.5, 0.4, 0.3] and meta["input_size"] == [16, 16]
    assert meta["recipe"] == {"epochs": 3, "lr": 0.1} and meta["metrics"]["clean_accuracy"] == 0.5
    assert meta["weights_sha256"] == weights_sha256(tiny.model.state_dict())
    loaded = load_checkpoint(path)  # everything from metadata
    assert not loaded.training and loaded.mean == STATS["mean"] and loaded.std == STATS["std"]
    assert loaded.robust_eval_meta["checkpoint_sha256"] == sha
    assert loaded.robust_eval_meta["format"] == "robust-eval"
    _same_outputs(tiny, loaded)


def test_save_refuses_stats_that_differ_from_the_model(tiny, tmp_path):
    with pytest.raises(ValueError, match="wrong preprocessing"):
        save_checkpoint(tiny, tmp_path / "x.safetensors", arch="tiny_cnn", norm="bn",
                        num_classes=10, mean=(0.5,) * 3, std=(0.5,) * 3, input_size=(16, 16))
    assert not list(tmp_path.iterdir())


def test_tampered_and_truncated_safetensors_are_refused(tiny, tmp_path):
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(tiny, path, arch="tiny_cnn", norm="bn", num_classes=10, input_size=(16, 16),
                    **STATS)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # flip bits inside the last tensor
    tampered = tmp_path / "tampered.safetensors"
    tampered.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"tampered\.safetensors: weights do not match"):
        load_checkpoint(tampered)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(CheckpointError, match=r"truncated\.safetensors: .*(corrupt|readable)"):
        load_checkpoint(truncated)


@pytest.mark.parametrize("prefix", ["", "module.", "model.", "module.model."])
def test_plain_state_dict_with_prefixes_and_inferred_arch(tiny, tmp_path, prefix):
    path = tmp_path / "plain.pt"
    torch.save({prefix + k: v for k, v in tiny.model.state_dict().items()}, path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_checkpoint(path, **STATS)
    assert loaded.robust_eval_meta["arch"] == "tiny_cnn" and loaded.robust_eval_meta["norm"] == "bn"
    assert loaded.robust_eval_meta["format"] == "state-dict"
    assert not caught  # stats were given, nothing to warn about
    _same_outputs(tiny, loaded)


def test_legacy_pickle_dict_and_default_stats_warning(tiny, tmp_path):
    path = tmp_path / "legacy.th"
    torch.save({"state_dict": {"module." + k: v for k, v in tiny.model.state_dict().items()},
                "best_prec1": 12.5}, path, _use_new_zipfile_serialization=False)
    with pytest.warns(UserWarning, match="records no mean/std"):
        loaded = load_checkpoint(path, arch="tiny_cnn")
    assert loaded.mean == (0.5, 0.5, 0.5)  # tiny_cnn's documented default
    assert loaded.robust_eval_meta["source_info"] == {"best_prec1": 12.5}


def test_wrong_architecture_names_keys_and_suggests(tiny, tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(tiny.model.state_dict(), path)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path, arch="resnet20", norm="bn", **STATS)
    text = str(error.value)
    assert "tiny.pt does not fit resnet20" in text and "missing keys: bn1.weight" in text
    assert "unexpected keys: norm1.weight" in text and "it fits tiny_cnn with norm 'bn'" in text


def test_shape_mismatch_is_named(tiny, tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(tiny.model.state_dict(), path)
    with pytest.raises(CheckpointError, match=r"shape mismatch: linear.weight: checkpoint "
                                              r"\(10, 64\) vs model \(5, 64\)"):
        load_checkpoint(path, arch="tiny_cnn", norm="bn", num_classes=5, **STATS)


def test_truncated_torch_file_and_missing_file(tiny, tmp_path):
    path = tmp_path / "full.pt"
    torch.save(tiny.model.state_dict(), path)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match=r"cut\.pt: truncated or corrupt"):
        load_checkpoint(cut)
    with pytest.raises(CheckpointError, match=r"nope\.pt does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pt is empty"):
        load_checkpoint(empty)


class _RunsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_needing_code_execution_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": _RunsCode(marker)}, path)
    with pytest.raises(CheckpointError, match=r"refusing to load .*evil\.pt: .*code execution "
                                              r"to load \(.*GLOBAL posix\.system"):
        load_checkpoint(path)
    assert not marker.exists()


def test_non_tensor_entries_and_no_state_dict(tmp_path):
    path = tmp_path / "odd.pt"
    torch.save({"epoch": 3, "notes": "x"}, path)
    with pytest.raises(CheckpointError, match=r"odd\.pt: no state_dict found; top-level keys"):
        read_state_dict(path)


def test_strip_prefixes_only_when_every_key_has_one():
    assert strip_prefixes({"module.a": 1, "module.b": 2}) == {"a": 1, "b": 2}
    assert strip_prefixes({"module.a": 1, "b": 2}) == {"module.a": 1, "b": 2}


def test_official_convnorm_checkpoint_imports(tmp_path):
    """A file in the official trainer layout: 182 keys, 20 running_V, `module.`, optimizer."""
    torch.manual_seed(0)
    source = create_model("resnet18", norm="convnorm").model.train()
    source(torch.rand(2, 3, 32, 32))  # one training step gives running_V its official shapes
    state = {"module." + k: v for k, v in source.state_dict().items()
             if not (k.endswith("num_batches_tracked") and "batch_norm" not in k)}
    assert len(state) == 182 and sum(k.endswith("running_V") for k in state) == 20
    assert state["module.conv1.running_V"].shape == (64, 34, 18)
    assert state["module.layer2.0.shortcut.0.running_V"].shape == (128, 1, 1)
    path = tmp_path / "model_best.pth"
    momentum = {i: {"momentum_buffer": torch.zeros(3)} for i in range(2)}
    torch.save({"arch": "ResNet", "epoch": 120, "state_dict": state,
                "optimizer": {"state": momentum, "param_groups": [{"lr": 0.001, "params": [0, 1]}]},
                "monitor_best": 0.9312}, path)
    with pytest.warns(UserWarning, match="records no mean/std"):
        model = load_checkpoint(path)
    meta = model.robust_eval_meta
    assert (meta["arch"], meta["norm"], meta["format"]) == ("resnet18", "convnorm", "official-convnorm")
    assert meta["source_info"] == {"arch": "ResNet", "epoch": 120, "monitor_best": 0.9312}
    assert model.mean == (0.4914, 0.4822, 0.4465)  # the official CIFAR-10 normalisation
    conv1 = model.model.conv1
    torch.testing.assert_close(conv1.running_V, state["module.conv1.running_V"])
    assert conv1.num_batches_tracked.item() > 0  # trained estimate is used in eval
    source.eval()
    x = torch.rand(2, 3, 32, 32)
    mean = torch.tensor(model.mean).view(1, 3, 1, 1)
    std = torch.tensor(model.std).view(1, 3, 1, 1)
    with torch.no_grad():
        reference = source((x - mean) / std)
        torch.testing.assert_close(model(x), reference)
    # running_V really drives the eval output: the same file with another conv1.running_V differs
    state["module.conv1.running_V"] = state["module.conv1.running_V"] * 2
    other = tmp_path / "model_other.pth"
    torch.save({"arch": "ResNet", "epoch": 120, "state_dict": state, "optimizer": {},
                "monitor_best": 0.9}, other)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        changed = load_checkpoint(other)
    with torch.no_grad():
        assert not torch.allclose(changed(x), reference)


def test_official_layout_into_wrong_norm_is_refused(tmp_path):
    source = create_model("resnet20", norm="convnorm").model
    path = tmp_path / "cn.pth"
    torch.save({"arch": "ResNet", "epoch": 1, "state_dict": source.state_dict(),
                "optimizer": {}, "monitor_best": 0.1}, path)
    with pytest.raises(CheckpointError, match=r"cn\.pth does not fit resnet20 \(norm 'bn'.*"
                                              r"unexpected keys: conv1\.running_V"):
        load_checkpoint(path, norm="bn")
    assert load_checkpoint(path, mean=(0.5,) * 3, std=(0.5,) * 3).robust_eval_meta["norm"] == "convnorm"


def test_metadata_of_non_own_files_is_empty(tiny, tmp_path):
    path = tmp_path / "plain.pt"
    torch.save(tiny.model.state_dict(), path)
    assert read_checkpoint_metadata(path) == {}
    meta_path = tmp_path / "m.safetensors"
    save_checkpoint(tiny, meta_path, arch="tiny_cnn", norm="bn", num_classes=10,
                    input_size=(32, 32), extra={"note": "x"}, **STATS)
    assert json.loads(json.dumps(read_checkpoint_metadata(meta_path)))["extra"] == {"note": "x"}


@pytest.mark.parametrize("norm", ["convnorm", "sn", "oni"])
def test_own_format_round_trip_for_trained_non_bn_norms(tmp_path, norm):
    """running_V (ConvNorm), power-iteration vectors (SN), ONI scales survive save/load."""
    torch.manual_seed(0)
    model = create_model("tiny_cnn", norm=norm, **STATS).train()
    for _ in range(2):
        model(torch.rand(4, 3, 16, 16))
    model.eval()
    path = tmp_path / f"{norm}.safetensors"
    save_checkpoint(model, path, arch="tiny_cnn", norm=norm, num_classes=10, input_size=(16, 16),
                    **STATS)
    loaded = load_checkpoint(path)
    assert loaded.robust_eval_meta["norm"] == norm
    _same_outputs(model, loaded)
    if norm == "convnorm":
        assert loaded.model.conv1.running_V.shape == (16, 18, 10)


def _with_metadata(tiny, path, text):
    """A safetensors file whose robust_eval metadata is `text` (as a hand edit would leave)."""
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in tiny.model.state_dict().items()}
    save_file(state, str(path), metadata={"format": "robust-eval", "robust_eval": text})
    return path


@pytest.mark.parametrize("text, match", [
    ('["tiny_cnn", "bn"]', r"list\.safetensors: metadata field 'robust_eval' must be a JSON "
                           r"object, got a JSON list"),
    ('{"arch": "tiny_cnn", "mean": "0.5"}', r"list\.safetensors: metadata field "
                                            r"robust_eval\.mean must be a list of numbers"),
    ('{"num_classes": true}', r"robust_eval\.num_classes must be a positive integer"),
    ('{"recipe": [1]}', r"robust_eval\.recipe must be a JSON object"),
])
def test_metadata_of_the_wrong_json_type_names_file_and_field(tiny, tmp_path, text, match):
    path = _with_metadata(tiny, tmp_path / "list.safetensors", text)
    for reader in (read_checkpoint_metadata, read_state_dict, load_checkpoint):
        with pytest.raises(CheckpointError, match=match):
            reader(path)


def test_random_bytes_and_directories_are_named_for_what_they_are(tmp_path):
    import numpy as np

    noise = tmp_path / "noise.pt"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    folder = tmp_path / "run"
    folder.mkdir()
    for reader in (read_checkpoint_metadata, read_state_dict, load_checkpoint):
        with pytest.raises(CheckpointError, match=r"noise\.pt: not a checkpoint file "
                                                  r"\(unrecognised format\)$"):
            reader(noise)
        with pytest.raises(CheckpointError, match=r"run is a directory, not a checkpoint file"):
            reader(folder)


def test_corrupt_legacy_pickle_is_corrupt_not_code_execution(tmp_path):
    """torch says 'weights only load failed' for any bad pickle; only a blocked GLOBAL is code."""
    path = tmp_path / "bad.pt"
    path.write_bytes(b"\x80\x02" + bytes(range(200, 256)) * 10)
    with pytest.raises(CheckpointError, match=r"bad\.pt: truncated or corrupt checkpoint "
                                              r"\(Unsupported operand 200\)"):
        load_checkpoint(path)
