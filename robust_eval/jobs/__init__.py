"""Jobs: config -> grid of cells -> result store, run by a local or Ray executor (docs/jobs.md)."""
from robust_eval.jobs.config import ConfigError, JobConfig, load_config, packaged_config, parse_config
from robust_eval.jobs.grid import Cell, expand
from robust_eval.jobs.runner import RunSummary, run_job
from robust_eval.jobs.store import CorruptCellError, ResultStore

__all__ = ["Cell", "ConfigError", "CorruptCellError", "JobConfig", "ResultStore", "RunSummary",
           "expand", "load_config", "packaged_config", "parse_config", "run_job"]
