"""A timm training loop: timm model, timm optimizer / scheduler factories, ModelEmaV3.

The loop of timm's ``train.py`` (``train_one_epoch`` + ``validate``) without its data
pipeline: a tiny ViT from ``timm.create_model`` (no pretrained weights), AdamW from
``timm.optim.create_optimizer_v2`` (which puts norms, biases and position embeddings in a
no-weight-decay group), a cosine schedule with warm-up from
``timm.scheduler.create_scheduler_v2`` driven per update with
``lr_scheduler.step_update(num_updates)`` and per epoch with ``lr_scheduler.step(epoch)``,
an EMA of the weights (``timm.utils.ModelEmaV3``, updated after every optimizer step),
gradient clipping, and a validation of the model and of its EMA at every epoch end.
Epochs are 6 updates long so that several run. ``--warmup`` counts epochs.

Injected bugs (``--bug``):

- ``ema_weights_not_restored``: to validate the EMA, its weights are copied into the
  model and the training weights are never put back: training silently continues from
  the EMA weights after every validation:
  https://github.com/PKU-YuanGroup/Open-Sora-Plan/issues/186 (also
  https://github.com/ultralytics/yolov5/issues/8979 for EMA/model weights mixed up).
- ``scheduler_step_per_batch``: ``lr_scheduler.step(num_updates)`` on every batch instead
  of ``step_update(num_updates)``: the epoch-based schedule advances one epoch per batch
  (warm-up and decay run ``updates_per_epoch`` times too fast). timm schedulers expect
  ``step`` at epoch ends and ``step_update`` after updates:
  https://github.com/huggingface/pytorch-image-models/issues/2125, and the same mistake
  with PyTorch schedulers https://github.com/sthalles/SimCLR/issues/8.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    finish,
    group_lrs,
    parser,
    report,
    snapshot,
    teacher_images,
    use_torchvision_stub_if_missing,
)

BUGS = {
    "ema_weights_not_restored": "EMA weights copied into the model for validation, never restored",
    "scheduler_step_per_batch": "lr_scheduler.step(num_updates) per batch instead of step_update",
}
UPDATES_PER_EPOCH = 6


def main(argv: list[str] | None = None) -> dict:
    use_torchvision_stub_if_missing()
    import timm
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2
    from timm.utils import ModelEmaV3

    p = parser(__doc__.split("\n\n")[0], BUGS, steps=18, batch_size=16, lr=2e-3, warmup=1)
    p.add_argument("--ema-decay", type=float, default=0.9)
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    model = timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=16,
        patch_size=4,
        in_chans=3,
        embed_dim=32,
        depth=2,
        num_heads=2,
        num_classes=10,
        drop_rate=0.1,
    )
    facts: dict = {"initial": snapshot(model), "lr": [], "losses": [], "after_validation": []}
    optimizer = create_optimizer_v2(model, opt="adamw", lr=args.lr, weight_decay=0.05)
    num_epochs = max(1, -(-args.steps // UPDATES_PER_EPOCH))
    lr_scheduler, num_epochs = create_scheduler_v2(
        optimizer,
        sched="cosine",
        num_epochs=num_epochs,
        warmup_epochs=args.warmup,
        warmup_lr=args.lr / 10,
        min_lr=args.lr / 100,
        step_on_epochs=True,
        updates_per_epoch=UPDATES_PER_EPOCH,
    )
    model_ema = ModelEmaV3(model, decay=args.ema_decay)
    data = teacher_images(UPDATES_PER_EPOCH * args.batch_size, (3, 16, 16), 10)
    val = teacher_images(64, (3, 16, 16), 10, data_seed=99)
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(args.seed),
    )

    @torch.no_grad()
    def validate(net: torch.nn.Module) -> float:
        net.eval()
        return F.cross_entropy(net(val.tensors[0]), val.tensors[1]).item()

    num_updates = 0
    for epoch in range(num_epochs):
        model.train()
        for inputs, labels in loader:
            if num_updates == args.steps:
                break
            loss = F.cross_entropy(model(inputs), labels)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            facts["lr"].append(group_lrs(optimizer))
            optimizer.step()
            num_updates += 1
            model_ema.update(model, step=num_updates)
            if args.bug == "scheduler_step_per_batch":
                lr_scheduler.step(num_updates)
            else:
                lr_scheduler.step_update(num_updates=num_updates)
            facts["losses"].append(loss.item())
            report(num_updates - 1, loss)
        validate(model)
        if args.bug == "ema_weights_not_restored":
            model.load_state_dict(model_ema.module.state_dict())  # "validate the EMA"
            validate(model)
        else:
            validate(model_ema.module)
        facts["after_validation"].append(
            {"model": snapshot(model), "ema": snapshot(model_ema.module), "step": num_updates}
        )
        lr_scheduler.step(epoch + 1)
        if num_updates == args.steps:
            break
    facts["final"] = snapshot(model)
    facts["ema_final"] = snapshot(model_ema.module)
    return finish(facts, args.dump)


if __name__ == "__main__":
    main()
