"""Readers and writers of the CIFAR-10-C .npy layout and the ImageNet-C folder layout."""
import json
import os

import numpy as np
import pytest
import torch

from corruptions import datasets
from corruptions.datasets import (
    CifarC, CifarCWriter, LayoutError, load_cifar_c, load_imagenet_c, write_cifar_c,
    write_cifar_c_labels, write_imagenet_c,
)

N = 6  # images per severity block


def make_blocks(seed=0, n=N):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8) for _ in range(5)]


@pytest.fixture
def cifar_c(tmp_path):
    folder = tmp_path / "CIFAR-10-C"
    labels = np.array([3, 8, 8, 0, 6, 6])
    write_cifar_c_labels(folder, labels)
    blocks = make_blocks()
    write_cifar_c(folder, "fog", blocks)
    write_cifar_c(folder, "gaussian_noise", make_blocks(1))
    return folder, labels, blocks


def leftovers(folder):
    return sorted(p.name for p in folder.rglob("*") if ".partial" in p.name)


def test_round_trip_official_layout(cifar_c):
    folder, labels, blocks = cifar_c
    stored = np.load(folder / "labels.npy")
    assert stored.dtype == np.uint8 and stored.shape == (5 * N,)
    assert (stored == np.tile(labels, 5)).all()
    fog = np.load(folder / "fog.npy")
    assert fog.dtype == np.uint8 and fog.shape == (5 * N, 32, 32, 3)
    assert (fog[2 * N:3 * N] == blocks[2]).all()  # severity 3 = third block

    for root in (folder, folder.parent):  # the folder itself or its parent
        data = CifarC(root, "cifar10")
        assert data.n_per_severity == N and data.num_classes == 10
        assert data.corruptions() == ["gaussian_noise", "fog"]
        images, y = data.load("fog", 4, limit=4)
        assert images.dtype == torch.uint8 and images.shape == (4, 3, 32, 32)
        assert (images.permute(0, 2, 3, 1).numpy() == blocks[3][:4]).all()
        assert y.tolist() == labels[:4].tolist() and y.dtype == torch.int64
    assert leftovers(folder) == []


def test_generated_or_published(cifar_c):
    folder, _, _ = cifar_c
    assert CifarC(folder).generation is None  # no generation.json: published files
    record = {"dataset": "cifar10", "params": "cifar10", "seed": 3, "corruptions": ["fog"]}
    (folder / "generation.json").write_text(json.dumps(record))
    assert CifarC(folder.parent).generation == record
    (folder / "generation.json").write_text("{not json")
    with pytest.raises(LayoutError, match=r"generation\.json is not valid JSON"):
        CifarC(folder)
    (folder / "generation.json").write_text("[1, 2]")
    with pytest.raises(LayoutError, match="expected a JSON object, got list"):
        CifarC(folder)


def test_dataset_folder_mismatch(cifar_c):
    folder, _, _ = cifar_c
    with pytest.raises(LayoutError, match="is CIFAR-10-C, not the cifar100 corruptions"):
        CifarC(folder, "cifar100")
    with pytest.raises(FileNotFoundError, match="CIFAR-100-C/labels.npy"):
        CifarC(folder.parent, "cifar100")


def test_reader_is_memory_mapped(cifar_c):
    folder, _, _ = cifar_c
    assert isinstance(CifarC(folder).array("fog"), np.memmap)


def test_matches_robustbench_loader(cifar_c):
    from robust_eval._compat import install_autoattack_alias

    install_autoattack_alias()  # robustbench imports `autoattack`
    from robustbench.data import load_cifar10c

    folder, labels, blocks = cifar_c
    # robustbench assumes 10000 rows per block: with a tiny fixture only severity 1 lines up.
    x, y = load_cifar10c(4, severity=1, data_dir=str(folder.parent), corruptions=["fog"])
    ours, our_y = load_cifar_c(folder.parent, "fog", 1, limit=4)
    assert torch.equal((x * 255).round().to(torch.uint8), ours)
    assert torch.equal(y.long(), our_y)


def test_float_input_round_trip(tmp_path):
    blocks = make_blocks(2)
    as_float = [torch.from_numpy(b).permute(0, 3, 1, 2).float() / 255 for b in blocks]
    write_cifar_c(tmp_path, "contrast", as_float)
    assert (np.load(tmp_path / "contrast.npy")[:N] == blocks[0]).all()


def test_streaming_writer_needs_every_row(tmp_path):
    writer = CifarCWriter(tmp_path, "snow", N)
    for s, block in zip(range(1, 6), make_blocks()):
        writer.write(s, 0, block[: N - 1])
    with pytest.raises(ValueError, match="rows never written.*severity 1, image 5"):
        writer.commit()
    assert list(tmp_path.iterdir()) == []


def test_writer_error_leaves_nothing(tmp_path):
    (tmp_path / "fog.npy").write_bytes(b"older file")
    with pytest.raises(RuntimeError):
        with CifarCWriter(tmp_path, "fog", N) as writer:
            writer.write(1, 0, make_blocks()[0])
            raise RuntimeError("generator crashed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fog.npy"]
    assert (tmp_path / "fog.npy").read_bytes() == b"older file"


@pytest.mark.parametrize("images, message", [
    (np.zeros((N, 32, 32), np.uint8), "expected a numpy array N,H,W,3"),
    (np.zeros((N, 3, 32, 32), np.uint8), "expected a numpy array N,H,W,3"),
    (torch.zeros(N, 32, 32, 3, dtype=torch.uint8), "expected a torch tensor N,3,H,W"),
    (np.zeros((N, 32, 32, 3), np.int32), "dtype int32"),
    (np.full((N, 32, 32, 3), 2.0, np.float32), r"must lie in \[0, 1\]"),
    (torch.full((N, 3, 32, 32), float("nan")), r"must lie in \[0, 1\]"),
    (np.zeros((N, 16, 16, 3), np.uint8), r"shape \(16, 16, 3\)"),
])
def test_writer_rejects_bad_images(tmp_path, images, message):
    with pytest.raises(ValueError, match=message):
        with CifarCWriter(tmp_path, "fog", N) as writer:
            writer.write(1, 0, images)
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_bad_names_and_severities(tmp_path):
    with pytest.raises(ValueError, match="did you mean 'motion_blur'"):
        CifarCWriter(tmp_path, "motionblur", N)
    with CifarCWriter(tmp_path, "fog", 1) as writer:
        with pytest.raises(ValueError, match="severity 6 is outside 1..5"):
            writer.write(6, 0, make_blocks(n=1)[0])
        for s, block in zip(range(1, 6), make_blocks(n=1)):
            writer.write(s, 0, block)
    with pytest.raises(ValueError, match="expected 5 severity blocks, got 2"):
        write_cifar_c(tmp_path, "fog", make_blocks()[:2])


def test_reader_bad_names_and_severities(cifar_c):
    folder, _, _ = cifar_c
    data = CifarC(folder)
    with pytest.raises(ValueError, match="unknown corruption 'gausian_noise'; did you mean "
                                         "'gaussian_noise'"):
        data.load("gausian_noise", 1)
    for severity in (0, 6):
        with pytest.raises(ValueError, match=f"severity {severity} is outside 1..5"):
            data.load("fog", severity)
    with pytest.raises(ValueError, match="asked for 7 images per severity"):
        data.load("fog", 1, limit=7)


def test_missing_files_are_named(cifar_c, tmp_path):
    folder, _, _ = cifar_c
    with pytest.raises(FileNotFoundError, match=r"corruption file missing: .*frost\.npy "
                                                r"\(present: gaussian_noise, fog\)"):
        CifarC(folder).load("frost", 1)
    with pytest.raises(FileNotFoundError, match="labels.npy missing"):
        CifarC(tmp_path / "nowhere")


def test_truncated_npy(cifar_c):
    folder, _, _ = cifar_c
    path = folder / "fog.npy"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(LayoutError, match=r"fog\.npy is not a readable \.npy file"):
        CifarC(folder).load("fog", 1)
    path.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(LayoutError, match="fog.npy"):
        CifarC(folder).load("fog", 1)


def test_wrong_shape_and_dtype(cifar_c):
    folder, _, blocks = cifar_c
    np.save(folder / "fog.npy", np.concatenate(blocks)[:-1])
    with pytest.raises(LayoutError, match=r"fog\.npy: shape \(29, 32, 32, 3\), expected "
                                          r"\(30, 32, 32, 3\)"):
        CifarC(folder).load("fog", 1)
    np.save(folder / "fog.npy", np.concatenate(blocks).astype(np.float32))
    with pytest.raises(LayoutError, match="fog.npy: dtype float32, expected uint8"):
        CifarC(folder).load("fog", 1)
    np.save(folder / "fog.npy", np.concatenate(blocks).transpose(0, 3, 1, 2))
    with pytest.raises(LayoutError, match="shape"):
        CifarC(folder).load("fog", 1)


def test_bad_labels(tmp_path):
    folder = tmp_path / "CIFAR-10-C"
    folder.mkdir()
    np.save(folder / "labels.npy", np.arange(7, dtype=np.uint8))
    with pytest.raises(LayoutError, match="7 labels is not a positive multiple of 5"):
        CifarC(folder)
    bad = np.tile(np.arange(4, dtype=np.uint8), 5)
    bad[13] = 9
    np.save(folder / "labels.npy", bad)
    with pytest.raises(LayoutError, match="severity block 4 holds other labels"):
        CifarC(folder)
    np.save(folder / "labels.npy", np.tile(np.array([1, 12], np.uint8), 5))
    with pytest.raises(LayoutError, match=r"outside 0..9"):
        CifarC(folder)
    np.save(folder / "labels.npy", np.zeros(10, np.float32))
    with pytest.raises(LayoutError, match="1-D integer array"):
        CifarC(folder)


# ----------------------------------------------------------------------------- ImageNet-C
def smooth_images(n, size=32, seed=0):
    """Smooth images survive JPEG q85 closely, so round trips can be checked numerically."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(n):
        a, b, c = rng.uniform(0.2, 0.8, 3)
        img = np.stack([a + 0.2 * np.sin(6 * x), b + 0.2 * np.cos(5 * y), c + 0.1 * x * y], -1)
        out.append((img.clip(0, 1) * 255).round().astype(np.uint8))
    return np.stack(out)


def test_imagenet_c_round_trip(tmp_path):
    subset = datasets.robustbench_imagenet_subset()
    assert len(subset) == 5000 and subset[0] == "n09468604/ILSVRC2012_val_00015253.JPEG"
    wnids = datasets.imagenet_wnids()
    assert len(wnids) == 1000 and wnids[0] == "n01440764" and wnids == sorted(wnids)
    ids = subset[:5]
    images = smooth_images(5)
    root = tmp_path / "ImageNet-C"
    write_imagenet_c(root, "fog", 2, images[:3], ids[:3])
    write_imagenet_c(root, "fog", 2, images[3:], ids[3:])  # adds to an existing folder
    assert sorted(p.name for p in (root / "fog").iterdir()) == ["2"]  # no temp folders left
    first = root / "fog" / "2" / ids[0]
    assert first.read_bytes()[:2] == b"\xff\xd8"  # JPEG

    x, y, got = load_imagenet_c(tmp_path, "fog", 2, subset="robustbench", limit=5)
    assert got == ids and x.shape == (5, 3, 32, 32) and x.dtype == torch.uint8
    assert y.tolist() == [wnids.index(i.split("/")[0]) for i in ids]
    error = (x.permute(0, 2, 3, 1).float() - torch.from_numpy(images).float()).abs().mean()
    assert error < 3  # JPEG q85 of smooth images

    x2, y2, got2 = load_imagenet_c(root, "fog", 2)  # every file, sorted by (wnid, file)
    assert got2 == sorted(ids)
    x3, y3, _ = load_imagenet_c(root, "fog", 2, class_index="present")
    present = sorted({i.split("/")[0] for i in ids})
    assert y3.tolist() == [present.index(i.split("/")[0]) for i in got2]


def test_imagenet_c_matches_robustbench_class_index(tmp_path):
    """With every wnid present, 'present' indexing (RobustBench's) equals 'all'."""
    mapping = json.loads(datasets._robustbench_helper("imagenet_class_to_id_map.json")
                         .read_text())
    assert all(mapping[w] == i for i, w in enumerate(datasets.imagenet_wnids()))


def test_imagenet_c_errors(tmp_path):
    ids = ["n01440764/ILSVRC2012_val_00000293.JPEG", "n01443537/ILSVRC2012_val_00000236.JPEG"]
    root = tmp_path / "ImageNet-C"
    write_imagenet_c(root, "snow", 1, smooth_images(2), ids)
    with pytest.raises(FileNotFoundError, match=r"ImageNet-C folder missing: .*snow/3"):
        load_imagenet_c(root, "snow", 3)
    with pytest.raises(FileNotFoundError, match="ImageNet-C image missing: .*ILSVRC2012_val_9"):
        load_imagenet_c(root, "snow", 1, subset=[ids[0], "n01440764/ILSVRC2012_val_9.JPEG"])
    with pytest.raises(FileNotFoundError, match="no ImageNet-C layout"):
        load_imagenet_c(tmp_path / "elsewhere", "snow", 1)
    with pytest.raises(ValueError, match="did you mean 'snow'"):
        load_imagenet_c(root, "snwo", 1)
    (root / "snow" / "1" / "n99999999").mkdir()
    with pytest.raises(LayoutError, match="not ImageNet-1k wnids"):
        load_imagenet_c(root, "snow", 1)
    os.rmdir(root / "snow" / "1" / "n99999999")
    (root / "snow" / "1" / ids[1]).write_bytes(b"not a jpeg")
    with pytest.raises(LayoutError, match="ILSVRC2012_val_00000236.JPEG is not a readable image"):
        load_imagenet_c(root, "snow", 1)


def test_imagenet_c_writer_errors_leave_nothing(tmp_path):
    root = tmp_path / "ImageNet-C"
    with pytest.raises(ValueError, match="expected 'wnid/name.JPEG'"):
        write_imagenet_c(root, "fog", 1, smooth_images(1), ["../evil.JPEG"])
    with pytest.raises(ValueError, match="2 images but 1 ids"):
        write_imagenet_c(root, "fog", 1, smooth_images(2), ["n01440764/a.JPEG"])
    with pytest.raises(ValueError, match="outside 1..5"):
        write_imagenet_c(root, "fog", 0, smooth_images(1), ["n01440764/a.JPEG"])

    def boom(*args, **kwargs):
        raise OSError("disk full")

    from PIL import Image

    original = Image.Image.save
    Image.Image.save = boom
    try:
        with pytest.raises(OSError, match="disk full"):
            write_imagenet_c(root, "fog", 1, smooth_images(2),
                             ["n01440764/a.JPEG", "n01440764/b.JPEG"])
    finally:
        Image.Image.save = original
    assert not (root / "fog" / "1").exists()
    assert [p.name for p in (root / "fog").iterdir()] == []
