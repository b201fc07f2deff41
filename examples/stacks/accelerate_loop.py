"""An 🤗 Accelerate training loop: Accelerator, prepare(), accumulate(), accelerator.backward.

The loop of Accelerate's gradient-accumulation guide: a small CNN (BatchNorm, Dropout)
on synthetic images, SGD with momentum, a warm-up + linear-decay LambdaLR, all passed to
``accelerator.prepare``; each batch runs inside ``accelerator.accumulate(model)``, so the
prepared optimizer and scheduler only step when gradients are synchronised (every
``--grad-accum`` batches), ``accelerator.backward`` divides the loss by the number of
accumulation steps, and ``accelerator.clip_grad_norm_`` runs on the synchronising batch.
An evaluation pass every ``--eval-every`` optimizer steps with ``model.eval()``.

Injected bugs (``--bug``):

- ``optimizer_not_prepared``: the optimizer is left out of ``accelerator.prepare``: the raw
  optimizer steps (and is zeroed) on every micro-batch, so there is no accumulation and
  GA times more updates. Only the prepared ``AcceleratedOptimizer`` skips steps while
  ``sync_gradients`` is False: https://github.com/huggingface/accelerate/pull/301 and the
  gradient-accumulation guide (docs/source/usage_guides/gradient_accumulation.md).
- ``scheduler_not_prepared``: the scheduler is not prepared, so it is stepped on every
  micro-batch and the schedule runs GA times too fast:
  https://github.com/huggingface/accelerate/issues/963 (fixed for prepared schedulers in
  https://github.com/huggingface/accelerate/pull/999).
- ``backward_not_scaled``: ``loss.backward()`` instead of ``accelerator.backward(loss)``:
  the loss is not divided by the accumulation steps, gradients are GA times too large
  (same defect as https://github.com/karpathy/nanoGPT/issues/206, hidden by the wrapper).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, group_lrs, parser, report, snapshot, teacher_images

BUGS = {
    "optimizer_not_prepared": "optimizer not passed to accelerator.prepare",
    "scheduler_not_prepared": "lr scheduler not passed to accelerator.prepare",
    "backward_not_scaled": "loss.backward() instead of accelerator.backward(loss)",
}


class SmallCNN(nn.Module):
    def __init__(self, channels: int = 8, num_classes: int = 10):
        super().__init__()
        self.conv = nn.Conv2d(3, channels, kernel_size=3, stride=2, padding=1)
        self.norm = nn.BatchNorm2d(channels)
        self.drop = nn.Dropout(0.1)
        self.head = nn.Linear(channels * 8 * 8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(torch.relu(self.norm(self.conv(x)))).flatten(1))


def main(argv: list[str] | None = None) -> dict:
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    p = parser(__doc__.split("\n\n")[0], BUGS, steps=16, batch_size=16, lr=0.05, warmup=2)
    p.add_argument("--grad-accum", type=int, default=2)
    p.add_argument("--eval-every", type=int, default=6)
    args = p.parse_args(argv)
    accelerator = Accelerator(gradient_accumulation_steps=args.grad_accum, cpu=True)
    set_seed(args.seed)
    model = SmallCNN()
    initial = snapshot(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    total = args.steps

    def schedule(step: int) -> float:
        if step < args.warmup:
            return (step + 1) / (args.warmup + 1)
        return max(0.0, (total - step) / max(1, total - args.warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    data = teacher_images(1024, (3, 16, 16), 10)
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=args.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(args.seed),
    )
    val_loader = torch.utils.data.DataLoader(
        teacher_images(64, (3, 16, 16), 10, data_seed=99), batch_size=32
    )
    to_prepare = {"model": model, "loader": loader, "val_loader": val_loader}
    if args.bug != "optimizer_not_prepared":
        to_prepare["optimizer"] = optimizer
    if args.bug != "scheduler_not_prepared":
        to_prepare["scheduler"] = scheduler
    prepared = dict(zip(to_prepare, accelerator.prepare(*to_prepare.values()), strict=True))
    model, loader, val_loader = prepared["model"], prepared["loader"], prepared["val_loader"]
    optimizer = prepared.get("optimizer", optimizer)
    scheduler = prepared.get("scheduler", scheduler)
    inner = getattr(optimizer, "optimizer", optimizer)

    facts: dict = {"initial": initial, "lr": [], "grad_norm": [], "updates": 0, "losses": []}
    probe = next(iter(model.parameters()))
    step, micro_losses = 0, []
    model.train()
    while step < args.steps:
        for inputs, labels in loader:
            before = probe.detach().clone()
            with accelerator.accumulate(model):
                loss = F.cross_entropy(model(inputs), labels)
                if args.bug == "backward_not_scaled":
                    loss.backward()
                else:
                    accelerator.backward(loss)
                if accelerator.sync_gradients:
                    norm = accelerator.clip_grad_norm_(model.parameters(), 5.0)
                    facts["grad_norm"].append(float(norm))
                    facts["lr"].append(group_lrs(inner))
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            facts["updates"] += int(not torch.equal(before, probe.detach()))
            micro_losses.append(loss.detach())
            if accelerator.sync_gradients:
                mean = torch.stack(micro_losses).mean()
                facts["losses"].append(mean.item())
                report(step, mean)
                micro_losses = []
                step += 1
                if step % args.eval_every == 0:
                    model.eval()
                    with torch.no_grad():
                        for x, y in val_loader:
                            F.cross_entropy(model(x), y)
                    model.train()
                if step == args.steps:
                    break
    facts["final"] = snapshot(accelerator.unwrap_model(model))
    return finish(facts, args.dump)


if __name__ == "__main__":
    main()
