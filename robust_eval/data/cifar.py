"""CIFAR-10/100 from test.npz/train.npz or torchvision's python-pickle layout, plus download.

The torchvision batches are pickles; they are read with an unpickler that only admits the numpy
array constructors, so a tampered file cannot run code.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import torch

from robust_eval.data import DATASETS, DataError, LabeledImages

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]
CIFAR100_CLASSES = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus "
    "butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch "
    "crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo "
    "keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse "
    "mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy "
    "porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper "
    "snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television "
    "tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm").split()

# torchvision's layout: folder, batch files per split, meta file, label key, class-name key.
LAYOUT: Dict[str, dict] = {
    "cifar10": dict(folder="cifar-10-batches-py", meta="batches.meta", label_key="labels",
                    names_key="label_names", classes=CIFAR10_CLASSES,
                    train=[f"data_batch_{i}" for i in range(1, 6)], test=["test_batch"],
                    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                    md5="c58f30108f718f92721af3b95e74349a"),
    "cifar100": dict(folder="cifar-100-python", meta="meta", label_key="fine_labels",
                     names_key="fine_label_names", classes=CIFAR100_CLASSES,
                     train=["train"], test=["test"],
                     url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                     md5="eb9058c3a382ffc7106e4002c42a8d85"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        return super().find_class(module, name)


def _read_batch(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"missing CIFAR file {path}")
    try:
        with open(path, "rb") as f:
            obj = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except Exception as error:  # truncated, corrupt, or would need code execution
        raise DataError(f"cannot read CIFAR batch {path}: {error}") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path} does not hold a CIFAR batch dict")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _read_torchvision(dataset: str, folder: Path, split: str) -> Tuple[np.ndarray, np.ndarray, List[str]]:
    layout = LAYOUT[dataset]
    xs, ys = [], []
    for name in layout["train" if split == "train" else "test"]:
        batch = _read_batch(folder / name)
        if "data" not in batch or layout["label_key"] not in batch:
            raise DataError(f"{folder / name} lacks 'data' or {layout['label_key']!r}")
        data = np.asarray(batch["data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3072:
            raise DataError(f"{folder / name}: data must be N x 3072, got {data.shape}")
        labels = np.asarray(batch[layout["label_key"]], dtype=np.int64)
        if labels.shape != (len(data),):
            raise DataError(f"{folder / name}: {len(data)} images but "
                            f"{layout['label_key']!r} has shape {labels.shape}")
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(labels)
    classes = layout["classes"]
    if (folder / layout["meta"]).is_file():
        meta = _read_batch(folder / layout["meta"])
        classes = [c.decode() if isinstance(c, bytes) else str(c)
                   for c in meta.get(layout["names_key"], classes)]
    return np.concatenate(xs), np.concatenate(ys), classes


def _read_npz(path: Path, dataset: str) -> Tuple[np.ndarray, np.ndarray, List[str]]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "x" not in npz.files or "y" not in npz.files:
                raise DataError(f"{path} must hold arrays 'x' (uint8 NHWC) and 'y'; has {npz.files}")
            x, y = npz["x"], npz["y"]
            classes = [str(c) for c in npz["classes"]] if "classes" in npz.files else None
    except DataError:
        raise
    except Exception as error:
        raise DataError(f"cannot read {path}: {error}") from None
    title = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}[dataset]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise DataError(f"{path}: x must be uint8 N,H,W,3, got {x.dtype} {x.shape}")
    if x.shape[1:] != (32, 32, 3):
        raise DataError(f"{path}: {title} images are 32x32x3, got {x.shape[1]}x{x.shape[2]}x3 "
                        f"(x has shape {x.shape})")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: y must be a 1-D array of integer labels, got {y.dtype} {y.shape}")
    if len(y) != len(x):
        raise DataError(f"{path}: x has {len(x)} images but y has {len(y)} labels")
    expected = LAYOUT[dataset]["classes"]
    if classes is not None and len(classes) != len(expected):
        raise DataError(f"{path}: {title} has {len(expected)} classes, but 'classes' lists "
                        f"{len(classes)}")
    return x.transpose(0, 3, 1, 2), y.astype(np.int64), classes or expected


def _find(dataset: str, root: Optional[Union[str, Path]], split: str):
    if root is None:
        raise DataError(f"{dataset} needs a data root (--data-root)")
    root = Path(root)
    file_split = "train" if split == "train" else "test"
    if root.is_file() and root.suffix == ".npz":
        return "npz", root
    candidates = [root / f"{file_split}.npz", root / dataset / f"{file_split}.npz"]
    for path in candidates:
        if path.is_file():
            return "npz", path
    folder = LAYOUT[dataset]["folder"]
    for path in (root / folder, root):
        if (path / LAYOUT[dataset][file_split][0]).is_file():
            return "torchvision", path
    if not root.exists():
        raise DataError(f"{dataset} data root {root} does not exist")
    raise DataError(f"no {dataset} {file_split} data under {root}: looked for "
                    f"{candidates[0].name}, {dataset}/{candidates[0].name} and {folder}/"
                    f"{LAYOUT[dataset][file_split][0]} (use download=True to fetch it)")


def _load(dataset: str, root=None, split: str = "test", limit=None, download: bool = False,
          url: Optional[str] = None, md5: Optional[str] = None) -> LabeledImages:
    if download:
        download_cifar(dataset, root, url=url, md5=md5)
    kind, path = _find(dataset, root, split)
    if kind == "npz":
        x, y, classes = _read_npz(path, dataset)
    else:
        x, y, classes = _read_torchvision(dataset, path, split)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return LabeledImages(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y),
                         list(classes), dataset, str(path))


@DATASETS.register("cifar10")
def load_cifar10(root=None, split: str = "test", limit=None, **kwargs) -> LabeledImages:
    return _load("cifar10", root, split, limit, **kwargs)


@DATASETS.register("cifar100")
def load_cifar100(root=None, split: str = "test", limit=None, **kwargs) -> LabeledImages:
    return _load("cifar100", root, split, limit, **kwargs)


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_cifar(dataset: str, root: Union[str, Path], url: Optional[str] = None,
                   md5: Optional[str] = None, timeout: float = 60.0) -> Path:
    """Fetch and unpack the official archive into root (torchvision layout); no-op when present.

    The official URL is checked against torchvision's md5; for another `url` pass `md5` to check.
    """
    if dataset not in LAYOUT:
        raise ValueError(f"download supports {sorted(LAYOUT)}, not {dataset!r}")
    layout = LAYOUT[dataset]
    root = Path(root)
    target = root / layout["folder"]
    if all((target / n).is_file() for n in layout["train"] + layout["test"]):
        return target
    if url is None:
        url, md5 = layout["url"], md5 or layout["md5"]
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as tmp:
        archive = Path(tmp) / "archive.tar.gz"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(archive, "wb") as out:
                shutil.copyfileobj(response, out)
        except OSError as error:
            raise DataError(f"cannot download {dataset} from {url}: {error}") from None
        if md5 is not None and _md5(archive) != md5:
            raise DataError(f"{url}: md5 {_md5(archive)} does not match the expected {md5}")
        unpacked = Path(tmp) / "unpacked"
        try:
            with tarfile.open(archive, "r:gz") as tar:
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(unpacked, filter="data")  # no absolute paths, links out, ...
                else:  # pragma: no cover - Python < 3.11.4
                    tar.extractall(unpacked)
        except (tarfile.TarError, OSError, EOFError) as error:
            raise DataError(f"{url}: not a readable .tar.gz ({error})") from None
        if not (unpacked / layout["folder"]).is_dir():
            raise DataError(f"{url}: archive lacks the folder {layout['folder']}/")
        if target.exists():
            shutil.rmtree(target)
        os.replace(unpacked / layout["folder"], target)
    return target
