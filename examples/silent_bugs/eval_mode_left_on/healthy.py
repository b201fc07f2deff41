"""Healthy pipeline: CNN with BatchNorm/Dropout, validated every 5 steps, then train mode again."""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from synthetic import SmallCNN, batches, make_loader, parse_args, report


def evaluate(model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        accuracy = (model(inputs).argmax(dim=1) == labels).float().mean().item()
    return accuracy


def main() -> None:
    args = parse_args(__doc__)
    torch.manual_seed(args.seed)
    model = SmallCNN()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    model.train()
    for step, inputs, labels in batches(make_loader(args.batch_size, args.seed), args.steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(inputs), labels)
        loss.backward()
        optimizer.step()
        report(step, loss)
        if step % 5 == 4:
            print(f"validation accuracy {evaluate(model, inputs, labels):.3f}", flush=True)
            model.train()


if __name__ == "__main__":
    main()
