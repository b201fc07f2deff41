"""Healthy pipeline: a small next-token model whose output layer is tied to its embedding.

``self.head.weight = self.embed.weight`` makes the two one Parameter: the
embedding gets the gradients of both ends, the way GPT-2 and most small LMs
are trained.

The buggy twin is modelled on mosaicml/examples#11 ("Tie up weights of embedding
layer and lm_head": the weights were found not to be tied) and
huggingface/transformers#43429 (Mistral3's ``lm_head.weight`` was never tied
to ``embed_tokens.weight`` and stayed randomly initialised).
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from synthetic import batches, parse_args, report
from tokens import VOCAB, make_token_loader


class TiedLM(nn.Module):
    def __init__(self, width: int = 32):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, width)
        self.mix = nn.Linear(width, width)
        self.head = nn.Linear(width, VOCAB, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.mix(self.embed(tokens))))


def train(args) -> nn.Module:
    torch.manual_seed(args.seed)
    model = TiedLM()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    loader = make_token_loader(args.batch_size, args.seed)
    for step, inputs, targets in batches(loader, args.steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())
        loss.backward()
        optimizer.step()
        report(step, loss)
    return model


def main() -> None:
    train(parse_args(__doc__))


if __name__ == "__main__":
    main()
