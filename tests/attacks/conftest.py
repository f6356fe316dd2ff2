"""Tiny models and a learnable synthetic task for the attacks tests (no robust_eval import)."""
import pytest
import torch
from torch import nn


class SmallBNNet(nn.Module):
    """conv-BN-ReLU-dropout-pool-linear: has running statistics and a train/eval difference."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(8 * 4, num_classes)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        x = nn.functional.adaptive_avg_pool2d(self.drop(x), 2)
        return self.head(x.flatten(1))


PATTERN_SEED = 1234


def class_patterns(num_classes: int = 4, size: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(PATTERN_SEED)
    return torch.randn(num_classes, 3, size, size, generator=g) * 0.15


def synthetic_task(n: int, seed: int = 0, num_classes: int = 4, size: int = 8):
    """Images = grey 0.5 + a class pattern + noise, clamped to [0, 1]."""
    patterns = class_patterns(num_classes, size)
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    images = (0.5 + patterns[labels] + 0.15 * torch.randn(n, 3, size, size, generator=g))
    return images.clamp(0, 1), labels


class TemplateNet(nn.Module):
    """The Bayes-optimal linear rule for the synthetic task (no training needed), squashed by
    tanh so that gradients depend on the input: a realistic, accurate, attackable classifier."""

    def __init__(self, num_classes: int = 4, size: int = 8):
        super().__init__()
        patterns = class_patterns(num_classes, size).flatten(1)
        self.linear = nn.Linear(patterns.shape[1], num_classes)
        with torch.no_grad():
            self.linear.weight.copy_(patterns)
            self.linear.bias.copy_(-0.5 * (patterns ** 2).sum(1))

    def forward(self, x):
        return 8 * torch.tanh(self.linear(x.flatten(1) - 0.5) / 8)


@pytest.fixture
def bn_net():
    torch.manual_seed(0)
    model = SmallBNNet()
    with torch.no_grad():  # non-trivial running statistics
        model.bn.running_mean.uniform_(-0.1, 0.1)
        model.bn.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(7)
    return torch.rand(12, 3, 8, 8, generator=g), torch.randint(0, 10, (12,), generator=g)


@pytest.fixture(scope="module")
def trained():
    """An accurate classifier of the synthetic task and 64 held-out images."""
    return TemplateNet().eval(), synthetic_task(64, seed=2)
