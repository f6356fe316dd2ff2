"""`robust-eval corruptions generate|download`: build or fetch corrupted test sets.

generate writes the official layouts from the clean test set:
  cifar10/cifar100 -> OUT/CIFAR-10-C (or CIFAR-100-C)/<name>.npy + labels.npy (5 severity blocks
  of N rows, N = --limit or the whole test set), plus generation.json (how it was made);
  imagenet -> OUT/ImageNet-C/<name>/<severity>/<wnid>/<file>.JPEG (quality 85).
Each file appears only once complete. download fetches the published CIFAR-10-C / CIFAR-100-C.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import List

from robust_eval.cli import CliError, command_help
from robust_eval.cli import parse_device as _device
from robust_eval.cli import positive_int as _positive_int

GENERATION_FILE = "generation.json"  # corruptions.datasets.GENERATION_FILE, without its imports


def register(subparsers) -> None:
    p = subparsers.add_parser("corruptions", help=command_help("corruptions"),
                              description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="corruptions_command", metavar="ACTION")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    g = sub.add_parser("generate", help="write CIFAR-10-C / ImageNet-C style files from a clean "
                                        "test set with the built-in generator")
    g.add_argument("--dataset", required=True, choices=["cifar10", "cifar100", "imagenet"])
    g.add_argument("--data-root", help="clean dataset folder (test.npz, torchvision layout, or "
                                       "ImageNet val folder)")
    g.add_argument("--params", choices=["cifar10", "imagenet"], default=None,
                   help="severity parameter set (default: imagenet for imagenet, else cifar10)")
    g.add_argument("--out", required=True, help="output folder (gets CIFAR-10-C/ or ImageNet-C/)")
    g.add_argument("--corruptions", default="benchmark",
                   help="comma-separated names, or a group: 'benchmark' (the 15, default), "
                        "'extra' (the 4 others) or 'all' (19)")
    g.add_argument("--limit", type=_positive_int, help="the first N test images only")
    g.add_argument("--seed", type=_seed, default=0, help="seed of the random corruptions "
                                                         "(an integer >= 0, default 0)")
    g.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    g.add_argument("--batch-size", type=_positive_int, default=500)
    g.add_argument("--engine", default="auto", metavar="{auto,torch}",
                   help="both are the torch engine (auto is kept for existing scripts)")
    g.add_argument("--no-progress", action="store_true")
    g.set_defaults(func=run_generate)

    d = sub.add_parser("download", help="download and extract CIFAR-10-C / CIFAR-100-C "
                                        "(Zenodo; resumable, MD5-checked)")
    d.add_argument("--dataset", required=True, choices=["cifar10", "cifar100"])
    d.add_argument("--root", required=True, help="folder that gets CIFAR-10-C/ (or CIFAR-100-C/)")
    d.add_argument("--url", help="mirror URL (the official MD5 and size still apply unless "
                                 "--md5 is given)")
    d.add_argument("--md5", help="expected MD5 of the archive at --url")
    d.add_argument("--keep-archive", action="store_true", help="keep the .tar after extracting")
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=run_download)


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _corruption_names(text: str) -> List[str]:
    from corruptions.params import GROUPS, corruption_group
    from robust_eval.evaluate.corruption import parse_corruptions

    if text.strip() in GROUPS:
        return list(corruption_group(text.strip()))
    try:
        return parse_corruptions(text)
    except ValueError as error:
        raise CliError(f"--corruptions: {error}") from None


def _check_existing(folder: Path, record: dict) -> None:
    """Never mix files from two different generations (or with published files)."""
    if not folder.exists():
        return
    meta = folder / GENERATION_FILE
    if meta.is_file():
        old = json.loads(meta.read_text())
        keys = ("dataset", "params", "seed", "n_per_severity")
        differ = [k for k in keys if old.get(k) != record[k]]
        if differ:
            shown = ", ".join(f"{k} {old.get(k)!r} -> {record[k]!r}" for k in differ)
            raise CliError(f"{folder} already holds a set generated with other settings "
                           f"({shown}); choose another --out")
    elif any(folder.iterdir()):
        raise CliError(f"{folder} exists and was not written by this command (no "
                       f"{GENERATION_FILE}); choose another --out")


def _write_record(folder: Path, record: dict, names: List[str]) -> None:
    from corruptions.datasets import atomic_path

    meta = folder / GENERATION_FILE
    done = []
    if meta.is_file():
        done = json.loads(meta.read_text()).get("corruptions", [])
    record = dict(record, corruptions=[n for n in dict.fromkeys(done + names)])
    with atomic_path(meta) as temp:
        temp.write_text(json.dumps(record, indent=2) + "\n")


def run_generate(args) -> int:
    import torch

    with torch.inference_mode():  # scoped: main() may run inside a longer process
        return _generate(args)


def _generate(args) -> int:
    from corruptions.datasets import CIFAR_C_FOLDERS, IMAGENET_C_FOLDER
    from robust_eval.data import load_split
    from robust_eval.schema import code_version

    names = _corruption_names(args.corruptions)
    device = _device(args.device)
    if args.engine not in ("auto", "torch"):
        why = "the numba engine was removed" if args.engine == "numba" else "not an engine"
        raise CliError(f"--engine {args.engine}: {why}; use auto or torch (both the torch engine)")
    params = args.params or ("imagenet" if args.dataset == "imagenet" else "cifar10")
    data = load_split(args.dataset, args.data_root, "val" if args.dataset == "imagenet"
                      else "test", args.limit)
    n = len(data.labels)
    folder_name = IMAGENET_C_FOLDER if args.dataset == "imagenet" \
        else CIFAR_C_FOLDERS[args.dataset]
    folder = Path(args.out) / folder_name
    record = {"dataset": args.dataset, "params": params, "seed": args.seed,
              "n_per_severity": n, "source": str(getattr(data, "source", "")),
              "generator": "corruptions.generate.apply_corruption",
              "code_version": code_version()}
    _check_existing(folder, record)
    created = next((d for d in [*reversed(folder.parents), folder] if not d.exists()), None)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        _write_set(folder, names, data, params, args, device, record)
    except BaseException:
        # A set is output once generation.json lists a finished corruption; before that,
        # nothing of a failed first run may stay behind looking like one.
        if created is not None and not (folder / GENERATION_FILE).exists():
            shutil.rmtree(created, ignore_errors=True)
        raise
    print(f"wrote {len(names)} corruption(s) x 5 severities x {len(data.labels)} images to "
          f"{folder}")
    return 0


def _write_set(folder, names, data, params, args, device, record) -> None:
    from tqdm.auto import tqdm

    from corruptions.datasets import CifarCWriter, write_cifar_c_labels
    from corruptions.generate import apply_corruption

    n = len(data.labels)
    ids = _imagenet_ids(data) if args.dataset == "imagenet" else None
    if ids is None:
        if tuple(data.images.shape[2:]) != (32, 32):
            raise CliError(f"{args.dataset} images are {tuple(data.images.shape[2:])}, the "
                           f"CIFAR-C layout needs 32x32")
        write_cifar_c_labels(folder, data.labels)
    bar = tqdm(total=len(names) * 5 * n, unit="img", desc="corrupting",
               disable=True if args.no_progress else None)
    for name in names:
        bar.set_postfix_str(name)
        if ids is None:
            with CifarCWriter(folder, name, n) as writer:
                for start, severity, images in _corrupted(data, name, params, args, device,
                                                          apply_corruption):
                    writer.write(severity, start, images.cpu())
                    bar.update(len(images))
        else:
            from corruptions.datasets import write_imagenet_c

            for start, severity, images in _corrupted(data, name, params, args, device,
                                                      apply_corruption):
                write_imagenet_c(folder, name, severity, images.cpu(),
                                 ids[start:start + len(images)])
                bar.update(len(images))
        _write_record(folder, record, [name])
    bar.close()


def _corrupted(data, name, params, args, device, apply_corruption):
    import torch

    for start in range(0, len(data.labels), args.batch_size):
        clean = data.images[start:start + args.batch_size].to(device)
        indices = torch.arange(start, start + len(clean))
        for severity in range(1, 6):
            yield start, severity, apply_corruption(clean, name, severity, params=params,
                                                    seed=args.seed, indices=indices,
                                                    engine=args.engine)


def _imagenet_ids(data) -> List[str]:
    """'wnid/file.JPEG' per image, from the clean loader's file names and class indices."""
    from corruptions.datasets import imagenet_wnids

    files = (getattr(data, "extra", None) or {}).get("files")
    if not files or len(files) != len(data.labels):
        raise CliError("the imagenet loader gave no file names; cannot name ImageNet-C files")
    wnids = imagenet_wnids()
    return [f"{wnids[int(y)]}/{Path(f).stem}.JPEG" for f, y in zip(files, data.labels)]


def run_download(args) -> int:
    from corruptions.download import DownloadError, download_cifar_c

    try:
        folder = download_cifar_c(args.dataset, args.root, url=args.url, md5=args.md5,
                                  keep_archive=args.keep_archive, progress=not args.no_progress)
    except DownloadError as error:
        raise CliError(str(error)) from None
    print(f"{args.dataset} corruptions ready in {folder}")
    return 0
