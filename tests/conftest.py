"""Shared fixtures. Real data lives in ../shared/data beside the clone (read-only)."""
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ROBUST_EVAL_SHARED_DATA", REPO.parent / "shared" / "data"))

# One thread: tests run beside other processes on 2 cores, where 2 threads are often slower.
torch.set_num_threads(1)


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data; skip when absent outside CI, fail under CI (CI must run it)."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but the real data {path} is missing")
        pytest.skip(f"real data not found at {path} (../shared absent); skipping outside CI")
    return path


@pytest.fixture
def cifar10_test_npz() -> Path:
    return shared_path("cifar10", "test.npz")


@pytest.fixture
def he2016_checkpoints() -> Path:
    return shared_path("checkpoints", "cifar10_resnet_he2016")


@pytest.fixture
def imagenet_samples() -> Path:
    return shared_path("imagenet_samples")
