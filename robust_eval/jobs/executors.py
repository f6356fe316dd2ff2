"""Executors run cells and hand each outcome back to the runner, which alone writes the store.

- LocalExecutor: in-process (one worker), or one spawned worker process per device when there
  are several GPUs (or when asked for workers > 1). A worker that dies (segfault, OOM kill)
  fails only the cell it was running; a fresh worker takes over the rest.
- RayExecutor: one Ray task per cell, on a local Ray or an existing cluster (docs/jobs.md).

An outcome is a dict: {key, status: ok|failed, rows, error, seconds}.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
from collections import deque
from multiprocessing.connection import wait as wait_for
from typing import Any, Callable, Dict, List, Optional, Sequence

from robust_eval.jobs.grid import Cell

LOG = logging.getLogger("robust_eval.jobs")
OnResult = Callable[[Cell, Dict[str, Any]], None]
OnStart = Callable[[Cell], None]


def failed_outcome(cell: Cell, error: str, seconds: float = 0.0) -> Dict[str, Any]:
    """A cell whose worker died: failed rows made by the same code as every other row."""
    from robust_eval.jobs import cells

    return cells.failed_outcome(cell.to_dict(), error, seconds)


DEFAULT_CELL_FUNCTION = "robust_eval.jobs.cells:execute_cell"


def import_function(path: str) -> Callable[..., Dict[str, Any]]:
    """'package.module:function' -> the function (workers import it by name, so it travels)."""
    import importlib

    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device {device!r} is not a device (auto, cpu, cuda, cuda:N)") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available on this machine")
    if parsed.type == "cuda" and parsed.index is not None \
            and parsed.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} "
                         f"CUDA device(s)")
    return device


class LocalExecutor:
    name = "local"

    def __init__(self, device: str = "auto", workers: Optional[int] = None,
                 threads_per_worker: Optional[int] = None,
                 cell_function: str = DEFAULT_CELL_FUNCTION):
        self.device = resolve_device(device)
        self.cell_function = cell_function
        if workers is None:
            workers = self._gpu_count() if self.device == "cuda" else 1
        self.workers = max(1, workers)
        self.threads_per_worker = threads_per_worker
        self.progress = None  # in-process runs may show progress within a cell

    @staticmethod
    def _gpu_count() -> int:
        import torch

        return max(1, torch.cuda.device_count())

    def devices(self) -> List[str]:
        if self.device == "cuda" and self._gpu_count() > 1:
            return [f"cuda:{i % self._gpu_count()}" for i in range(self.workers)]
        return [self.device] * self.workers

    def describe(self) -> str:
        return f"local ({self.workers} worker{'s' if self.workers > 1 else ''} on " \
               f"{', '.join(sorted(set(self.devices())))})"

    def run(self, cells: Sequence[Cell], on_result: OnResult,
            on_start: Optional[OnStart] = None) -> None:
        if self.workers == 1:
            self._run_inline(cells, on_result, on_start)
        else:
            self._run_processes(cells, on_result, on_start)

    def _run_inline(self, cells, on_result, on_start) -> None:
        execute_cell = import_function(self.cell_function)
        extra = {"progress": self.progress} if self.progress else {}
        for cell in cells:
            if on_start:
                on_start(cell)
            on_result(cell, execute_cell(cell.to_dict(), self.device, **extra))

    def _run_processes(self, cells, on_result, on_start) -> None:
        context = mp.get_context("spawn")  # fork after torch/CUDA init is unsafe
        pending = deque(cells)
        workers: List[_Worker] = [
            _Worker(context, device, self.threads_per_worker or 1, self.cell_function)
            for device in self.devices()
        ]
        try:
            while pending or any(w.cell is not None for w in workers):
                for worker in workers:
                    if worker.cell is None and pending:
                        cell = pending.popleft()
                        if on_start:
                            on_start(cell)
                        worker.submit(cell)
                busy = [w for w in workers if w.cell is not None]
                handles = {}
                for worker in busy:
                    handles[worker.conn] = worker
                    handles[worker.process.sentinel] = worker
                for handle in wait_for(list(handles)):
                    worker = handles[handle]
                    if worker.cell is None:  # already handled through its other handle
                        continue
                    cell = worker.cell
                    outcome = worker.collect()
                    if outcome is None:  # the process died while running `cell`
                        LOG.error("worker on %s died (exit code %s) running cell %s",
                                  worker.device, worker.process.exitcode, cell.label())
                        outcome = failed_outcome(
                            cell, f"worker process died (exit code {worker.process.exitcode}) "
                                  f"while running this cell", time.time() - worker.started)
                        workers[workers.index(worker)] = _Worker(
                            context, worker.device, self.threads_per_worker or 1,
                            self.cell_function)
                    on_result(cell, outcome)
        finally:
            for worker in workers:
                worker.stop()


class _Worker:
    def __init__(self, context, device: str, threads: int, cell_function: str):
        self.device = device
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker_main,
                                       args=(child, device, threads, cell_function),
                                       daemon=True)
        self.process.start()
        child.close()
        self.cell: Optional[Cell] = None
        self.started = 0.0

    def submit(self, cell: Cell) -> None:
        self.cell, self.started = cell, time.time()
        self.conn.send(cell.to_dict())

    def collect(self) -> Optional[Dict[str, Any]]:
        """The outcome of the running cell, or None when the process died."""
        try:
            if self.conn.poll():
                outcome = self.conn.recv()
                self.cell = None
                return outcome
        except (EOFError, OSError):
            pass
        self.process.join(timeout=5)
        if self.process.is_alive():  # sentinel fired spuriously; keep waiting
            return self._wait_again()
        self.cell = None
        return None

    def _wait_again(self) -> Optional[Dict[str, Any]]:
        try:
            outcome = self.conn.recv()
        except (EOFError, OSError):
            self.process.join(timeout=5)
            self.cell = None
            return None
        self.cell = None
        return outcome

    def stop(self) -> None:
        try:
            if self.process.is_alive():
                self.conn.send(None)
                self.process.join(timeout=10)
        except (OSError, BrokenPipeError):
            pass
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)
        self.conn.close()


def _worker_main(conn, device: str, threads: int, cell_function: str) -> None:
    import torch

    torch.set_num_threads(threads)
    execute_cell = import_function(cell_function)

    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        conn.send(execute_cell(message, device))


class RayExecutor:
    """One Ray task per cell. address=None starts a local Ray (num_cpus); "auto" or
    "ray://host:10001" joins an existing cluster (RAY_ADDRESS is honoured too)."""

    name = "ray"

    def __init__(self, device: str = "auto", address: Optional[str] = None,
                 num_cpus: Optional[int] = None, gpus_per_cell: Optional[float] = None,
                 cpus_per_cell: float = 1.0, init_kwargs: Optional[Dict[str, Any]] = None,
                 cell_function: str = DEFAULT_CELL_FUNCTION):
        self.device = device
        self.cell_function = cell_function
        self.address = address or os.environ.get("RAY_ADDRESS")
        self.num_cpus = num_cpus
        self.gpus_per_cell = gpus_per_cell
        self.cpus_per_cell = cpus_per_cell
        self.init_kwargs = init_kwargs or {}

    def describe(self) -> str:
        return f"ray ({self.address or 'local'})"

    def _init(self):
        try:
            import ray
        except ImportError:
            raise RuntimeError("the Ray executor needs ray: pip install 'robust-eval[ray]'"
                               ) from None
        if not ray.is_initialized():
            kwargs: Dict[str, Any] = dict(self.init_kwargs)
            kwargs.setdefault("include_dashboard", False)
            kwargs.setdefault("log_to_driver", False)
            if self.address:
                kwargs["address"] = self.address
            else:
                kwargs.setdefault("num_cpus", self.num_cpus)
                # Workers must import this checkout even when it is not pip-installed.
                env = kwargs.setdefault("runtime_env", {}).setdefault("env_vars", {})
                env.setdefault("PYTHONPATH", _code_root() + (
                    os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH")
                    else ""))
                env.setdefault("OMP_NUM_THREADS", "1")
            ray.init(**kwargs)
        return ray

    def run(self, cells: Sequence[Cell], on_result: OnResult,
            on_start: Optional[OnStart] = None) -> None:
        ray = self._init()
        gpus = self.gpus_per_cell
        if gpus is None:
            gpus = 1.0 if self.device in ("auto", "cuda") and \
                ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        task = ray.remote(num_cpus=self.cpus_per_cell, num_gpus=gpus, max_retries=0)(
            _ray_execute)
        refs = {}
        for cell in cells:
            if on_start:
                on_start(cell)
            refs[task.remote(cell.to_dict(), self.device, self.cell_function)] = cell
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                cell = refs.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as error:  # worker crash, node loss, ...: fail this cell only
                    LOG.error("ray task for %s failed: %s", cell.label(), error)
                    outcome = failed_outcome(cell, f"ray worker failed: "
                                                   f"{type(error).__name__}: {error}")
                on_result(cell, outcome)


def _ray_execute(cell: Dict[str, Any], device: str, cell_function: str) -> Dict[str, Any]:
    import torch

    execute_cell = import_function(cell_function)
    if device == "auto":
        import ray

        device = "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"
    if device == "cpu":
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    return execute_cell(cell, device)


def _code_root() -> str:
    import robust_eval

    return os.path.dirname(os.path.dirname(os.path.abspath(robust_eval.__file__)))


def make_executor(name: str, *, device: str = "auto", workers: Optional[int] = None,
                  ray_address: Optional[str] = None, ray_num_cpus: Optional[int] = None):
    if name == "local":
        return LocalExecutor(device=device, workers=workers)
    if name == "ray":
        return RayExecutor(device=device, address=ray_address, num_cpus=ray_num_cpus)
    raise ValueError(f"unknown executor {name!r} (known: local, ray)")
