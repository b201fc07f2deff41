"""Fine-tune a head on a frozen backbone, with an output layer tied to the input layer.

Healthy: the backbone's parameters have ``requires_grad`` False (they stay in the
optimizer, which skips them), and ``decode.weight`` shares ``encode.weight``'s
storage (two Parameter objects, one tensor: a tie the tracer sees under two names);
the buffer ``scale`` is a constant nothing updates.

``--bug unfreeze``: the freezing loop is skipped (a copied script lost it): the
backbone trains. ``--bug untie``: after two steps the decoder weight is re-created
from a copy, so it trains on its own while the model is believed tied.
``--tie-object``: tie by sharing one Parameter object (Hugging Face's way) and
print the parameter names the model reports, to show what the tracer can see.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn


class Tagger(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.encode = nn.Linear(width, width, bias=False)
        self.backbone = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width))
        self.decode = nn.Linear(width, width, bias=False)
        self.head = nn.Linear(width, 4)
        self.register_buffer("scale", torch.full((width,), 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(self.encode(x)) * self.scale
        return self.head(torch.relu(self.decode(hidden)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--bug", choices=("none", "unfreeze", "untie"), default="none")
    parser.add_argument("--tie-object", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    model = Tagger(args.width)
    if args.tie_object:
        model.decode.weight = model.encode.weight
        print("names:", ",".join(name for name, _ in model.named_parameters()))
    else:
        model.decode.weight = nn.Parameter(model.encode.weight.data)
    if args.bug != "unfreeze":
        for param in model.backbone.parameters():
            param.requires_grad_(False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    data = torch.Generator().manual_seed(1234)
    for step in range(args.steps):
        if args.bug == "untie" and step == 2:
            model.decode.weight = nn.Parameter(model.encode.weight.detach().clone())
            optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        inputs = torch.randn(8, args.width, generator=data)
        labels = torch.randint(0, 4, (8,), generator=data)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(inputs), labels)
        loss.backward()
        optimizer.step()


if __name__ == "__main__":
    main()
