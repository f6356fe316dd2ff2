"""The Python API: `robust_eval.evaluate`, `robust_eval.compare`, `robust_eval.report`.

`evaluate` is `robust-eval evaluate` for a notebook: its arguments become the same job config
(benchmarks given as in a config, validated by the same code), run by the same job runner into
the same store, and it returns the rows of its cells. A live nn.Module needs no registered arch:
it is registered in this process under a hash of its class and tensors (robust_eval.jobs.cells)
and run by the in-process executor. `compare` and `report` are thin forms of the report tools.
"""
from __future__ import annotations

import argparse
import functools
import tempfile
import warnings
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

import pandas as pd

PathLike = Union[str, Path]


class Results(pd.DataFrame):
    """The long result frame (one row per measurement) with a compact view, `summary()`."""

    @property
    def _constructor(self):
        return Results

    def summary(self) -> pd.DataFrame:
        """(benchmark, cell) x model: 'accuracy % [95 % interval] n=...' (or the value)."""
        if self.empty:
            return pd.DataFrame()
        records = self.to_dict("records")
        frame = pd.DataFrame({
            "benchmark": [r["benchmark"] for r in records],
            "cell": [_cell_label(r) for r in records],
            "model": [str(r["model"]) for r in records],
            "text": [_cell_text(r) for r in records],
        })
        twice = frame.duplicated(["benchmark", "cell", "model"], keep=False)
        frame["cell"] = [f"{c} seed {r['seed']}".strip() if t else c
                         for c, r, t in zip(frame["cell"], records, twice)]
        table = frame.pivot(index=["benchmark", "cell"], columns="model", values="text")
        rows = pd.MultiIndex.from_frame(frame[["benchmark", "cell"]].drop_duplicates())
        table = table.reindex(index=rows, columns=list(dict.fromkeys(frame["model"])))
        table.columns.name = None
        return table.fillna("")


def _present(value: Any) -> bool:
    return value is not None and value == value and value != ""  # NaN != NaN


def _cell_label(row: Dict[str, Any]) -> str:
    from reports.stats import eps_label

    parts = []
    if _present(row.get("corruption")):
        parts.append(f"{row['corruption']} s{int(row['severity'])}")
    if _present(row.get("attack")):
        steps = row.get("steps")
        parts.append(f"{row['attack']} eps={eps_label(row['eps'])}"
                     + (f" steps={int(steps)}" if _present(steps) and steps > 1 else ""))
    if _present(row.get("noise_type")):
        parts.append(f"{row['noise_type']} {row['noise_rate']:g}")
    if _present(row.get("metric")):
        parts.append(str(row["metric"]))
    return " ".join(parts)


def _cell_text(row: Dict[str, Any]) -> str:
    if row["status"] != "ok":
        return f"FAILED: {row.get('error')}"
    if _present(row.get("n")) and row["n"] > 0:
        return (f"{100 * row['accuracy']:.2f} [{100 * row['ci_low']:.2f}, "
                f"{100 * row['ci_high']:.2f}] n={int(row['n'])}")
    return f"{row['value']:.4g}" if _present(row.get("value")) else ""


# ----------------------------------------------------------------------------- evaluate
def evaluate(model, dataset: str = "cifar10", data_root: Optional[PathLike] = None,
             benchmarks: Union[str, Dict, Sequence[Union[str, Dict]]] = ("clean",),
             limit: Optional[int] = None, out: Optional[PathLike] = None,
             device: Optional[str] = None, seed: int = 0, batch_size: int = 256,
             model_name: Optional[str] = None, split: str = "test", progress: bool = True, *,
             checkpoint: Optional[PathLike] = None, replace: bool = False,
             executor: str = "local", workers: Optional[int] = None) -> Results:
    """Evaluate one model on one dataset; returns the rows of this call's cells (long schema).

    model: an nn.Module taking [0, 1] images (normalisation inside, as RobustBench), a
    checkpoint file, or an arch (registered name or `package.module:callable`) with its weights
    in `checkpoint=`. benchmarks: config entries (`{"type": "attack", "attack": "pgd", "eps":
    ["8/255"]}`) or `robust-eval evaluate --benchmark` names ("clean", "fgsm", "corruption",
    ...) with the CLI's defaults. out: a result folder (resumable; finished cells are reused);
    without it a temporary one. device: default the module's own device, else "auto"; the
    module is handed back in its own mode and on its own device. replace: in `out`, drop the
    results of a model name that stood for other weights. executor="ray" or workers > 1 take
    a checkpoint or arch, not a live module.
    """
    from torch import nn

    from robust_eval.jobs.cells import in_memory_model

    if isinstance(benchmarks, (str, dict)):
        benchmarks = [benchmarks]
    if dataset != "digits" and data_root is None:
        raise ValueError(f"data_root: dataset {dataset!r} needs its data folder")
    data: Dict[str, Any] = {"name": dataset, "kind": dataset, "split": split}
    if data_root is not None:
        data["root"] = str(Path(data_root).resolve())
    if limit is not None:
        data["limit"] = limit
    raw = {"name": "evaluate", "datasets": [data], "benchmarks": _benchmark_entries(benchmarks),
           "seed": seed, "batch_size": batch_size}

    if not isinstance(model, nn.Module):
        raw.update(models=[_file_model(model, checkpoint, model_name)],
                   device=device or "auto")
        return _run(raw, out, progress, replace, executor, workers)
    if checkpoint is not None:
        raise ValueError("checkpoint= goes with an arch name, not with an nn.Module")
    training, home = model.training, _module_device(model)
    try:
        with in_memory_model(model) as key:
            entry = {"name": model_name or _class_name(model), "in_memory": key,
                     **_module_labels(model)}
            raw.update(models=[entry], device=device or home)
            return _run(raw, out, progress, replace, executor, workers)
    finally:  # hand the module back as it came: its mode and device
        model.train(training).to(home)


def _run(raw, out, progress, replace, executor, workers) -> Results:
    from robust_eval.jobs import parse_config, run_job

    config = parse_config(raw, source="")
    quiet = None if progress else (lambda line: None)
    with tempfile.TemporaryDirectory(prefix="robust-eval-") as scratch:
        folder = Path(out) if out is not None else Path(scratch)
        summary = run_job(config, folder, executor=executor, workers=workers,
                          progress=progress, echo=quiet, accumulate=True, replace_models=replace)
        from reports.outcomes import outcomes_frame
        from robust_eval.jobs.store import ResultStore

        keys = [cell.key for cell in summary.cells]
        outcomes = outcomes_frame(ResultStore(folder).outcomes(keys))
    frame = summary.frame[summary.frame["cell_key"].isin(set(keys))].reset_index(drop=True)
    if summary.failed:
        first = frame.loc[frame["status"] != "ok", "error"]
        warnings.warn(f"{len(summary.failed)} of {len(keys)} cells failed (status 'failed' in "
                      f"the result), e.g. {first.iloc[0] if len(first) else '?'}", stacklevel=3)
    result = Results(frame)
    result.attrs["outcomes"] = outcomes  # per-example outcomes, so compare() can pair
    return result


def _file_model(model: PathLike, checkpoint: Optional[PathLike],
                name: Optional[str]) -> Dict[str, Any]:
    if checkpoint is None:
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"model={str(model)!r}: no such checkpoint file (to name an "
                                    f"arch, pass its weights as checkpoint=)")
        return {"name": name or path.stem, "checkpoint": str(path.resolve())}
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint={str(checkpoint)!r}: no such file")
    return {"name": name or path.stem, "arch": str(model), "checkpoint": str(path.resolve())}


def _module_labels(model) -> Dict[str, Any]:
    """What a live module's rows say about it: its own robust_eval_meta (models made by
    create_model/load_checkpoint), else the registered layout its tensors fit (as for a
    checkpoint without metadata), else its class name."""
    from robust_eval.checkpoints import infer_arch_norm, strip_prefixes
    from robust_eval.models import NormalizedModel

    meta = getattr(model, "robust_eval_meta", None) or {}
    labels = {k: meta[k] for k in ("arch", "norm", "mean", "std") if meta.get(k) is not None}
    if isinstance(model, NormalizedModel):
        labels.setdefault("mean", list(model.mean))
        labels.setdefault("std", list(model.std))
    if "arch" not in labels:
        state = strip_prefixes(model.state_dict())
        fits = infer_arch_norm(state) if state else []
        if fits:
            labels.setdefault("norm", fits[0][1])
        labels["arch"] = fits[0][0] if fits else _class_name(model)
    return labels


def _class_name(model) -> str:
    """The class that says what the model is: a plain NormalizedModel names its network."""
    from robust_eval.models import NormalizedModel

    return type(model.model if type(model) is NormalizedModel else model).__name__


def _module_device(model) -> str:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return str(tensor.device)
    return "cpu"


def _benchmark_entries(benchmarks: Iterable[Union[str, Dict]]) -> List[Dict[str, Any]]:
    """Config entries as given; names mapped like `--benchmark NAME` with the CLI's defaults.
    Their seed is left to the job (evaluate's `seed`)."""
    from robust_eval.evaluate import cli_names
    from robust_eval.validate import ConfigError

    known = cli_names()
    entries = []
    for i, item in enumerate(benchmarks):
        if isinstance(item, str):
            if item not in known:
                raise ConfigError(f"benchmarks[{i}]: unknown benchmark {item!r} (known: "
                                  f"{', '.join(known)}; or a mapping as in a job config)")
            item = known[item].options_from_args(_cli_defaults(), item)
            item.pop("seed", None)
        entries.append(item)
    return entries


@functools.lru_cache(maxsize=1)
def _cli_defaults() -> argparse.Namespace:
    """The benchmark flags of `robust-eval evaluate` at their defaults."""
    from robust_eval.evaluate import BENCHMARKS, cli_names

    cli_names()  # loads the registry
    parser = argparse.ArgumentParser(add_help=False)
    for name in BENCHMARKS:
        BENCHMARKS.get(name).add_arguments(parser)
    return parser.parse_args([])


# ----------------------------------------------------------------------------- compare, report
def _result_sets(results) -> List[Any]:
    """ResultSets (with their per-example outcomes) from folders, tables, ResultSets or the
    frames `evaluate` returns."""
    from reports import ResultSet, load_results, normalize_frame

    sets = []
    for item in results:
        if isinstance(item, ResultSet):
            sets.append(item)
        elif isinstance(item, pd.DataFrame):
            sets.append(ResultSet(frame=normalize_frame(pd.DataFrame(item)), source="<frame>",
                                  outcomes=item.attrs.get("outcomes")))
        else:
            sets.append(load_results(item))
    return sets


def compare(*results, reference: Optional[str] = None, alpha: float = 0.05) -> pd.DataFrame:
    """`robust-eval compare` as a call: every model against `reference` (default: the first
    model), per cell and per aggregate (delta in points), paired on the examples both saw (McNemar and a paired
    interval per cell, a paired bootstrap per aggregate; the `method` column says when a side
    has no outcomes and the test is unpaired), Holm-adjusted. `results`: frames from
    `evaluate`, result folders or tables; a model name found in several of them becomes
    'i/name', i counting the results from 1."""
    from reports.compare import compare_models, merge_results, model_order

    sets = _result_sets(results)
    merged = merge_results(sets, [str(i) for i in range(1, len(sets) + 1)])
    models = model_order(merged)
    if len(models) < 2:
        raise ValueError(f"compare needs results of two or more models, got {models}")
    return compare_models(merged, reference or models[0], alpha=alpha)


MCE_REFERENCES = ("alexnet",)


def _mce_reference(name: Optional[str]):
    if name is None:
        return None
    if name not in MCE_REFERENCES:
        raise ValueError(f"mce_reference {name!r} is not one of {', '.join(MCE_REFERENCES)}")
    from corruptions.metrics import ALEXNET_ERRORS

    return ALEXNET_ERRORS


def report(results, output: Optional[PathLike] = None, *, plots: Optional[PathLike] = None,
           plot_formats: Sequence[str] = ("png",), markdown: Optional[PathLike] = None,
           latex: Optional[PathLike] = None, mce_reference: Optional[str] = None,
           reference: Optional[str] = None, title: str = "robust-eval report") -> List[Path]:
    """`robust-eval report`: the PDF report of a result folder/table, a frame from `evaluate`,
    a reports.ResultSet, or a list of them merged into one report (a model name found in
    several is called FOLDER/MODEL); optionally the summary as Markdown/LaTeX and each plot.
    `reference`: the model the others are compared with (default the first). Returns the files
    written, the PDF first (default RESULTS_DIR/report.pdf, or ./report.pdf)."""
    from reports import (ResultSet, formatted_summary, load_results, normalize_frame,
                         summary_table, to_latex, to_markdown)
    from reports.compare import folder_names, merge_results
    from reports.pdf import build_pdf_report
    from reports.plots import save_all
    from reports.results import write_atomic

    items = list(results) if isinstance(results, (list, tuple)) else [results]
    if not items:
        raise ValueError("results: nothing to report (an empty list)")
    sets, folders, names = [], [], []
    for item in items:
        if isinstance(item, pd.DataFrame):
            sets.append(ResultSet(frame=normalize_frame(pd.DataFrame(item)), source="<frame>"))
            names.append(f"frame{len(sets)}")
        elif isinstance(item, ResultSet):
            sets.append(item)
            folders.append(Path(item.source).parent)
            names.append(str(Path(item.source).parent))
        else:
            folder = Path(item) if Path(item).is_dir() else Path(item).parent
            sets.append(load_results(item))
            folders.append(folder)
            names.append(str(item))
    if len(sets) == 1:
        results = sets[0]
    else:
        short = folder_names(names)
        results = merge_results(sets, short)
        results.run = {part: {name: s.run.get(part) for name, s in zip(short, sets)}
                       for part in ("config", "environment")}
    base = folders[0] if folders and not isinstance(items[0], (pd.DataFrame, ResultSet)) \
        else None
    output = Path(output) if output else (base or Path.cwd()) / "report.pdf"
    if output.suffix.lower() != ".pdf":
        raise ValueError(f"output {output}: the report is a PDF; give a path ending in .pdf")
    mce = _mce_reference(mce_reference)
    build_pdf_report(results, output, title, corruption_reference=mce, reference=reference,
                     picture_folders=folders)
    written = [output]
    if markdown or latex:
        from reports.tables import summary_marks

        summary = summary_table(results.frame, mce)
        shown = formatted_summary(summary, marks=summary_marks(results, summary, reference))
    if markdown:
        write_atomic(markdown, to_markdown(shown, shown.attrs.get("notes")))
        written.append(Path(markdown))
    if latex:
        write_atomic(latex, to_latex(shown, caption="Top-1 accuracy (%) per model.",
                                     label="tab:robust-eval-summary"))
        written.append(Path(latex))
    if plots:
        written.extend(save_all(results.frame, plots, list(plot_formats)))
    return written


__all__ = ["Results", "compare", "evaluate", "report"]
