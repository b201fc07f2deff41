"""Buggy pipeline: scaled_dot_product_attention gets dropout_p unconditionally.

Training is unchanged, but validation (from step 4) still drops 20% of the
attention weights at random: ``model.eval()`` cannot reach a functional call, so
the validation loss is noisy and pessimistic, and inference would be too.

Modelled on pytorch/pytorch#124464 ("SDPA does not switch off dropout during
evaluation"), huggingface/pytorch-image-models#1978 and wenet-e2e/wenet#2699
(``dropout_p=self.dropout`` passed unconditionally).
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from synthetic import batches, parse_args, report
from tokens import SEQ_LEN, VOCAB, make_token_loader


class TinyAttentionLM(nn.Module):
    def __init__(self, width: int = 32, attn_dropout: float = 0.2):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, width)
        self.position = nn.Parameter(0.02 * torch.randn(SEQ_LEN, width))
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.head = nn.Linear(width, VOCAB)
        self.attn_dropout = attn_dropout

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens) + self.position[: tokens.shape[1]]
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        dropout_p = self.attn_dropout  # the bug: applied in eval too
        attended = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
        return self.head(h + self.proj(attended))


def lm_loss(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())


def evaluate(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        loss = lm_loss(model, inputs, targets).item()
    model.train()
    return loss


def train(args) -> nn.Module:
    torch.manual_seed(args.seed)
    model = TinyAttentionLM()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    loader = make_token_loader(args.batch_size, args.seed)
    for step, inputs, targets in batches(loader, args.steps):
        optimizer.zero_grad()
        loss = lm_loss(model, inputs, targets)
        loss.backward()
        optimizer.step()
        report(step, loss)
        if step % 4 == 3:
            print(f"validation loss {evaluate(model, inputs, targets):.4f}", flush=True)
    return model


def main() -> None:
    train(parse_args(__doc__))


if __name__ == "__main__":
    main()
