"""`robust-eval corruptions generate|download` end to end (real CIFAR-10 images, local server)."""
import functools
import hashlib
import http.server
import json
import tarfile
import threading

import numpy as np
import pytest
import torch

from corruptions.datasets import CifarC, write_cifar_c, write_cifar_c_labels
from robust_eval.cli import main


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_generate_cifar10_layout(cifar10_test_npz, tmp_path, capsys):
    from corruptions.generate import apply_corruption
    from robust_eval.data import load_split

    out = tmp_path / "out"

    def generate(corruptions, seed):
        return main(["corruptions", "generate", "--dataset", "cifar10", "--data-root",
                     str(cifar10_test_npz.parent), "--params", "cifar10", "--out", str(out),
                     "--corruptions", corruptions, "--limit", "6", "--seed", str(seed),
                     "--batch-size", "4", "--no-progress"])

    assert generate("gaussian_noise,pixelate", 2) == 0
    folder = out / "CIFAR-10-C"
    assert sorted(p.name for p in folder.iterdir()) == [
        "gaussian_noise.npy", "generation.json", "labels.npy", "pixelate.npy"]
    clean = load_split("cifar10", cifar10_test_npz.parent, "test", limit=6)
    labels = np.load(folder / "labels.npy")
    assert labels.dtype == np.uint8 and labels.tolist() == clean.labels.tolist() * 5
    noise = np.load(folder / "gaussian_noise.npy")
    assert noise.dtype == np.uint8 and noise.shape == (30, 32, 32, 3)
    for severity in (1, 5):
        expected = apply_corruption(clean.images, "gaussian_noise", severity, params="cifar10",
                                    seed=2, indices=torch.arange(6))
        block = noise[(severity - 1) * 6: severity * 6]
        assert (block == expected.permute(0, 2, 3, 1).numpy()).all()
    assert not (noise[:6] == clean.images.permute(0, 2, 3, 1).numpy()).all()
    record = json.loads((folder / "generation.json").read_text())
    assert (record["params"], record["seed"], record["n_per_severity"]) == ("cifar10", 2, 6)
    assert record["corruptions"] == ["gaussian_noise", "pixelate"]
    assert CifarC(folder).corruptions() == ["gaussian_noise", "pixelate"]
    assert CifarC(folder).generation == record  # generated, not published

    # adding a corruption with the same settings extends the set ...
    assert generate("fog", 2) == 0
    assert json.loads((folder / "generation.json").read_text())["corruptions"][-1] == "fog"
    # ... other settings would mix two sets: refused
    capsys.readouterr()
    assert generate("fog", 3) == 2
    assert "seed 2 -> 3" in capsys.readouterr().err
    assert not any(".partial" in p.name for p in folder.iterdir())


def test_generate_errors(cifar10_test_npz, tmp_path, capsys):
    root = str(cifar10_test_npz.parent)
    base = ["corruptions", "generate", "--dataset", "cifar10", "--data-root", root, "--out",
            str(tmp_path / "o"), "--limit", "2", "--no-progress"]
    assert main(base + ["--corruptions", "jpeg_compresion"]) == 2
    assert "did you mean 'jpeg_compression'" in capsys.readouterr().err
    published = tmp_path / "p" / "CIFAR-10-C"
    published.mkdir(parents=True)
    (published / "labels.npy").write_bytes(b"")
    assert main(base[:-5] + ["--out", str(tmp_path / "p"), "--corruptions", "fog",
                             "--limit", "2"]) == 2
    assert "was not written by this command" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(base + ["--limit", "0"])
    assert main(base[:4] + ["--data-root", str(tmp_path / "nothing"), "--out",
                            str(tmp_path / "q"), "--corruptions", "fog"]) == 2
    assert "nothing" in capsys.readouterr().err
    assert not (tmp_path / "q").exists()


def test_generate_engine_flag(cifar10_test_npz, tmp_path, capsys):
    root = str(cifar10_test_npz.parent)
    base = ["corruptions", "generate", "--dataset", "cifar10", "--data-root", root,
            "--corruptions", "gaussian_noise", "--limit", "3", "--no-progress"]
    written = []
    for engine in ("auto", "torch"):  # both the torch engine
        out = tmp_path / engine
        assert main(base + ["--out", str(out), "--engine", engine]) == 0
        written.append(np.load(out / "CIFAR-10-C" / "gaussian_noise.npy"))
    assert (written[0] == written[1]).all()
    capsys.readouterr()
    for engine, why in (("numba", "the numba engine was removed"), ("cuda", "not an engine")):
        assert main(base + ["--out", str(tmp_path / engine), "--engine", engine]) == 2
        err = capsys.readouterr().err
        assert why in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / engine).exists()


def test_generate_defaults_to_the_15_and_takes_groups():
    from corruptions import ALL_CORRUPTIONS, BENCHMARK_CORRUPTIONS, EXTRA_CORRUPTIONS
    from robust_eval.cli import build_parser
    from robust_eval.cli.corruptions import _corruption_names

    args = build_parser().parse_args(["corruptions", "generate", "--dataset", "cifar10",
                                      "--out", "x"])
    assert _corruption_names(args.corruptions) == list(BENCHMARK_CORRUPTIONS)
    assert len(BENCHMARK_CORRUPTIONS) == 15
    assert _corruption_names("all") == list(ALL_CORRUPTIONS) and len(ALL_CORRUPTIONS) == 19
    assert _corruption_names(" extra ") == list(EXTRA_CORRUPTIONS)
    assert _corruption_names("fog,snow") == ["fog", "snow"]


def test_download_cli(tmp_path, capsys):
    src = tmp_path / "srv" / "CIFAR-100-C"
    write_cifar_c_labels(src, np.array([42, 99]))
    write_cifar_c(src, "fog", [np.zeros((2, 32, 32, 3), np.uint8)] * 5)
    archive = tmp_path / "srv" / "CIFAR-100-C.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(src, arcname="CIFAR-100-C")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=str(tmp_path / "srv"))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/CIFAR-100-C.tar"
    try:
        root = tmp_path / "data"
        assert main(["corruptions", "download", "--dataset", "cifar100", "--root", str(root),
                     "--url", url, "--md5", "f" * 32, "--no-progress"]) == 2
        assert "checksum mismatch" in capsys.readouterr().err
        assert list(root.iterdir()) == []
        assert main(["corruptions", "download", "--dataset", "cifar100", "--root", str(root),
                     "--url", url, "--md5", md5, "--no-progress"]) == 0
        assert "ready in" in capsys.readouterr().out
        data = CifarC(root, "cifar100")
        assert data.num_classes == 100 and data.labels.tolist() == [42, 99]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.mark.slow
def test_generate_imagenet_c_folders(imagenet_samples, tmp_path):
    from corruptions.datasets import find_imagenet_c_dir, load_imagenet_c, read_generation
    from robust_eval.data import load_split

    out = tmp_path / "out"
    assert main(["corruptions", "generate", "--dataset", "imagenet", "--data-root",
                 str(imagenet_samples), "--out", str(out), "--corruptions", "contrast",
                 "--limit", "2", "--no-progress"]) == 0
    clean = load_split("imagenet", imagenet_samples, "val", limit=2)
    for severity in range(1, 6):
        images, labels, ids = load_imagenet_c(out, "contrast", severity)
        assert images.shape == (2, 3, 224, 224) and images.dtype == torch.uint8
        assert sorted(labels.tolist()) == sorted(clean.labels.tolist())
    assert all(i.endswith(".JPEG") for i in ids)
    record = read_generation(find_imagenet_c_dir(out))
    assert record["params"] == "imagenet" and record["corruptions"] == ["contrast"]


def test_generate_crash_leaves_no_partial_file(cifar10_test_npz, tmp_path, monkeypatch):
    import corruptions.generate as generate

    real = generate.apply_corruption
    calls = []

    def flaky(images, name, severity, **kwargs):
        calls.append((name, severity))
        if name == "fog" and severity == 3:
            raise RuntimeError("device lost")
        return real(images, name, severity, **kwargs)

    monkeypatch.setattr(generate, "apply_corruption", flaky)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="device lost"):
        main(["corruptions", "generate", "--dataset", "cifar10", "--data-root",
              str(cifar10_test_npz.parent), "--out", str(out), "--corruptions",
              "brightness,fog", "--limit", "3", "--no-progress"])
    folder = out / "CIFAR-10-C"
    assert sorted(p.name for p in folder.iterdir()) == ["brightness.npy", "generation.json",
                                                        "labels.npy"]
    assert json.loads((folder / "generation.json").read_text())["corruptions"] == ["brightness"]
    assert CifarC(folder).corruptions() == ["brightness"]


def test_a_failed_generation_leaves_nothing_that_looks_like_output(tmp_path, capsys,
                                                                   cifar10_test_npz, monkeypatch):
    out = tmp_path / "gen"
    common = ["corruptions", "generate", "--dataset", "cifar10", "--data-root",
              str(cifar10_test_npz.parent), "--limit", "4", "--out", str(out),
              "--corruptions", "fog", "--no-progress"]
    with pytest.raises(SystemExit):
        main(common + ["--seed", "-1"])
    assert "expected an integer >= 0" in capsys.readouterr().err and not out.exists()

    import corruptions.generate as generate

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(generate, "apply_corruption", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        main(common)
    assert not out.exists()


def test_the_command_names_the_leaf_generation_record():
    from corruptions import datasets
    from robust_eval.cli import corruptions as command

    assert command.GENERATION_FILE == datasets.GENERATION_FILE
