"""Readers and writers for the published corruption layouts (corruptions.md).

CIFAR-10-C / CIFAR-100-C: a folder with ``labels.npy`` and one ``<corruption>.npy`` per corruption,
uint8 (N, 32, 32, 3) RGB, rows = 5 severity blocks of N/5 images in test-set order. Read through
memory maps, so opening the 2.9 GB set costs nothing; any N divisible by 5 is accepted (tiny
fixtures). ImageNet-C: ``ImageNet-C/<corruption>/<severity>/<wnid>/*.JPEG`` (224 px, JPEG q85).

Tensors here are NCHW (torch); arrays on disk are NHWC (numpy), as published. Writers go through a
temporary file in the target folder and ``os.replace``: an error never leaves a half-written file
under the final name.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from corruptions.metrics import ALL_CORRUPTIONS, SEVERITIES, check_corruption_name, check_severity

PathLike = Union[str, os.PathLike]

CIFAR_C_FOLDERS = {"cifar10": "CIFAR-10-C", "cifar100": "CIFAR-100-C"}
CIFAR_C_NUM_CLASSES = {"CIFAR-10-C": 10, "CIFAR-100-C": 100}
CIFAR_IMAGE_SHAPE = (32, 32, 3)
IMAGENET_C_FOLDER = "ImageNet-C"
IMAGENET_JPEG_QUALITY = 85  # as in make_imagenet_c.py
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
# Written beside the files by `robust-eval corruptions generate`; published sets have none.
GENERATION_FILE = "generation.json"


class LayoutError(ValueError):
    """A file or folder does not follow the published layout."""


# ----------------------------------------------------------------------------- input checks
def to_nhwc_uint8(images, what: str = "images") -> np.ndarray:
    """Torch NCHW or numpy NHWC, uint8 or float in [0, 1] -> numpy NHWC uint8 (RGB).

    Floats are rounded to the nearest level, so uint8 -> float -> uint8 is lossless.
    """
    if isinstance(images, torch.Tensor):
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"{what}: expected a torch tensor N,3,H,W; got shape "
                             f"{tuple(images.shape)}")
        array = images.detach().cpu().permute(0, 2, 3, 1).numpy()
    elif isinstance(images, np.ndarray):
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"{what}: expected a numpy array N,H,W,3; got shape {images.shape}")
        array = images
    else:
        raise TypeError(f"{what}: expected a torch tensor or numpy array, got "
                        f"{type(images).__name__}")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array).all()
        if array.size and (not finite or array.min() < 0 or array.max() > 1):
            seen = f"[{array.min():.4g}, {array.max():.4g}]" if finite else "non-finite values"
            raise ValueError(f"{what}: float images must lie in [0, 1]; got {seen}")
        return np.ascontiguousarray(np.rint(array.astype(np.float64) * 255).astype(np.uint8))
    raise ValueError(f"{what}: dtype {array.dtype} is not uint8 or float in [0, 1]")


def _nhwc_to_tensor(array: np.ndarray) -> torch.Tensor:
    array = np.array(array, copy=True) if not array.flags.writeable else array  # memmap rows
    return torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2).contiguous()


# ----------------------------------------------------------------------------- atomic files
def _temp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = _temp_sibling(path)
    try:
        yield temp
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise


def save_npy_atomic(path: PathLike, array: np.ndarray) -> Path:
    path = Path(path)
    with atomic_path(path) as temp:
        with open(temp, "wb") as handle:
            np.save(handle, array, allow_pickle=False)
            handle.flush()
            os.fsync(handle.fileno())
    return path


# ----------------------------------------------------------------------------- CIFAR-C read
def find_cifar_c_dir(root: PathLike, dataset: Optional[str] = None) -> Path:
    """`root` itself when it holds labels.npy, else root/CIFAR-10-C or root/CIFAR-100-C."""
    root = Path(root)
    if dataset is not None and dataset not in CIFAR_C_FOLDERS:
        raise ValueError(f"dataset {dataset!r} has no CIFAR-C layout (known: "
                         f"{', '.join(CIFAR_C_FOLDERS)})")
    if (root / "labels.npy").is_file():
        if dataset and root.name in CIFAR_C_NUM_CLASSES and root.name != CIFAR_C_FOLDERS[dataset]:
            raise LayoutError(f"{root} is {root.name}, not the {dataset} corruptions "
                              f"({CIFAR_C_FOLDERS[dataset]})")
        return root
    names = [CIFAR_C_FOLDERS[dataset]] if dataset else list(CIFAR_C_FOLDERS.values())
    for name in names:
        if (root / name / "labels.npy").is_file():
            return root / name
    expected = " or ".join(str(root / n / "labels.npy") for n in names)
    raise FileNotFoundError(f"no CIFAR-C layout at {root}: labels.npy missing (looked for "
                            f"{root / 'labels.npy'} and {expected})")


def read_generation(folder: PathLike) -> Optional[dict]:
    """The folder's generation.json (how the built-in generator made its files), or None for
    published files (no such record). Results from a folder with a record are "generated"."""
    path = Path(folder) / GENERATION_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise LayoutError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(record, dict):
        raise LayoutError(f"{path}: expected a JSON object, got {type(record).__name__}")
    return record


def _open_npy(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{what} file missing: {path}")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise LayoutError(f"{path} is not a readable .npy file (truncated or corrupt?): "
                          f"{error}") from None


class CifarC:
    """An opened CIFAR-10-C / CIFAR-100-C folder (labels checked on open, images lazily)."""

    def __init__(self, root: PathLike, dataset: Optional[str] = None,
                 num_classes: Optional[int] = None):
        self.root = find_cifar_c_dir(root, dataset)
        self.num_classes = num_classes or CIFAR_C_NUM_CLASSES.get(self.root.name)
        labels_path = self.root / "labels.npy"
        labels = _open_npy(labels_path, "labels")
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise LayoutError(f"{labels_path}: expected a 1-D integer array, got dtype "
                              f"{labels.dtype} shape {labels.shape}")
        if len(labels) == 0 or len(labels) % len(SEVERITIES):
            raise LayoutError(f"{labels_path}: {len(labels)} labels is not a positive multiple "
                              f"of {len(SEVERITIES)} (one block per severity)")
        labels = np.asarray(labels).astype(np.int64)
        self.n_per_severity = len(labels) // len(SEVERITIES)
        blocks = labels.reshape(len(SEVERITIES), self.n_per_severity)
        differs = np.flatnonzero((blocks != blocks[0]).any(axis=1))
        if len(differs):
            raise LayoutError(f"{labels_path}: severity block {int(differs[0]) + 1} holds other "
                              f"labels than block 1 (expected the test labels repeated "
                              f"{len(SEVERITIES)} times)")
        if labels.min() < 0 or (self.num_classes and labels.max() >= self.num_classes):
            raise LayoutError(f"{labels_path}: labels span [{labels.min()}, {labels.max()}], "
                              f"outside 0..{(self.num_classes or 0) - 1}")
        self.labels = torch.from_numpy(blocks[0].copy())
        self.generation = read_generation(self.root)  # None: published files
        self._arrays = {}

    def __repr__(self) -> str:
        return f"CifarC({str(self.root)!r}, n_per_severity={self.n_per_severity})"

    def corruptions(self) -> List[str]:
        """Known corruption names with a file in the folder, in benchmark order."""
        return [n for n in ALL_CORRUPTIONS if (self.root / f"{n}.npy").is_file()]

    def array(self, name: str) -> np.ndarray:
        """The memory-mapped (N, 32, 32, 3) uint8 array of one corruption, validated."""
        if name in self._arrays:
            return self._arrays[name]
        check_corruption_name(name)
        path = self.root / f"{name}.npy"
        if not path.is_file():
            present = ", ".join(self.corruptions()) or "none"
            raise FileNotFoundError(f"corruption file missing: {path} (present: {present})")
        array = _open_npy(path, f"corruption {name!r}")
        expected = (len(SEVERITIES) * self.n_per_severity,) + CIFAR_IMAGE_SHAPE
        if array.shape != expected:
            raise LayoutError(f"{path}: shape {array.shape}, expected {expected} "
                              f"(5 severity blocks of {self.n_per_severity} images, matching "
                              f"labels.npy)")
        if array.dtype != np.uint8:
            raise LayoutError(f"{path}: dtype {array.dtype}, expected uint8")
        self._arrays[name] = array
        return array

    def images(self, name: str, severity: int, limit: Optional[int] = None,
               start: int = 0) -> torch.Tensor:
        """Rows [start, start+limit) of a severity block as a uint8 N,3,32,32 tensor."""
        severity = check_severity(severity)
        stop = self._stop(start, limit)
        offset = (severity - 1) * self.n_per_severity
        return _nhwc_to_tensor(self.array(name)[offset + start: offset + stop])

    def load(self, name: str, severity: int,
             limit: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """(images, labels) of the first `limit` images of one (corruption, severity) block."""
        images = self.images(name, severity, limit)
        return images, self.labels[: len(images)].clone()

    def _stop(self, start: int, limit: Optional[int]) -> int:
        if limit is not None and limit < 0 or not 0 <= start <= self.n_per_severity:
            raise ValueError(f"rows from {start} with limit {limit} are outside the "
                             f"{self.n_per_severity} images per severity of {self.root}")
        stop = self.n_per_severity if limit is None else start + limit
        if stop > self.n_per_severity:
            raise ValueError(f"asked for {stop} images per severity; {self.root} holds "
                             f"{self.n_per_severity}")
        return stop


def load_cifar_c(root: PathLike, corruption: str, severity: int, *, limit: Optional[int] = None,
                 dataset: Optional[str] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """The first `limit` images (uint8 N,3,32,32) and labels of one CIFAR-C cell."""
    return CifarC(root, dataset).load(corruption, severity, limit)


# ----------------------------------------------------------------------------- CIFAR-C write
def write_cifar_c_labels(folder: PathLike, labels) -> Path:
    """labels.npy = the test labels repeated 5 times, uint8 as published."""
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if labels.ndim != 1 or len(labels) == 0 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels: expected a non-empty 1-D integer array, got dtype "
                         f"{labels.dtype} shape {labels.shape}")
    if labels.min() < 0 or labels.max() > 255:
        raise ValueError(f"labels span [{labels.min()}, {labels.max()}]: not CIFAR class indices")
    return save_npy_atomic(Path(folder) / "labels.npy",
                           np.tile(labels.astype(np.uint8), len(SEVERITIES)))


class CifarCWriter:
    """Streams one ``<corruption>.npy`` into a temp memmap; renamed into place once every row of
    every severity block is written. Use as a context manager: an error discards the file."""

    def __init__(self, folder: PathLike, name: str, n_per_severity: int,
                 image_shape: Tuple[int, int, int] = CIFAR_IMAGE_SHAPE):
        check_corruption_name(name)
        if n_per_severity <= 0:
            raise ValueError(f"n_per_severity must be positive, got {n_per_severity}")
        self.path = Path(folder) / f"{name}.npy"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.n_per_severity = n_per_severity
        self.image_shape = tuple(image_shape)
        self._temp = _temp_sibling(self.path)
        shape = (len(SEVERITIES) * n_per_severity,) + self.image_shape
        self._array = np.lib.format.open_memmap(self._temp, mode="w+", dtype=np.uint8,
                                                shape=shape)
        self._written = np.zeros(shape[0], dtype=bool)

    def write(self, severity: int, start: int, images) -> None:
        """Put `images` (torch NCHW or numpy NHWC) at rows start.. of a severity block."""
        severity = check_severity(severity)
        array = to_nhwc_uint8(images, f"{self.path.name} severity {severity}")
        if array.shape[1:] != self.image_shape:
            raise ValueError(f"{self.path.name}: images of shape {array.shape[1:]} (H,W,C), "
                             f"expected {self.image_shape}")
        if start < 0 or start + len(array) > self.n_per_severity:
            raise ValueError(f"{self.path.name}: rows {start}..{start + len(array)} exceed the "
                             f"{self.n_per_severity} images of a severity block")
        offset = (severity - 1) * self.n_per_severity + start
        self._array[offset: offset + len(array)] = array
        self._written[offset: offset + len(array)] = True

    def commit(self) -> Path:
        missing = np.flatnonzero(~self._written)
        if len(missing):
            self.abort()
            row = int(missing[0])
            raise ValueError(f"{self.path.name}: {len(missing)} rows never written (first: "
                             f"severity {row // self.n_per_severity + 1}, image "
                             f"{row % self.n_per_severity}); file discarded")
        self._array.flush()
        del self._array
        os.replace(self._temp, self.path)
        return self.path

    def abort(self) -> None:
        if hasattr(self, "_array"):
            del self._array
        with contextlib.suppress(FileNotFoundError):
            self._temp.unlink()

    def __enter__(self) -> "CifarCWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def write_cifar_c(folder: PathLike, name: str, blocks: Sequence) -> Path:
    """Write ``<name>.npy`` from 5 equally long severity blocks (torch NCHW or numpy NHWC)."""
    if len(blocks) != len(SEVERITIES):
        raise ValueError(f"{name}: expected {len(SEVERITIES)} severity blocks, got {len(blocks)}")
    arrays = [to_nhwc_uint8(b, f"{name} severity {s}") for s, b in zip(SEVERITIES, blocks)]
    lengths = {len(a) for a in arrays}
    if len(lengths) != 1:
        raise ValueError(f"{name}: severity blocks differ in length {sorted(lengths)}")
    with CifarCWriter(folder, name, len(arrays[0]), arrays[0].shape[1:]) as writer:
        for severity, array in zip(SEVERITIES, arrays):
            writer.write(severity, 0, array)
    return writer.path


# ----------------------------------------------------------------------------- ImageNet-C
def _robustbench_helper(name: str) -> Path:
    """A file of robustbench's helper_files, found without importing robustbench."""
    spec = importlib.util.find_spec("robustbench")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"robustbench is not installed; its helper file {name} is needed")
    path = Path(list(spec.submodule_search_locations)[0]) / "helper_files" / name
    if not path.is_file():
        raise FileNotFoundError(f"robustbench helper file missing: {path}")
    return path


def imagenet_wnids() -> List[str]:
    """The 1000 ImageNet-1k wnids in sorted order (class index = position)."""
    mapping = json.loads(_robustbench_helper("imagenet_class_to_id_map.json").read_text())
    wnids = sorted(mapping)
    if len(wnids) != 1000 or any(mapping[w] != i for i, w in enumerate(wnids)):
        raise LayoutError("robustbench's imagenet_class_to_id_map.json is not the sorted "
                          "1000-wnid list")
    return wnids


def robustbench_imagenet_subset() -> List[str]:
    """RobustBench's fixed 5,000 ImageNet-C images, as 'wnid/ILSVRC2012_val_*.JPEG', in order."""
    lines = _robustbench_helper("imagenet_test_image_ids.txt").read_text().split()
    return [line.strip() for line in lines if line.strip()]


def find_imagenet_c_dir(root: PathLike) -> Path:
    """`root` itself when it holds corruption folders, else root/ImageNet-C."""
    root = Path(root)
    for candidate in (root, root / IMAGENET_C_FOLDER):
        if candidate.is_dir() and any((candidate / n).is_dir() for n in ALL_CORRUPTIONS):
            return candidate
    raise FileNotFoundError(f"no ImageNet-C layout at {root}: expected "
                            f"{root}/<corruption>/<severity>/<wnid>/*.JPEG or the same under "
                            f"{root / IMAGENET_C_FOLDER}")


def list_imagenet_c(root: PathLike, corruption: str, severity: int, *, class_index: str = "all",
                    subset: Union[None, str, Sequence[str]] = None,
                    limit: Optional[int] = None) -> List[Tuple[Path, int]]:
    """(path, label) pairs of one ImageNet-C cell.

    class_index "all": label = position of the wnid among the 1000 sorted ImageNet wnids (what
    a model trained on ImageNet-1k predicts). "present": position among the wnid folders present
    in this severity folder (what RobustBench's loader does; equal to "all" on the full set).
    subset None: every image, sorted by (wnid, file); "robustbench": RobustBench's 5,000 ids in
    their order; or a list of 'wnid/file' ids. Every listed id must exist.
    """
    check_corruption_name(corruption)
    severity = check_severity(severity)
    folder = find_imagenet_c_dir(root) / corruption / str(severity)
    if not folder.is_dir():
        raise FileNotFoundError(f"ImageNet-C folder missing: {folder}")
    present = sorted(d.name for d in folder.iterdir() if d.is_dir())
    if class_index == "all":
        wnids = imagenet_wnids()
        stray = sorted(set(present) - set(wnids))
        if stray:
            raise LayoutError(f"{folder}: folder(s) {stray[:3]} are not ImageNet-1k wnids")
    elif class_index == "present":
        wnids = present
    else:
        raise ValueError(f"class_index {class_index!r}: expected 'all' or 'present'")
    index = {w: i for i, w in enumerate(wnids)}
    if subset is None:
        ids = [f"{w}/{f.name}" for w in present for f in sorted((folder / w).iterdir())
               if f.suffix.lower() in IMAGE_SUFFIXES]
    else:
        ids = robustbench_imagenet_subset() if subset == "robustbench" else list(subset)
    if limit is not None:
        ids = ids[:limit]
    pairs = []
    for item in ids:
        wnid = item.split("/")[0]
        path = folder / item
        if wnid not in index:
            raise LayoutError(f"{item}: class folder {wnid!r} unknown under {folder}")
        if not path.is_file():
            raise FileNotFoundError(f"ImageNet-C image missing: {path}")
        pairs.append((path, index[wnid]))
    if not pairs:
        raise LayoutError(f"no images under {folder}")
    return pairs


def read_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as error:
        raise LayoutError(f"{path} is not a readable image: {error}") from None


def load_imagenet_c(root: PathLike, corruption: str, severity: int, *, class_index: str = "all",
                    subset: Union[None, str, Sequence[str]] = None, limit: Optional[int] = None
                    ) -> Tuple[torch.Tensor, torch.Tensor, List[str]]:
    """(uint8 N,3,H,W images, int64 labels, 'wnid/file' ids) of one ImageNet-C cell."""
    pairs = list_imagenet_c(root, corruption, severity, class_index=class_index, subset=subset,
                            limit=limit)
    arrays = [read_image(p) for p, _ in pairs]
    shape = arrays[0].shape
    for (path, _), array in zip(pairs, arrays):
        if array.shape != shape:
            raise LayoutError(f"{path}: size {array.shape[1]}x{array.shape[0]} differs from "
                              f"{shape[1]}x{shape[0]} of {pairs[0][0]}")
    labels = torch.tensor([label for _, label in pairs], dtype=torch.int64)
    ids = [f"{p.parent.name}/{p.name}" for p, _ in pairs]
    return _nhwc_to_tensor(np.stack(arrays)), labels, ids


def write_imagenet_c(root: PathLike, corruption: str, severity: int, images,
                     ids: Sequence[str], quality: int = IMAGENET_JPEG_QUALITY) -> Path:
    """Save images as root/<corruption>/<severity>/<wnid>/<file> JPEGs (quality 85).

    Written into a hidden temp folder first, then moved into place file by file with os.replace,
    so an error leaves no partial image and no partial new folder.
    """
    check_corruption_name(corruption)
    severity = check_severity(severity)
    array = to_nhwc_uint8(images, f"{corruption} severity {severity}")
    ids = list(ids)
    if len(ids) != len(array):
        raise ValueError(f"{len(array)} images but {len(ids)} ids")
    for item in ids:
        parts = item.split("/")
        if len(parts) != 2 or not all(parts) or ".." in parts \
                or Path(parts[1]).suffix.lower() not in IMAGE_SUFFIXES[:2]:
            raise ValueError(f"id {item!r}: expected 'wnid/name.JPEG'")
    from PIL import Image

    target = Path(root) / corruption / str(severity)
    temp = target.parent / f".{severity}.{uuid.uuid4().hex[:8]}.partial"
    try:
        for item, image in zip(ids, array):
            path = temp / item
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path, format="JPEG", quality=quality, optimize=True)
        if not target.exists():
            os.replace(temp, target)
        else:
            for item in ids:
                (target / item).parent.mkdir(exist_ok=True)
                os.replace(temp / item, target / item)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return target
