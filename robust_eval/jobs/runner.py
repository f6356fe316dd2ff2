"""Run a job config: prepare models, expand the grid, skip finished cells, run the rest, and
write results.csv/.parquet, pivot tables and run.json into the output folder.

    from robust_eval.jobs import run_job
    summary = run_job("configs/cifar10.yaml", out_dir="runs/c10", executor="local")
    summary.exit_code  # 0 when every cell of the grid finished ok, 1 when any failed
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import pandas as pd

from reports.schema import write_atomic
from robust_eval.jobs.config import JobConfig, ModelSpec, load_config
from robust_eval.jobs.grid import Cell, canonical_json, expand, model_identity
from robust_eval.jobs.store import ResultStore

LOG = logging.getLogger("robust_eval.jobs")
STATUS_LABELS = {"ok": "done", "failed": "failed", "corrupt": "corrupt", "pending": "pending"}


@dataclass
class RunSummary:
    out_dir: Path
    cells: List[Cell]
    status_before: Dict[str, str]  # key -> ok|failed|corrupt|pending before this run
    ran: int = 0
    failed: List[Cell] = field(default_factory=list)  # failed in the final state
    frame: Optional[pd.DataFrame] = None
    dry_run: bool = False
    seconds: float = 0.0
    outputs: Dict[str, Path] = field(default_factory=dict)

    @property
    def skipped(self) -> int:
        return sum(1 for s in self.status_before.values() if s == "ok")

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


# ----------------------------------------------------------------------------- models
def default_cache_dir() -> Path:
    env = os.environ.get("ROBUST_EVAL_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "robust-eval"


def _train_run_dir(spec: ModelSpec) -> Path:
    """Where a `train:` model is trained and cached; named by what decides its weights."""
    train = dict(spec.train or {})
    cache = Path(train.pop("cache_dir", None) or default_cache_dir() / "trained")
    ident = json.dumps({"arch": spec.arch, "norm": spec.norm, "num_classes": spec.num_classes,
                        "mean": spec.mean, "std": spec.std, "train": train}, sort_keys=True,
                       default=str)
    digest = hashlib.sha256(ident.encode()).hexdigest()[:16]
    return cache / f"{spec.arch}-{spec.norm}-{train.get('dataset', 'digits')}-{digest}"


def train_and_cache(spec: ModelSpec, device: str):
    """Train a `train:` model once; later runs find the finished run and reuse its checkpoint."""
    from robust_eval.train import train_model

    train = dict(spec.train or {})
    train.pop("cache_dir", None)
    run_dir = _train_run_dir(spec)
    options: Dict[str, Any] = {}
    for key in ("epochs", "lr", "batch_size", "weight_decay", "momentum", "augment",
                "milestones"):
        if key in train:
            options[key] = tuple(train[key]) if key == "milestones" else train[key]
    if "limit" in train:
        options["train_limit"] = train["limit"]
    if spec.mean:
        options["mean"] = spec.mean
    if spec.std:
        options["std"] = spec.std
    result = train_model(run_dir, arch=spec.arch, norm=spec.norm,
                         dataset=train.get("dataset", "digits"), data_root=train.get("root"),
                         recipe=train.get("recipe", "standard"), seed=train.get("seed", 0),
                         num_classes=spec.num_classes, device=device, **options)
    return Path(result.best_checkpoint or result.last_checkpoint), result.trained_epochs


def prepare_models(config: JobConfig, *, device: str, train: bool = True,
                   echo: Callable[[str], None] = lambda s: None
                   ) -> Dict[str, Dict[str, Any]]:
    """name -> {spec, identity, error}: checkpoint hashes, trained demo models, missing files.

    A missing checkpoint is not fatal here: its cells fail one by one with a clear error."""
    from robust_eval.checkpoints import file_sha256

    prepared: Dict[str, Dict[str, Any]] = {}
    for spec in config.models:
        spec = replace(spec)
        error = None
        if spec.source == "robustbench":
            from robust_eval.checkpoints import robustbench_path

            spec.model_dir = spec.model_dir or str(default_cache_dir() / "robustbench")
            spec.checkpoint = str(robustbench_path(spec.robustbench, spec.model_dir,
                                                   spec.zoo_dataset, spec.threat_model))
        elif spec.source == "train":
            run_dir = _train_run_dir(spec)
            if train:
                echo(f"model {spec.name}: {spec.arch}/{spec.norm} trained on "
                     f"{spec.train.get('dataset', 'digits')}, cached in {run_dir}")
                try:
                    started = time.time()
                    path, epochs = train_and_cache(spec, device)
                    spec.checkpoint = str(path)
                    how = f"trained {epochs} epoch(s)" if epochs else \
                        "reused the cached checkpoint"
                    echo(f"model {spec.name}: {how} ({time.time() - started:.1f} s): {path}")
                except Exception as exc:  # noqa: BLE001 - recorded on the model's cells
                    error = f"training model {spec.name!r} failed: {type(exc).__name__}: {exc}"
                    LOG.error("%s", error)
                    echo(error)
            else:
                from robust_eval.train import BEST_FILE, LAST_FILE, STATE_FILE

                for name in (BEST_FILE, LAST_FILE):
                    if (run_dir / name).is_file() and (run_dir / STATE_FILE).is_file():
                        spec.checkpoint = str(run_dir / name)
                        break
        sha = None
        if spec.checkpoint and Path(spec.checkpoint).is_file():
            sha = file_sha256(spec.checkpoint)
        identity = model_identity(spec, sha)
        if spec.source == "train" and sha is None:
            identity.pop("missing_checkpoint", None)
            identity["untrained"] = str(_train_run_dir(spec).name)
            if error is None and train:
                error = f"model {spec.name!r}: training produced no checkpoint"
        prepared[spec.name] = {"spec": spec, "identity": identity, "error": error,
                               "sha256": sha}
    return prepared


# ----------------------------------------------------------------------------- planning
def plan(config: JobConfig, prepared: Dict[str, Dict[str, Any]], code_version: str
         ) -> List[Cell]:
    config = replace(config, models=[prepared[m.name]["spec"] for m in config.models])
    identities = {name: p["identity"] for name, p in prepared.items()}
    cells = expand(config, identities, code_version)
    for cell in cells:
        cell.extra["code_version"] = code_version
        if cell.benchmark == "label_noise":
            cell.extra["label_noise_cache"] = str(default_cache_dir() / "label_noise")
        if prepared[cell.model]["error"]:
            cell.extra["prepare_error"] = prepared[cell.model]["error"]
    return cells


def _resolve_config(config: Union[str, Path, JobConfig]) -> JobConfig:
    return config if isinstance(config, JobConfig) else load_config(config)


def _setup_log(out_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(out_dir / "run.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    return handler


class ModelConflictError(ValueError):
    """A model name in the output folder already stands for other weights."""


def slot_id(cell: Cell) -> str:
    """The place a cell fills in a folder's table: what it measures, without the code version
    or the weights (a rerun with new code, or --replace, fills the same slot)."""
    payload = [cell.model, cell.dataset, cell.dataset_spec.get("kind"),
               cell.dataset_spec.get("split"), cell.dataset_spec.get("limit"), cell.limit,
               cell.benchmark, cell.params, cell.seed]
    if cell.precision != "fp32":  # a bf16 row sits beside the fp32 one, never replaces it
        payload.append(cell.precision)
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:32]


def _identity_text(identity: Dict[str, Any]) -> str:
    sha = identity.get("checkpoint_sha256")
    if identity.get("in_memory"):
        return f"in-memory module {identity['in_memory'][:12]}"
    return f"checkpoint {sha[:12]}" if sha else json.dumps(identity, sort_keys=True, default=str)


def merge_index(index: Dict[str, Any], cells: Sequence[Cell],
                prepared: Dict[str, Dict[str, Any]], *, accumulate: bool,
                replace_models: bool, out_dir: Path) -> Dict[str, Any]:
    """The folder's index after this run. `run` (accumulate=False) makes the table exactly its
    config's cells; `evaluate` adds its cells to what is there. A model name never mixes two
    identities: another checkpoint under a known name is refused, or replaces it when asked."""
    models = dict(index["models"]) if accumulate else {}
    slots = dict(index["slots"]) if accumulate else {}
    for name, item in prepared.items():
        identity = item["identity"]
        known = index["models"].get(name)
        if accumulate and known is not None and known != identity:
            if not replace_models:
                raise ModelConflictError(
                    f"{out_dir} already holds results of model {name!r} from "
                    f"{_identity_text(known)}; this is {_identity_text(identity)}. Give it "
                    f"another name (--model-name, model_name=), another --out, or --replace "
                    f"(replace=True) to drop the old results")
            slots = {k: v for k, v in slots.items() if v["model"] != name}
        models[name] = identity
    for cell in cells:
        slots[slot_id(cell)] = {"key": cell.key, "model": cell.model}
    return {"models": models, "slots": slots}


def run_job(config: Union[str, Path, JobConfig], out_dir: Union[str, Path], *,
            executor: Any = "local", dry_run: bool = False, progress: bool = True,
            workers: Optional[int] = None, device: Optional[str] = None,
            ray_address: Optional[str] = None, ray_num_cpus: Optional[int] = None,
            echo: Optional[Callable[[str], None]] = None, code_version: Optional[str] = None,
            accumulate: bool = False, replace_models: bool = False,
            precision: Optional[str] = None) -> RunSummary:
    """Run a job. accumulate=True (what `evaluate` does) adds this job's cells to the folder's
    table instead of making the table exactly this job's cells. `precision` replaces the
    config's job-wide precision (a benchmark's own still wins)."""
    from robust_eval.jobs.executors import LocalExecutor, make_executor, resolve_device
    from robust_eval.schema import code_version as current_code_version

    started = time.time()
    echo = echo or _print_flush
    config = _resolve_config(config)
    if precision is not None:
        from robust_eval.evaluate import PRECISIONS

        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        config = replace(config, precision=precision)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is a file, not a folder")
    device = resolve_device(device or config.device)  # a missing CUDA stops us before any cell
    # ROBUST_EVAL_CODE_VERSION pins the code-version part of the cell keys (docs/jobs.md).
    code_version = (code_version or os.environ.get("ROBUST_EVAL_CODE_VERSION")
                    or current_code_version())
    store = ResultStore(out_dir)
    index = store.read_index() if out_dir.is_dir() else {"models": {}, "slots": {}}
    prepared = prepare_models(config, device=device, train=False, echo=echo)
    cells = plan(config, prepared, code_version)
    new_index = merge_index(index, cells, prepared, accumulate=accumulate,
                            replace_models=replace_models, out_dir=out_dir)
    status = {cell.key: store.status(cell.key) for cell in cells}
    summary = RunSummary(out_dir=out_dir, cells=cells, status_before=status, dry_run=dry_run)
    if dry_run:
        _print_plan(cells, status, prepared, echo)
        summary.failed = [c for c in cells if status[c.key] == "failed"]
        return summary

    if isinstance(executor, str):
        executor = make_executor(executor, device=device, workers=workers or config.workers,
                                 ray_address=ray_address, ray_num_cpus=ray_num_cpus)
    in_memory = [m.name for m in config.models if m.in_memory]
    if in_memory and not (isinstance(executor, LocalExecutor) and executor.workers == 1):
        raise ValueError(f"model {in_memory[0]!r} is an in-memory nn.Module: it runs in this "
                         f"process only (local executor, one worker), not on "
                         f"{executor.describe()}; to run elsewhere, save its weights and name "
                         f"an importable factory as its arch (docs/api.md)")
    out_dir.mkdir(parents=True, exist_ok=True)
    handler = _setup_log(out_dir)
    try:
        LOG.info("run %s -> %s (code %s)", config.source, out_dir, code_version)
        if any(m.source == "train" for m in config.models):
            prepared = prepare_models(config, device=device, train=True, echo=echo)
            cells = plan(config, prepared, code_version)
            new_index = merge_index(index, cells, prepared, accumulate=accumulate,
                                    replace_models=replace_models, out_dir=out_dir)
            status = {cell.key: store.status(cell.key) for cell in cells}
            summary.cells, summary.status_before = cells, status
        store.write_index(new_index)
        for cell in cells:
            if status[cell.key] == "corrupt":
                moved = store.quarantine(cell.key)
                LOG.warning("cell file for %s was corrupt; moved to %s; rerunning",
                            cell.label(), moved)
                echo(f"warning: corrupt cell file for {cell.label()} moved to {moved}; "
                     f"rerunning the cell")
        todo = [c for c in cells if status[c.key] != "ok"]
        if any(c.precision == "bf16" for c in todo) and not native_bf16(device):
            echo("warning: this CPU has no native bf16 (AVX-512 BF16 or AMX): bf16 cells run "
                 "emulated, slower than fp32")
        echo(f"{len(cells)} cells: {len(cells) - len(todo)} already done, {len(todo)} to run "
             f"on {executor.describe()}; log: {out_dir / 'run.log'}")
        summary.ran = _execute(executor, todo, store, progress, echo)

        final = {cell.key: store.status(cell.key) for cell in cells}
        summary.failed = [c for c in cells if final[c.key] != "ok"]
        table_keys = [slot["key"] for slot in new_index["slots"].values()]
        summary.frame = store.write_tables(table_keys)
        summary.outputs.update({name: out_dir / f"{stem}.{ext}" for name, stem, ext in (
            ("results_csv", "results", "csv"), ("results_parquet", "results", "parquet"),
            ("outcomes_parquet", "outcomes", "parquet")) if (out_dir / f"{stem}.{ext}").is_file()})
        summary.outputs.update(write_pivots(summary.frame, out_dir / "tables"))
        try:  # pictures for the report: never worth failing a finished run over
            from robust_eval.jobs.examples import write_examples

            examples = write_examples(out_dir, cells, device)
            if examples is not None:
                summary.outputs["examples"] = examples
        except Exception as error:  # noqa: BLE001
            LOG.warning("examples.npz not written: %s", error)
        summary.seconds = time.time() - started
        write_run_json(out_dir, config, prepared, cells, summary, device, code_version,
                       executor)
        summary.outputs["run_json"] = out_dir / "run.json"
        LOG.info("finished: %d cells, %d ran, %d failed, %.1f s", len(cells), summary.ran,
                 len(summary.failed), summary.seconds)
        for cell in summary.failed:
            error = (store.read(cell.key) or {}).get("error") if final[cell.key] == "failed" \
                else final[cell.key]
            echo(f"FAILED {cell.label()}: {error}")
        return summary
    finally:
        LOG.removeHandler(handler)
        handler.close()


def _print_flush(line: str) -> None:
    print(line, flush=True)  # progress lines must show at once even when stdout is a pipe


def _execute(executor, todo: Sequence[Cell], store: ResultStore, progress: bool,
             echo: Callable[[str], None]) -> int:
    if not todo:
        return 0
    from tqdm import tqdm

    bar = tqdm(total=len(todo), desc="cells", unit="cell", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    count = 0

    def on_start(cell: Cell) -> None:
        bar.set_postfix_str(cell.label()[:60], refresh=True)
        LOG.info("start %s [%s]", cell.label(), cell.key)

    def on_result(cell: Cell, outcome: Dict[str, Any]) -> None:
        nonlocal count
        store.write(cell.key, status=outcome["status"], rows=outcome["rows"],
                    error=outcome.get("error"), cell=cell.to_dict(),
                    seconds=outcome.get("seconds"), outcomes=outcome.get("outcomes"))
        count += 1
        bar.update(1)
        if outcome["status"] == "ok":
            line = f"{cell.label()}: {row_summary(outcome['rows'])} " \
                   f"({outcome.get('seconds', 0):.1f} s)"
        else:
            line = f"{cell.label()}: FAILED {outcome.get('error')}"
        LOG.info("done %s", line)
        (bar.write if progress else echo)(f"  [{count}/{len(todo)}] {line}")
        for row in outcome["rows"]:
            if row.get("warnings"):
                (bar.write if progress else echo)(f"  warning: {cell.model}: {row['warnings']}")

    if progress and getattr(executor, "progress", "absent") is None:
        executor.progress = lambda total, desc: tqdm(total=total, desc=desc, leave=False,
                                                     file=sys.stderr, dynamic_ncols=True)
    try:
        executor.run(todo, on_result, on_start)
    finally:
        bar.close()
    return count


def row_summary(rows: Sequence[Dict[str, Any]]) -> str:
    """'91.50% (183/200)' per row; measurements without n show their value."""
    parts = []
    for row in rows[:3]:
        metric = f"{row['metric']} " if row.get("metric") else ""
        if row.get("n"):
            parts.append(f"{metric}{row['accuracy']:.2%} ({row['correct']}/{row['n']})")
        elif row.get("value") is not None:
            parts.append(f"{metric}{row['value']:.4g}")
    more = f" (+{len(rows) - 3} more)" if len(rows) > 3 else ""
    return ", ".join(parts) + more


def _print_plan(cells: Sequence[Cell], status: Dict[str, str], prepared, echo) -> None:
    counts: Dict[str, int] = {}
    for cell in cells:
        state = STATUS_LABELS[status[cell.key]]
        counts[state] = counts.get(state, 0) + 1
        echo(f"[{state:>7}] {cell.label()}  ({cell.key[:12]})")
    for name, item in prepared.items():
        if item["identity"].get("untrained"):
            echo(f"note: model {name} is not trained yet; it will be trained (and cached) "
                 f"first, so its cells are pending")
        elif item["identity"].get("missing_checkpoint"):
            echo(f"note: model {name}: checkpoint not found: "
                 f"{item['identity']['missing_checkpoint']}")
    echo(f"{len(cells)} cells: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))


# ----------------------------------------------------------------------------- outputs
def _one_header(table: pd.DataFrame) -> pd.DataFrame:
    """Index levels as columns and (model, dataset) column pairs as 'model/dataset': one header
    row, and eps as people write it."""
    from reports.stats import eps_label

    table = table.copy()
    if isinstance(table.columns, pd.MultiIndex):
        table.columns = ["/".join(str(part) for part in col) for col in table.columns]
    table.columns = [str(c) for c in table.columns]
    table = table.reset_index()
    if "eps" in table.columns:
        table["eps"] = [eps_label(e) for e in table["eps"]]
    return table


def write_pivots(frame: pd.DataFrame, folder: Path) -> Dict[str, Path]:
    from reports.results import precision_in_model
    from robust_eval.jobs import tables

    frame = precision_in_model(frame)
    written: Dict[str, Path] = {}
    for name, builder in (("corruption_severity", tables.corruption_table),
                          ("accuracy_vs_eps", tables.eps_table),
                          ("accuracy_vs_noise_rate", tables.noise_table)):
        table = builder(frame)
        if table.empty:
            continue
        path = folder / f"{name}.csv"
        write_atomic(path, _one_header(table).to_csv(index=False))
        written[name] = path
    mce = tables.mce_table(frame)
    if mce is not None:
        path = folder / "mce.csv"
        write_atomic(path, mce.to_csv())
        written["mce"] = path
    return written


def native_bf16(device: str) -> bool:
    """Whether bf16 runs natively: CUDA, or a CPU that oneDNN computes bf16 on."""
    import torch

    if torch.device(device).type != "cpu":
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without the probe: no way to tell
        return True


def environment(device: str) -> Dict[str, Any]:
    import torch

    from robust_eval.schema import device_name

    env = {
        "python": platform.python_version(), "platform": platform.platform(),
        "torch": torch.__version__, "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(), "device": str(device),
        "device_name": device_name(device), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    try:  # the installed version, without importing torchvision (~2.5 s on a 2-core CPU)
        from importlib.metadata import version

        env["torchvision"] = version("torchvision")
    except ImportError:
        pass
    return env


def write_run_json(out_dir: Path, config: JobConfig, prepared, cells: Sequence[Cell],
                   summary: RunSummary, device: str, code_version: str, executor) -> Path:
    models = []
    for name, item in prepared.items():
        spec = item["spec"]
        models.append({
            "name": name, "source": spec.source, "arch": spec.arch, "norm": spec.norm,
            "checkpoint": spec.checkpoint, "checkpoint_sha256": item["sha256"],
            "robustbench": spec.robustbench, "in_memory": spec.in_memory,
            "num_classes": spec.num_classes,
            "mean": spec.mean, "std": spec.std, "train": spec.train, "error": item["error"],
        })
    record = {
        "name": config.name, "config_file": config.source, "config": config.raw,
        "models": models,
        "datasets": [vars(d) for d in config.datasets],
        "environment": environment(device),
        "code_version": code_version, "executor": executor.describe(),
        "precision": config.precision,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cells": {"total": len(cells), "skipped": summary.skipped, "ran": summary.ran,
                  "failed": len(summary.failed)},
        "seconds": round(summary.seconds, 3),
    }
    path = out_dir / "run.json"
    write_atomic(path, json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    return path
