"""A Lightning module with automatic optimization, a validation loop and a probe callback.

``LightningModule.training_step`` returns the loss and Lightning runs backward, clipping,
``optimizer.step`` (through its closure: forward and backward run inside
``optimizer.step(closure)``), ``zero_grad``, gradient accumulation
(``--grad-accum`` -> ``accumulate_grad_batches``) and the lr scheduler declared in
``configure_optimizers`` (warm-up + cosine LambdaLR with ``"interval": "step"``).
Validation runs every 6 batches through Lightning's own loop (which switches the module
to eval and back). A user callback logs a probe loss in eval mode every 4 batches and
restores train mode. One loss line per optimizer step, printed from a callback.

Injected bugs (``--bug``):

- ``callback_leaves_eval``: the probe callback calls ``pl_module.eval()`` and never
  ``pl_module.train()``; Lightning does not switch back to train mode before the next
  ``training_step``, so Dropout and BatchNorm stay in eval mode for the rest of training:
  https://github.com/Lightning-AI/pytorch-lightning/issues/20216 (and the restore
  semantics discussed in https://github.com/Lightning-AI/pytorch-lightning/issues/20177).
- ``scheduler_interval_epoch``: ``configure_optimizers`` returns the per-step warm-up /
  cosine scheduler without ``"interval": "step"``; Lightning's default interval is
  "epoch", so the warm-up never advances within the run:
  https://github.com/Lightning-AI/pytorch-lightning/issues/19534,
  https://github.com/Lightning-AI/pytorch-lightning/issues/20436.
"""

from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, group_lrs, parser, report, snapshot, teacher_images

BUGS = {
    "callback_leaves_eval": "probe callback switches to eval() and never back to train()",
    "scheduler_interval_epoch": "per-step scheduler configured without interval='step'",
}


def quiet_lightning() -> None:
    import logging

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"lightning(\.|$)")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")


def main(argv: list[str] | None = None) -> dict:
    import lightning.pytorch as pl

    quiet_lightning()
    p = parser(__doc__.split("\n\n")[0], BUGS, steps=16, batch_size=16, lr=0.05, warmup=3)
    p.add_argument("--grad-accum", type=int, default=1, help="accumulate_grad_batches")
    args = p.parse_args(argv)
    facts: dict = {"lr": [], "training_mode": [], "losses": []}

    class Classifier(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1)
            self.norm = nn.BatchNorm2d(8)
            self.drop = nn.Dropout(0.2)
            self.head = nn.Linear(8 * 8 * 8, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.drop(torch.relu(self.norm(self.conv(x)))).flatten(1))

        def training_step(self, batch, batch_idx):
            facts["training_mode"].append(self.training)
            x, y = batch
            return F.cross_entropy(self(x), y)

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_loss", F.cross_entropy(self(x), y))

        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=args.lr, momentum=0.9)
            total = args.steps

            def schedule(step: int) -> float:
                if step < args.warmup:
                    return (step + 1) / (args.warmup + 1)
                progress = (step - args.warmup) / max(1, total - args.warmup)
                return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

            sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
            if args.bug == "scheduler_interval_epoch":
                return {"optimizer": opt, "lr_scheduler": sched}
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    class LossLines(pl.Callback):
        def __init__(self) -> None:
            self.micro: list[torch.Tensor] = []

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            facts["lr"].append(group_lrs(optimizer))

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.micro.append(outputs["loss"].detach())
            if len(self.micro) == args.grad_accum:
                loss = torch.stack(self.micro).mean()
                facts["losses"].append(loss.item())
                report(trainer.global_step - 1, loss)
                self.micro = []

    class EvalProbe(pl.Callback):
        """Every 4 batches: the loss of a fixed probe batch with the model in eval mode."""

        def __init__(self, probe: tuple[torch.Tensor, torch.Tensor]) -> None:
            self.probe = probe

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if (batch_idx + 1) % 4:
                return
            pl_module.eval()
            with torch.no_grad():
                F.cross_entropy(pl_module(self.probe[0]), self.probe[1])
            if args.bug != "callback_leaves_eval":
                pl_module.train()

    pl.seed_everything(args.seed, verbose=False)
    model = Classifier()
    facts["initial"] = snapshot(model)
    data = teacher_images(2048, (3, 16, 16), 10)
    val = teacher_images(64, (3, 16, 16), 10, data_seed=99)
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=args.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(args.seed),
    )
    trainer = pl.Trainer(
        max_steps=args.steps,
        accelerator="cpu",
        devices=1,
        accumulate_grad_batches=args.grad_accum,
        gradient_clip_val=5.0,
        val_check_interval=6,
        limit_val_batches=2,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[LossLines(), EvalProbe(val.tensors)],
    )
    trainer.fit(model, loader, torch.utils.data.DataLoader(val, batch_size=32))
    facts["final"] = snapshot(model)
    return finish(facts, args.dump)


if __name__ == "__main__":
    main()
