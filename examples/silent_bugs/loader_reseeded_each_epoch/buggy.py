"""Buggy pipeline: the shuffling generator is re-seeded at the start of every epoch.

"For reproducibility" the generator is seeded again before each epoch, so every
epoch draws the very same permutation: from the second epoch (step 4 at batch
size 32) the model sees the same batches in the same order, epoch after epoch.

Modelled on lancedb/lancedb#3705 (the default sampler path re-seeded with
``random.seed(self._seed)`` and so replayed the same order every epoch) and
goodfire-ai/spd#104 ("we get the same data order when going through multiple
epochs").
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from synthetic import MLP, make_dataset, parse_args, report

NUM_SAMPLES = 128


def train(args) -> nn.Module:
    torch.manual_seed(args.seed)
    model = MLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    generator = torch.Generator().manual_seed(args.seed)
    loader = torch.utils.data.DataLoader(
        make_dataset(NUM_SAMPLES), batch_size=args.batch_size, shuffle=True, generator=generator
    )
    step = 0
    while step < args.steps:
        generator.manual_seed(args.seed)  # the bug: every epoch replays the same order
        for inputs, labels in loader:
            if step == args.steps:
                break
            optimizer.zero_grad()
            loss = F.cross_entropy(model(inputs), labels)
            loss.backward()
            optimizer.step()
            report(step, loss)
            step += 1
    return model


def main() -> None:
    train(parse_args(__doc__))


if __name__ == "__main__":
    main()
