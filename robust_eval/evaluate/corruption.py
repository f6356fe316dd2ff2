"""The `corruption` benchmark of `robust-eval evaluate`: accuracy per (corruption, severity).

Two sources:
- ``generate`` (default): the clean images are corrupted on the fly by corruptions.generate with
  the chosen parameter set (cifar10 = CIFAR-10-C severities, imagenet = ImageNet-C severities) and
  seed; deterministic per (seed, image index, corruption, severity), whatever the batch size.
- a folder in the published layout (CIFAR-10-C / CIFAR-100-C .npy files, or ImageNet-C JPEG
  folders): the first N images of each severity block, N = the clean set's size (--limit). For
  CIFAR-C the published labels must equal the clean test labels (same order), else it refuses.
  For ImageNet-C, RobustBench's fixed 5,000-image list is used, in its order (first N).

Plain entry point for the job runner: `corruption_rows(model, data, ...)`.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from robust_eval.evaluate import Benchmark, CellPlan, register_benchmark
from robust_eval.evaluate.clean import outcome_measurement, predict

DEFAULT_SEVERITIES = (1, 2, 3, 4, 5)
Device = Union[str, torch.device]


def default_params(dataset: str) -> str:
    """ImageNet-C severities for ImageNet data, CIFAR-10-C severities for 32-px sets."""
    return "imagenet" if str(dataset).lower().startswith("imagenet") else "cifar10"


def parse_corruptions(text: Optional[str]) -> List[str]:
    """A group (benchmark = the 15, default; all = the 19; extra) or a comma list of names."""
    from corruptions.metrics import check_corruption_name

    if text is None or not text.strip():
        text = "benchmark"
    if text.strip() in GROUPS:
        return list(corruption_group(text.strip()))
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        check_corruption_name(name)
    if len(set(names)) != len(names):
        raise ValueError(f"corruptions listed twice in {text!r}")
    return names


def parse_severities(text: Optional[str]) -> List[int]:
    """'1-5', '1,3,5', '2' -> sorted unique severities in 1..5."""
    from corruptions.metrics import check_severity

    if text is None or not text.strip():
        return list(DEFAULT_SEVERITIES)
    values = set()
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                low, high = (int(v) for v in part.split("-", 1))
                if low > high:
                    raise ValueError
                values.update(range(low, high + 1))
            else:
                values.add(int(part))
        except ValueError:
            raise ValueError(f"severities {text!r}: expected e.g. 1-5 or 1,3,5") from None
    return sorted(check_severity(v) for v in values)


# ----------------------------------------------------------------------------- sources
def _generated(data, name: str, severity: int, params: str, seed: int, batch_size: int,
               device: Device) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    from corruptions.generate import apply_corruption

    for start in range(0, len(data.labels), batch_size):
        clean = data.images[start:start + batch_size].to(device)
        indices = torch.arange(start, start + len(clean))
        yield (apply_corruption(clean, name, severity, params=params, seed=seed,
                                indices=indices),
               data.labels[start:start + batch_size])


class _Published:
    """Published files under `folder` for the evaluated dataset."""

    def __init__(self, folder: Path, data, dataset: str):
        from corruptions.datasets import CifarC, find_imagenet_c_dir

        self.n = len(data.labels)
        self.imagenet = dataset.lower().startswith("imagenet")
        if self.imagenet:
            self.root = find_imagenet_c_dir(folder)
            if self.n > 5000:
                raise ValueError(f"ImageNet-C is evaluated on RobustBench's 5,000-image list; "
                                 f"the clean set has {self.n} images (use --limit 5000)")
            self._label_files()
            return
        cifar_dataset = dataset if dataset in ("cifar10", "cifar100") else None
        if cifar_dataset is None:
            raise ValueError(f"no published corruption layout for dataset {dataset!r}")
        self.cifar = CifarC(folder, cifar_dataset)
        self.root = self.cifar.root
        self._label_files()
        if self.n > self.cifar.n_per_severity:
            raise ValueError(f"{self.root} holds {self.cifar.n_per_severity} images per "
                             f"severity; the clean set has {self.n} (use --limit)")
        published = self.cifar.labels[: self.n]
        clean = data.labels.cpu().long()
        if not torch.equal(published, clean):
            first = int((published != clean).nonzero()[0])
            raise ValueError(f"{self.root}/labels.npy differs from the clean {dataset} test "
                             f"labels at image {first} ({int(published[first])} vs "
                             f"{int(clean[first])}): not the same set or order (use the test "
                             f"split in its original order)")

    def _label_files(self) -> None:
        """Files the generator wrote carry generation.json: they are generated, never published."""
        import json

        record = self.root / "generation.json"
        self.generation = json.loads(record.read_text()) if record.is_file() else None
        self.label = (self.generation or {}).get("params", "published")
        self.seed = (self.generation or {}).get("seed")

    def batches(self, name: str, severity: int, batch_size: int
                ) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        if not self.imagenet:
            for start in range(0, self.n, batch_size):
                count = min(batch_size, self.n - start)
                yield (self.cifar.images(name, severity, count, start),
                       self.cifar.labels[start:start + count])
            return
        from corruptions.datasets import list_imagenet_c, read_image

        pairs = list_imagenet_c(self.root, name, severity, subset="robustbench", limit=self.n)
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start:start + batch_size]
            arrays = [read_image(p) for p, _ in chunk]
            if len({a.shape for a in arrays}) != 1:
                raise ValueError(f"images of differing sizes under {self.root}/{name}/{severity}")
            images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
            yield images.contiguous(), torch.tensor([y for _, y in chunk], dtype=torch.int64)


# ----------------------------------------------------------------------------- evaluation
def _predict_stream(model: nn.Module, batches, device: Device, num_classes: Optional[int]
                    ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(predictions, labels) over a stream of (uint8 images, labels) batches."""
    predictions, all_labels = [], []
    for images, labels in batches:
        if images.dtype != torch.uint8:
            raise ValueError(f"corrupted images came back as {images.dtype}, expected uint8")
        predictions.append(predict(model, images, len(images), device, num_classes))
        all_labels.append(labels.cpu())
    return torch.cat(predictions), torch.cat(all_labels)


def corruption_rows(model: nn.Module, data, *, corruptions: Optional[Sequence[str]] = None,
                    severities: Sequence[int] = DEFAULT_SEVERITIES, params: Optional[str] = None,
                    source: Union[str, Path] = "generate", seed: int = 0, batch_size: int = 256,
                    base: Optional[Dict] = None, device: Device = "cpu",
                    progress: bool = False) -> List[Dict]:
    """One schema row per (corruption, severity), benchmark="corruption".

    `data` is a LabeledImages (uint8 N,3,H,W + labels). `params` defaults by dataset;
    `source` is "generate" or a folder in a published layout. Rows carry params ("cifar10",
    "imagenet" or "published:<folder name>") and seed (None for published files).
    """
    from tqdm.auto import tqdm

    from corruptions.metrics import check_severity
    from robust_eval.schema import make_row

    base = dict(base or {})
    dataset = str(base.get("dataset") or getattr(data, "name", ""))
    names = list(corruptions) if corruptions is not None else parse_corruptions(None)
    names = parse_corruptions(",".join(names))
    severities = sorted({check_severity(s) for s in severities})
    if not severities:
        raise ValueError("no severities requested")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if len(data.labels) == 0:
        raise ValueError("the clean set is empty")
    model.eval()
    num_classes = getattr(data, "num_classes", None)
    generate = isinstance(source, str) and source == "generate"
    if generate:
        params = params or default_params(dataset)
        if params not in ("cifar10", "imagenet"):
            raise ValueError(f"corruption params {params!r}: expected 'cifar10' or 'imagenet'")
        published = None
        label, row_seed = params, seed
    else:
        folder = Path(source)
        if not folder.is_dir():
            raise FileNotFoundError(f"--corruption-source {folder}: not 'generate' and not a "
                                    f"folder")
        if params is not None:
            raise ValueError("corruption params apply to generated corruptions only; the "
                             f"published files in {folder} have their own")
        published = _Published(folder, data, dataset)
        label, row_seed = published.label, published.seed
    rows = []
    bar = tqdm(total=len(names) * len(severities), desc="corruption cells", unit="cell",
               disable=None if progress else True)  # None: only on a terminal
    for name in names:
        for severity in severities:
            start = time.perf_counter()
            if generate:
                stream = _generated(data, name, severity, params, seed, batch_size, device)
            else:
                stream = published.batches(name, severity, batch_size)
            predictions, labels = _predict_stream(model, stream, device, num_classes)
            correct, n = int((predictions == labels).sum()), len(labels)
            fields = dict(base)
            fields.update(benchmark="corruption", corruption=name, severity=severity,
                          seed=row_seed, param_set=label, seconds=time.perf_counter() - start,
                          params={"files": str(published.root)} if published else None)
            rows.append(make_row(correct=correct, n=n, **fields))
            bar.update(1)
    bar.close()
    return rows


GROUPS = ("benchmark", "all", "extra", "all19")  # all19: the older name of all


def corruption_group(name: str) -> Tuple[str, ...]:
    """benchmark = the 15, all = the 19, extra = the 4 (corruptions.params)."""
    from corruptions.params import corruption_group as leaf_group

    return leaf_group("all" if name == "all19" else name)


@register_benchmark
class Corruption(Benchmark):
    name = "corruption"
    fields = ("source", "path", "params", "corruptions", "severities")
    help = "accuracy per (corruption, severity), generated on the fly or read from files"

    def add_arguments(self, parser) -> None:
        g = parser.add_argument_group("corruption benchmark (--benchmark corruption)")
        g.add_argument("--corruptions", default=None,
                       help="comma-separated names, 'benchmark' (the 15, default) or 'all' (19)")
        g.add_argument("--severities", default="1-5", help="e.g. 1-5 (default) or 1,3,5")
        g.add_argument("--corruption-params", choices=["cifar10", "imagenet"], default=None,
                       help="severity parameter set for generated corruptions (default: imagenet "
                            "for ImageNet data, else cifar10); never mix the two")
        g.add_argument("--corruption-source", default="generate",
                       help="'generate' (default) or a folder with published CIFAR-10-C / "
                            "CIFAR-100-C .npy files or ImageNet-C JPEG folders")
        g.add_argument("--corruption-seed", type=int, default=0,
                       help="seed of generated corruptions (default 0)")

    def options_from_args(self, args, cli_name):
        raw: Dict = {"type": self.name, "seed": args.corruption_seed}
        text = args.corruptions
        raw["corruptions"] = ("benchmark" if text is None or not text.strip() else
                              text.strip() if text.strip() in GROUPS else
                              [n.strip() for n in text.split(",") if n.strip()])
        try:
            raw["severities"] = parse_severities(args.severities)
        except ValueError as error:
            raise ValueError(f"--severities: {error}") from None
        if args.corruption_params:
            raw["params"] = args.corruption_params
        if args.corruption_source not in (None, "generate"):
            raw.update(source="files", path=args.corruption_source)
        return raw

    def parse(self, raw, check, path, job_seed):
        from corruptions.params import ALL_CORRUPTIONS

        options: Dict = {"source": check.choice(raw.get("source", "auto"), f"{path}.source",
                                                ("auto", "files", "generated"))}
        if "path" in raw:
            options["path"] = check.path(raw["path"], f"{path}.path")
        elif options["source"] == "files":
            raise check.fail(f"{path}.path", "source 'files' needs the folder of the published "
                                             "CIFAR-10-C / ImageNet-C files")
        options["params"] = check.choice(raw.get("params", "auto"), f"{path}.params",
                                         ("auto", "cifar10", "imagenet"))
        names = raw.get("corruptions", "benchmark")
        if isinstance(names, str) and names in GROUPS:
            names = list(corruption_group(names))
        names = check.sequence(names, f"{path}.corruptions", allow_scalar=True)
        for i, name in enumerate(names):
            check.choice(name, f"{path}.corruptions[{i}]", ALL_CORRUPTIONS)
        if len(set(names)) != len(names):
            raise check.fail(f"{path}.corruptions", "lists a corruption twice")
        options["corruptions"] = list(names)
        options["severities"] = check.integers(raw.get("severities", [1, 2, 3, 4, 5]),
                                               f"{path}.severities", minimum=1, maximum=5)
        return options

    def expand(self, options, seed, dataset_kind=None):
        param_set = options["params"]
        if param_set == "auto":
            param_set = default_params(dataset_kind or "")
        for corruption in options["corruptions"]:
            source = _corruption_source(options, corruption)
            extra = {"path": options["path"]} if source == "files" else {}
            for severity in options["severities"]:
                params = {"corruption": corruption, "severity": severity, "source": source}
                if source == "generated":
                    params["param_set"] = param_set
                yield CellPlan(params, seed if source == "generated" else 0, extra)

    def columns(self, params):
        return {"corruption": params["corruption"], "severity": params["severity"],
                "param_set": params.get("param_set", "published")}

    def label(self, params, seed):
        return f"{params['corruption']} s{params['severity']}"

    def run(self, cell, ctx):
        p = cell["params"]
        model, data = ctx.model(), ctx.data()
        if p["source"] == "files":
            published = _Published(Path(cell["extra"]["path"]), data,
                                   str(cell["dataset_spec"]["kind"]))
            stream = published.batches(p["corruption"], p["severity"], ctx.batch_size)
            predictions, labels = _predict_stream(model, stream, ctx.device, data.num_classes)
            return [outcome_measurement(predictions, labels, param_set=published.label,
                                        seed=published.seed,
                                        details={"files": str(published.root)})]
        corrupted = ctx.cache.corrupted(data, cell["dataset_spec"], cell["limit"], p,
                                        cell["seed"])
        with ctx.bar(len(data), "corrupted images") as bar:
            predictions = predict(model, corrupted, ctx.batch_size, ctx.device,
                                  num_classes=data.num_classes, progress=bar.update)
        return [outcome_measurement(predictions, data.labels)]


def _corruption_source(options: Dict, corruption: str) -> str:
    """auto -> files when the published file for this corruption exists, else generated."""
    source = options["source"]
    if source != "auto":
        return source
    folder = options.get("path")
    if folder and ((Path(folder) / f"{corruption}.npy").is_file()
                   or (Path(folder) / corruption).is_dir()):
        return "files"
    return "generated"
