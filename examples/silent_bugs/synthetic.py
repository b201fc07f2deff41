"""Synthetic, MNIST-shaped data and small models shared by the example pipelines.

The examples must run offline in seconds on a CPU, so the "dataset" is a fixed
random teacher: inputs are seeded noise images, labels come from a random linear
map, which gives a learnable task whose loss really decreases.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

IMAGE_SHAPE = (1, 28, 28)
NUM_CLASSES = 10


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seed", type=int, default=1, help="model-init and shuffling seed")
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps to run")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    return parser.parse_args()


def make_dataset(num_samples: int = 2048, data_seed: int = 1234) -> torch.utils.data.TensorDataset:
    """Inputs and teacher labels drawn from a generator of their own (not the global RNG)."""
    generator = torch.Generator().manual_seed(data_seed)
    inputs = torch.randn(num_samples, *IMAGE_SHAPE, generator=generator)
    teacher = torch.randn(IMAGE_SHAPE[1] * IMAGE_SHAPE[2], NUM_CLASSES, generator=generator)
    labels = (inputs.flatten(1) @ teacher).argmax(dim=1)
    return torch.utils.data.TensorDataset(inputs, labels)


def make_loader(batch_size: int, seed: int, num_samples: int = 2048) -> torch.utils.data.DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(
        make_dataset(num_samples), batch_size=batch_size, shuffle=True, generator=generator
    )


class MLP(nn.Module):
    def __init__(self, hidden: int = 64):
        super().__init__()
        self.fc1 = nn.Linear(IMAGE_SHAPE[1] * IMAGE_SHAPE[2], hidden)
        self.fc2 = nn.Linear(hidden, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


class SmallCNN(nn.Module):
    """A CNN with BatchNorm and Dropout, whose behaviour depends on train/eval mode."""

    def __init__(self, channels: int = 8, dropout: float = 0.2):
        super().__init__()
        self.conv = nn.Conv2d(IMAGE_SHAPE[0], channels, kernel_size=3, stride=2, padding=1)
        self.norm = nn.BatchNorm2d(channels)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(channels * 14 * 14, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.drop(torch.relu(self.norm(self.conv(x))))
        return self.head(features.flatten(1))


def batches(loader: torch.utils.data.DataLoader, steps: int):
    """Yield (step, inputs, labels) for ``steps`` steps, cycling over epochs."""
    step = 0
    while True:
        for inputs, labels in loader:
            if step == steps:
                return
            yield step, inputs, labels
            step += 1


def report(step: int, loss: torch.Tensor) -> None:
    """Print the exact loss (repr) so traced and untraced runs can be compared bit for bit."""
    print(f"step {step} loss {loss.item()!r}", flush=True)
