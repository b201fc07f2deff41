"""Healthy pipeline: a one-layer causal attention language model (next-token prediction).

``is_causal=True`` keeps position t from attending to later positions, so the
model must predict token t+1 from tokens 0..t.

The buggy twin is modelled on rasbt/LLMs-from-scratch#1062 ("Fix causal mask in
SDPA attention": the mask let tokens attend to later positions) and
hkproj/pytorch-llama#15 ("Why is causal attention mask not used?"): a language
model that sees the future trains to a low loss and is useless for generation.
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from synthetic import batches, parse_args, report
from tokens import SEQ_LEN, VOCAB, make_token_loader


class TinyCausalLM(nn.Module):
    def __init__(self, width: int = 32):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, width)
        self.position = nn.Parameter(0.02 * torch.randn(SEQ_LEN, width))
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.head = nn.Linear(width, VOCAB)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens) + self.position[: tokens.shape[1]]
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.head(h + self.proj(attended))


def train(args) -> nn.Module:
    torch.manual_seed(args.seed)
    model = TinyCausalLM()
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
