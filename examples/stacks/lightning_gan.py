"""A Lightning GAN with manual optimization: two optimizers, two schedulers, toggling.

``automatic_optimization = False``; each ``training_step`` fetches ``self.optimizers()``
and ``self.lr_schedulers()``, trains the discriminator on real and detached fake samples,
then the generator, each inside ``toggle_optimizer``/``untoggle_optimizer``, with
``self.manual_backward``, ``opt.step()``, ``opt.zero_grad()``, and steps both StepLR
schedulers itself (in manual optimization Lightning never steps them). The data are
2-D points from a ring of Gaussians. One line per training step: the discriminator loss
and the generator loss (two optimizer steps per line).

Injected bugs (``--bug``):

- ``schedulers_not_stepped``: the schedulers are declared in ``configure_optimizers`` but
  never stepped, as they would be under automatic optimization; since Lightning 1.3
  manual optimization leaves that to the user, so the lr never decays:
  https://github.com/Lightning-AI/pytorch-lightning/issues/6379 (PR #6825),
  https://github.com/voicepaw/so-vits-svc-fork/pull/291 ("fix lr_decay not working").
- ``d_zero_grad_missing``: ``opt_d.zero_grad()`` is dropped (under automatic optimization
  Lightning zeroes gradients for you): the discriminator's gradients pile up across steps.
  Under manual optimization ``zero_grad`` is the user's job (the optimization docs, see
  https://github.com/Lightning-AI/pytorch-lightning/pull/6147 and
  https://github.com/Lightning-AI/pytorch-lightning/pull/6907).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, group_lrs, parser, report, snapshot
from lightning_auto import quiet_lightning

BUGS = {
    "schedulers_not_stepped": "lr schedulers never stepped under manual optimization",
    "d_zero_grad_missing": "discriminator gradients never zeroed",
}
LATENT = 4


def ring_points(count: int, data_seed: int = 1234) -> torch.Tensor:
    g = torch.Generator().manual_seed(data_seed)
    modes = torch.randint(0, 8, (count,), generator=g).float() * (2 * math.pi / 8)
    centres = torch.stack([torch.cos(modes), torch.sin(modes)], dim=1) * 2.0
    return centres + 0.05 * torch.randn(count, 2, generator=g)


def main(argv: list[str] | None = None) -> dict:
    import lightning.pytorch as pl

    quiet_lightning()
    p = parser(__doc__.split("\n\n")[0], BUGS, steps=16, batch_size=32, lr=2e-3)
    args = p.parse_args(argv)
    facts: dict = {"lr_g": [], "lr_d": [], "d_grad_before_backward": [], "losses": []}

    class GAN(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False
            self.generator = nn.Sequential(
                nn.Linear(LATENT, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 2)
            )
            self.discriminator = nn.Sequential(
                nn.Linear(2, 32),
                nn.LeakyReLU(0.2),
                nn.Linear(32, 32),
                nn.LeakyReLU(0.2),
                nn.Linear(32, 1),
            )

        def training_step(self, batch, batch_idx):
            (real,) = batch
            opt_g, opt_d = self.optimizers()
            sched_g, sched_d = self.lr_schedulers()
            z = torch.randn(real.size(0), LATENT)
            fake = self.generator(z)
            ones, zeros = torch.ones(real.size(0), 1), torch.zeros(real.size(0), 1)

            self.toggle_optimizer(opt_d)
            grads = [p.grad for p in self.discriminator.parameters() if p.grad is not None]
            facts["d_grad_before_backward"].append(
                float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))
                if grads
                else 0.0
            )
            d_loss = 0.5 * (
                F.binary_cross_entropy_with_logits(self.discriminator(real), ones)
                + F.binary_cross_entropy_with_logits(self.discriminator(fake.detach()), zeros)
            )
            self.manual_backward(d_loss)
            facts["lr_d"].append(group_lrs(opt_d.optimizer))
            opt_d.step()
            if args.bug != "d_zero_grad_missing":
                opt_d.zero_grad()
            self.untoggle_optimizer(opt_d)

            self.toggle_optimizer(opt_g)
            g_loss = F.binary_cross_entropy_with_logits(self.discriminator(fake), ones)
            self.manual_backward(g_loss)
            facts["lr_g"].append(group_lrs(opt_g.optimizer))
            opt_g.step()
            opt_g.zero_grad()
            self.untoggle_optimizer(opt_g)

            if args.bug != "schedulers_not_stepped":
                sched_g.step()
                sched_d.step()
            facts["losses"].append((d_loss.item(), g_loss.item()))
            report(batch_idx, d_loss, g_loss=g_loss)

        def configure_optimizers(self):
            opt_g = torch.optim.Adam(self.generator.parameters(), lr=args.lr, betas=(0.5, 0.999))
            opt_d = torch.optim.Adam(
                self.discriminator.parameters(), lr=args.lr, betas=(0.5, 0.999)
            )
            sched_g = torch.optim.lr_scheduler.StepLR(opt_g, step_size=4, gamma=0.5)
            sched_d = torch.optim.lr_scheduler.StepLR(opt_d, step_size=4, gamma=0.5)
            return [opt_g, opt_d], [sched_g, sched_d]

    pl.seed_everything(args.seed, verbose=False)
    model = GAN()
    facts["initial"] = snapshot(model)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(ring_points(2048)),
        batch_size=args.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(args.seed),
    )
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=args.steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, loader)
    facts["global_step"] = trainer.global_step
    facts["final"] = snapshot(model)
    return finish(facts, args.dump)


if __name__ == "__main__":
    main()
