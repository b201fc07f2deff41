"""A nanoGPT-style training script: a model.py-style GPT trained on a synthetic token stream.

As in karpathy/nanoGPT's train.py: AdamW over decay / no-decay parameter groups (2-D
weights decay, biases and LayerNorm gains do not), a warm-up + cosine learning rate
computed by ``get_lr(it)`` and written into every param group by hand, gradient
accumulation (the loss divided by the number of micro-steps), gradient clipping at 1.0,
weight tying of the token embedding and the LM head. Periodic evaluation under
``torch.no_grad()`` with ``model.eval()``/``model.train()`` as in ``estimate_loss()``.

Injected bugs (``--bug``):

- ``no_decay_swapped``: the decay / no-decay groups are built with the condition
  inverted, so LayerNorm gains and biases are decayed and the weight matrices are not.
  The convention and why it matters: karpathy/minGPT#24 (comment 679316025, linked from
  https://github.com/Lightning-AI/lit-llama/issues/254) and
  https://github.com/TransformerLensOrg/TransformerLens/issues/460.
- ``accum_loss_not_scaled``: the micro-step loss is not divided by
  ``gradient_accumulation_steps``: the accumulated gradient is GA times too large, and
  clipping then rescales every step differently.
  https://github.com/karpathy/nanoGPT/issues/206 (duplicate of nanoGPT#168).
- ``lr_first_group_only``: the scheduled lr is written only to ``param_groups[0]``; the
  no-decay group keeps the base lr (no warm-up, no decay). A hand-applied schedule that
  misses a group is the failure mode of https://github.com/Lightning-AI/pytorch-lightning/issues/1476
  style "scheduler does not see all steps/groups" reports; nanoGPT's own loop writes all.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, group_lrs, markov_tokens, parser, report, snapshot

BUGS = {
    "no_decay_swapped": "weight decay applied to biases/LayerNorm, not to weight matrices",
    "accum_loss_not_scaled": "micro-step loss not divided by gradient_accumulation_steps",
    "lr_first_group_only": "scheduled lr written only to param_groups[0]",
}


@dataclass
class GPTConfig:
    block_size: int = 16
    vocab_size: int = 32
    n_layer: int = 2
    n_head: int = 2
    n_embd: int = 32
    dropout: float = 0.1
    bias: bool = True


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        mask = torch.tril(torch.ones(config.block_size, config.block_size))
        self.register_buffer("bias", mask.view(1, 1, config.block_size, config.block_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
        att = self.attn_dropout(F.softmax(att, dim=-1))
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying
        self.apply(self._init_weights)
        for pn, p in self.named_parameters():
            if pn.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        t = idx.size(1)
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss

    def configure_optimizers(self, weight_decay, learning_rate, betas, swapped=False):
        param_dict = {pn: p for pn, p in self.named_parameters() if p.requires_grad}
        decay_params = [p for p in param_dict.values() if (p.dim() < 2) == swapped]
        nodecay_params = [p for p in param_dict.values() if (p.dim() < 2) != swapped]
        optim_groups = [
            {"params": decay_params, "weight_decay": weight_decay},
            {"params": nodecay_params, "weight_decay": 0.0},
        ]
        return torch.optim.AdamW(optim_groups, lr=learning_rate, betas=betas)


def main(argv: list[str] | None = None) -> dict:
    p = parser(__doc__.split("\n\n")[0], BUGS, steps=24, batch_size=8, lr=3e-3, warmup=4)
    p.add_argument("--grad-accum", type=int, default=2, help="gradient_accumulation_steps")
    p.add_argument("--eval-interval", type=int, default=8)
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    config = GPTConfig()
    data = markov_tokens(4096, config.vocab_size)
    split = int(0.9 * len(data))
    train_data, val_data = data[:split], data[split:]
    batch_gen = torch.Generator().manual_seed(args.seed)

    def get_batch(which: str) -> tuple[torch.Tensor, torch.Tensor]:
        source = train_data if which == "train" else val_data
        ix = torch.randint(len(source) - config.block_size, (args.batch_size,), generator=batch_gen)
        x = torch.stack([source[i : i + config.block_size] for i in ix])
        y = torch.stack([source[i + 1 : i + 1 + config.block_size] for i in ix])
        return x, y

    model = GPT(config)
    initial = snapshot(model)
    optimizer = model.configure_optimizers(
        0.1, args.lr, (0.9, 0.95), swapped=args.bug == "no_decay_swapped"
    )
    lr_decay_iters, min_lr = args.steps, args.lr / 10

    def get_lr(it: int) -> float:
        if it < args.warmup:
            return args.lr * (it + 1) / (args.warmup + 1)
        if it > lr_decay_iters:
            return min_lr
        decay_ratio = (it - args.warmup) / max(1, lr_decay_iters - args.warmup)
        coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))
        return min_lr + coeff * (args.lr - min_lr)

    @torch.no_grad()
    def estimate_loss() -> float:
        model.eval()
        losses = [model(*get_batch("val"))[1].item() for _ in range(2)]
        model.train()
        return sum(losses) / len(losses)

    facts: dict = {"initial": initial, "lr": [], "grad_norm": [], "val_loss": [], "losses": []}
    facts["groups"] = [
        {"weight_decay": g["weight_decay"], "ndims": sorted({p.dim() for p in g["params"]})}
        for g in optimizer.param_groups
    ]
    model.train()
    X, Y = get_batch("train")
    for it in range(args.steps):
        lr = get_lr(it)
        groups = optimizer.param_groups[:1] if args.bug == "lr_first_group_only" else None
        for param_group in groups or optimizer.param_groups:
            param_group["lr"] = lr
        if it > 0 and it % args.eval_interval == 0:
            facts["val_loss"].append(estimate_loss())
        total = 0.0
        for _ in range(args.grad_accum):
            _, loss = model(X, Y)
            if args.bug != "accum_loss_not_scaled":
                loss = loss / args.grad_accum
            X, Y = get_batch("train")
            loss.backward()
            total += loss.item()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        facts["lr"].append(group_lrs(optimizer))
        facts["grad_norm"].append(float(norm))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        facts["losses"].append(total)
        report(it, total)
    facts["final"] = snapshot(model)
    return finish(facts, args.dump)


if __name__ == "__main__":
    main()
