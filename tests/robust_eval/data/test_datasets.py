"""Datasets: npz and torchvision CIFAR layouts, safe pickle reading, download, ImageNet, digits."""
import hashlib
import http.server
import io
import os
import pickle
import tarfile
import threading

import numpy as np
import pytest
import torch

from robust_eval.data import DataError, batches, download_cifar, load_split


def _fake_cifar(n, seed=0, classes=10):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
            rng.integers(0, classes, n).astype(np.int64))


def _write_torchvision_cifar10(folder, n_per_batch=4, protocol=2):
    """cifar-10-batches-py as the official archive holds it: pickled dicts, data N x 3072 (CHW)."""
    folder.mkdir(parents=True)
    expected = {}
    for i, name in enumerate([f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]):
        x, y = _fake_cifar(n_per_batch, seed=i)
        expected[name] = (x, y)
        record = {b"data": x.transpose(0, 3, 1, 2).reshape(n_per_batch, -1),
                  b"labels": [int(v) for v in y], b"batch_label": name.encode()}
        (folder / name).write_bytes(pickle.dumps(record, protocol=protocol))
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
             b"ship", b"truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=protocol))
    return expected


def test_npz_layout_and_limit(tmp_path):
    x, y = _fake_cifar(12)
    np.savez(tmp_path / "test.npz", x=x, y=y)
    data = load_split("cifar10", tmp_path, limit=5)
    assert data.images.dtype == torch.uint8 and data.images.shape == (5, 3, 32, 32)
    assert torch.equal(data.images, torch.from_numpy(x[:5]).permute(0, 3, 1, 2))
    assert data.labels.tolist() == y[:5].tolist() and data.classes[9] == "truck"
    with pytest.raises(ValueError, match="limit must be a positive integer, got 0"):
        load_split("cifar10", tmp_path, limit=0)


def test_cifar100_npz_with_class_names(tmp_path):
    x, y = _fake_cifar(6, classes=100)
    np.savez(tmp_path / "train.npz", x=x, y=y)
    data = load_split("cifar100", tmp_path / "train.npz", split="train")
    assert len(data.classes) == 100 and data.classes[0] == "apple" and data.classes[-1] == "worm"
    assert data.labels.tolist() == y.tolist()


def test_npz_bad_content_is_named(tmp_path):
    x, y = _fake_cifar(4)
    np.savez(tmp_path / "test.npz", x=x.astype(np.float32), y=y)
    with pytest.raises(DataError, match=r"test\.npz: x must be uint8"):
        load_split("cifar10", tmp_path)
    np.savez(tmp_path / "test.npz", x=x, y=y + 10)
    with pytest.raises(DataError, match=r"test\.npz: labels must lie in 0\.\.9 \(10 classes\), "
                                        r"got min 1\d, max 1\d"):
        load_split("cifar10", tmp_path)
    np.savez(tmp_path / "test.npz", images=x)
    with pytest.raises(DataError, match=r"must hold arrays 'x'"):
        load_split("cifar10", tmp_path)


@pytest.mark.parametrize("dataset, title", [("cifar10", "CIFAR-10"), ("cifar100", "CIFAR-100")])
def test_npz_of_the_wrong_image_size_is_not_cifar(tmp_path, dataset, title):
    x, y = _fake_cifar(4)
    np.savez(tmp_path / "test.npz", x=x[:, :16, :16], y=y)
    with pytest.raises(DataError, match=rf"test\.npz: {title} images are 32x32x3, got 16x16x3 "
                                        r"\(x has shape \(4, 16, 16, 3\)\)"):
        load_split(dataset, tmp_path)


def test_npz_with_no_images_or_mismatched_arrays_is_named(tmp_path):
    x, y = _fake_cifar(4)
    np.savez(tmp_path / "test.npz", x=x[:0], y=y[:0])
    with pytest.raises(DataError, match=r"test\.npz: no examples \(0 images\)"):
        load_split("cifar10", tmp_path)
    np.savez(tmp_path / "test.npz", x=x, y=y[:3])
    with pytest.raises(DataError, match=r"test\.npz: x has 4 images but y has 3 labels"):
        load_split("cifar10", tmp_path)
    np.savez(tmp_path / "test.npz", x=x, y=y, classes=np.array(["a", "b"]))
    with pytest.raises(DataError, match=r"test\.npz: CIFAR-10 has 10 classes, but 'classes' "
                                        r"lists 2"):
        load_split("cifar10", tmp_path)


def test_torchvision_batch_with_fewer_labels_than_images(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _write_torchvision_cifar10(folder)
    record = pickle.loads((folder / "test_batch").read_bytes())
    record[b"labels"] = record[b"labels"][:3]
    (folder / "test_batch").write_bytes(pickle.dumps(record))
    with pytest.raises(DataError, match=r"test_batch: 4 images but 'labels' has shape \(3,\)"):
        load_split("cifar10", tmp_path)


def test_every_loader_refuses_empty_sets_and_labels_beyond_its_classes():
    """LabeledImages is where every loader ends: the checks hold for any dataset."""
    from robust_eval.data import LabeledImages

    images = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(DataError, match=r"labels\.csv: no examples"):
        LabeledImages(images[:0], torch.zeros(0, dtype=torch.int64), ["a"], "toy", "labels.csv")
    with pytest.raises(DataError, match=r"toy: labels must lie in 0\.\.1 \(2 classes\), "
                                        r"got min -1, max 0"):
        LabeledImages(images, torch.tensor([0, -1]), ["a", "b"], "toy")


def test_missing_root_and_missing_files_are_named(tmp_path):
    with pytest.raises(DataError, match=r"cifar10 data root .*nowhere does not exist"):
        load_split("cifar10", tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"no cifar100 test data under .*test\.npz.*cifar-100-python"):
        load_split("cifar100", tmp_path)
    with pytest.raises(KeyError, match="unknown dataset 'cifar1'; did you mean 'cifar10'"):
        load_split("cifar1", tmp_path)


@pytest.mark.parametrize("protocol", [2, 5])
def test_torchvision_layout(tmp_path, protocol):
    expected = _write_torchvision_cifar10(tmp_path / "cifar-10-batches-py", protocol=protocol)
    test = load_split("cifar10", tmp_path)
    x, y = expected["test_batch"]
    assert torch.equal(test.images, torch.from_numpy(x).permute(0, 3, 1, 2))
    assert test.labels.tolist() == y.tolist() and test.classes[0] == "airplane"
    train = load_split("cifar10", tmp_path, split="train")
    assert len(train) == 20
    assert torch.equal(train.images[4:8], torch.from_numpy(expected["data_batch_2"][0]).permute(0, 3, 1, 2))


class _RunsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar_pickle_with_code_is_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _write_torchvision_cifar10(folder)
    marker = tmp_path / "executed"
    (folder / "test_batch").write_bytes(pickle.dumps({"data": _RunsCode(marker)}))
    with pytest.raises(DataError, match=r"test_batch: global posix\.system is not allowed"):
        load_split("cifar10", tmp_path)
    assert not marker.exists()
    (folder / "test_batch").write_bytes(b"\x80\x02}q\x00")  # truncated pickle
    with pytest.raises(DataError, match="cannot read CIFAR batch"):
        load_split("cifar10", tmp_path)


@pytest.fixture
def http_root(tmp_path):
    """A 127.0.0.1 HTTP server serving tmp_path/www."""
    www = tmp_path / "www"
    www.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(www), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_from_local_server(tmp_path, http_root):
    www, base = http_root
    staging = tmp_path / "staging"
    expected = _write_torchvision_cifar10(staging / "cifar-10-batches-py")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(staging / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    (www / "cifar-10-python.tar.gz").write_bytes(buffer.getvalue())
    md5 = hashlib.md5(buffer.getvalue()).hexdigest()
    root = tmp_path / "data"
    with pytest.raises(DataError, match="md5 .* does not match the expected 0000"):
        download_cifar("cifar10", root, url=f"{base}/cifar-10-python.tar.gz", md5="0" * 32)
    assert not (root / "cifar-10-batches-py").exists()
    with pytest.raises(DataError, match=r"cannot download cifar10 from .*missing\.tar\.gz"):
        download_cifar("cifar10", root, url=f"{base}/missing.tar.gz")
    data = load_split("cifar10", root, download=True, url=f"{base}/cifar-10-python.tar.gz", md5=md5)
    assert data.labels.tolist() == expected["test_batch"][1].tolist()
    assert not [p for p in root.iterdir() if p.name.startswith(".download")]


def test_digits_offline_split():
    test, train = load_split("digits"), load_split("digits", split="train")
    assert (len(test), len(train)) == (360, 1437)
    assert test.images.shape == (360, 3, 32, 32) and test.images.dtype == torch.uint8
    assert int(test.images.max()) == 255 and int(test.images.min()) == 0
    assert torch.equal(test.images[:, 0], test.images[:, 2])  # gray replicated to RGB
    assert torch.equal(test.images[0, 0, :4, :4], test.images[0, 0, 0, 0].expand(4, 4))  # 4x blocks
    assert sorted(set(test.labels.tolist())) == list(range(10))
    assert torch.equal(load_split("digits", limit=7).labels, test.labels[:7])


def test_batches_scale_and_split():
    images = torch.arange(5 * 3 * 2 * 2, dtype=torch.int64).remainder(256).to(torch.uint8).view(5, 3, 2, 2)
    labels = torch.arange(5)
    got = list(batches(images, labels, 2))
    assert [len(y) for _, y in got] == [2, 2, 1]
    assert got[0][0].dtype == torch.float32 and torch.allclose(got[0][0] * 255, images[:2].float())
    with pytest.raises(ValueError, match="batch_size must be positive"):
        list(batches(images, labels, 0))


def test_real_cifar10_test_set(cifar10_test_npz):
    data = load_split("cifar10", cifar10_test_npz.parent)
    assert data.images.shape == (10000, 3, 32, 32)
    assert torch.bincount(data.labels).tolist() == [1000] * 10
    assert data.labels[:5].tolist() == [3, 8, 8, 0, 6]  # cat, ship, ship, airplane, frog


def test_real_imagenet_samples(imagenet_samples):
    data = load_split("imagenet", imagenet_samples, limit=3)
    assert data.images.shape == (3, 3, 224, 224) and data.images.dtype == torch.uint8
    assert data.labels.tolist() == [0, 10, 20] and data.classes[0] == "tench"
    assert len(data.classes) == 1000


def test_imagenet_wnid_folders(tmp_path):
    from PIL import Image

    val = tmp_path / "val"
    wnids = [f"n{i:08d}" for i in range(1000)]
    for wnid, colour in ((wnids[5], (255, 0, 0)), (wnids[2], (0, 0, 255))):
        (val / wnid).mkdir(parents=True)
        Image.new("RGB", (300, 260), colour).save(val / wnid / "a.JPEG")
    with pytest.raises(DataError, match="has 2 wnid folders, not 1000.*wnids.txt"):
        load_split("imagenet", tmp_path)
    (val / "wnids.txt").write_text("\n".join(wnids))
    data = load_split("imagenet", tmp_path)
    assert data.labels.tolist() == [2, 5] and data.images.shape == (2, 3, 224, 224)
    assert int(data.images[0, 2].float().mean()) > 240 and int(data.images[0, 0].float().mean()) < 15


def test_imagenet_labels_csv_with_bad_class_index_is_named(tmp_path):
    from PIL import Image

    Image.new("RGB", (256, 256)).save(tmp_path / "a.JPEG")
    (tmp_path / "labels.csv").write_text("file,wnid,class_index\na.JPEG,n01440764,tench\n")
    with pytest.raises(DataError, match=r"labels\.csv: class_index 'tench' of a\.JPEG is not an "
                                        r"integer"):
        load_split("imagenet", tmp_path)
    (tmp_path / "labels.csv").write_text("file,wnid,class_index\na.JPEG,n01440764,1000\n")
    with pytest.raises(DataError, match=r"labels must lie in 0\.\.999 \(1000 classes\), got min "
                                        r"1000"):
        load_split("imagenet", tmp_path)
