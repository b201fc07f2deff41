"""pytorch/examples' word_language_model: an LSTM language model with a hand-written SGD.

As in pytorch/examples/word_language_model/main.py, on a synthetic corpus: ``batchify``
into columns, truncated back-propagation through time (``get_batch`` of ``--bptt``
tokens, ``repackage_hidden`` between batches), an ``RNNModel`` (Embedding, LSTM, Dropout,
tied decoder), ``model.zero_grad()``, ``clip_grad_norm_`` at 0.25 and the parameter
update written by hand (``p.data.add_(p.grad, alpha=-lr)``: no torch.optim optimizer),
evaluation every ``--eval-every`` batches with ``model.eval()``, and the learning rate
divided by 4 when the validation loss does not improve. One loss line per update.

Injected bugs (``--bug``):

- ``eval_mode_left_on``: ``model.train()`` is called once before the loop, not again
  after ``evaluate()``: Dropout is off for the rest of training. The upstream script
  re-enters train mode at each epoch start; evaluating mid-epoch without restoring it is
  https://github.com/MILVLG/mcan-vqa/issues/26 ("net.train() not called again after
  evaluation finishes").
- ``clip_after_update``: ``clip_grad_norm_`` runs after the hand-written update, so
  nothing that is applied is ever clipped:
  https://github.com/VGraphRNN/VGRNN/issues/4, https://github.com/awslabs/graphstorm/issues/1366,
  https://github.com/jongwook/onsets-and-frames/issues/24.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, markov_tokens, parser, report, snapshot

BUGS = {
    "eval_mode_left_on": "model.train() not restored after evaluate()",
    "clip_after_update": "clip_grad_norm_ after the parameter update",
}
NTOKENS = 40


class RNNModel(nn.Module):
    """Container module with an encoder, a recurrent module, and a decoder."""

    def __init__(self, ntoken: int, ninp: int, nhid: int, nlayers: int, dropout: float = 0.3):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        self.decoder.weight = self.encoder.weight  # tie_weights (ninp == nhid)
        self.nhid, self.nlayers = nhid, nlayers
        initrange = 0.1
        nn.init.uniform_(self.encoder.weight, -initrange, initrange)
        nn.init.zeros_(self.decoder.bias)

    def forward(self, input: torch.Tensor, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        decoded = self.decoder(self.drop(output)).view(-1, self.decoder.out_features)
        return torch.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz: int):
        weight = next(self.parameters())
        return (
            weight.new_zeros(self.nlayers, bsz, self.nhid),
            weight.new_zeros(self.nlayers, bsz, self.nhid),
        )


def batchify(data: torch.Tensor, bsz: int) -> torch.Tensor:
    nbatch = data.size(0) // bsz
    return data.narrow(0, 0, nbatch * bsz).view(bsz, -1).t().contiguous()


def repackage_hidden(h):
    if isinstance(h, torch.Tensor):
        return h.detach()
    return tuple(repackage_hidden(v) for v in h)


def main(argv: list[str] | None = None) -> dict:
    p = parser(__doc__.split("\n\n")[0], BUGS, steps=20, batch_size=8, lr=20.0)
    p.add_argument("--bptt", type=int, default=12)
    p.add_argument("--clip", type=float, default=0.25)
    p.add_argument("--eval-every", type=int, default=5)
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    corpus = markov_tokens(6000, NTOKENS)
    # The upstream corpus is fixed; the seed decides where training starts in it.
    offset = int(torch.randint(0, 1000, (1,), generator=torch.Generator().manual_seed(args.seed)))
    train_data = batchify(corpus[offset : offset + 4800], args.batch_size)
    val_data = batchify(corpus[5000:], 10)
    model = RNNModel(NTOKENS, 32, 32, 2)
    criterion = nn.NLLLoss()
    facts: dict = {"initial": snapshot(model), "lr": [], "training_mode": [], "losses": []}
    facts["applied_grad_norm"] = []

    def get_batch(source: torch.Tensor, i: int):
        seq_len = min(args.bptt, len(source) - 1 - i)
        return source[i : i + seq_len], source[i + 1 : i + 1 + seq_len].reshape(-1)

    def evaluate(source: torch.Tensor) -> float:
        model.eval()
        total, hidden = 0.0, model.init_hidden(10)
        with torch.no_grad():
            for i in range(0, source.size(0) - 1, args.bptt):
                data, targets = get_batch(source, i)
                output, hidden = model(data, hidden)
                hidden = repackage_hidden(hidden)
                total += len(data) * criterion(output, targets).item()
        return total / (len(source) - 1)

    lr, best_val = args.lr, None
    model.train()
    hidden = model.init_hidden(args.batch_size)
    step, i = 0, 0
    while step < args.steps:
        if i >= train_data.size(0) - 2:
            i, hidden = 0, model.init_hidden(args.batch_size)
        if args.bug != "eval_mode_left_on":
            model.train()
        facts["training_mode"].append(model.training)
        data, targets = get_batch(train_data, i)
        hidden = repackage_hidden(hidden)
        model.zero_grad()
        output, hidden = model(data, hidden)
        loss = criterion(output, targets)
        loss.backward()
        if args.bug != "clip_after_update":
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        norms = torch.stack([q.grad.norm() for q in model.parameters()])
        facts["applied_grad_norm"].append(float(torch.linalg.vector_norm(norms)))
        for q in model.parameters():
            q.data.add_(q.grad, alpha=-lr)
        if args.bug == "clip_after_update":
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        facts["lr"].append([lr])
        facts["losses"].append(loss.item())
        report(step, loss)
        step, i = step + 1, i + args.bptt
        if step % args.eval_every == 0:
            val_loss = evaluate(val_data)
            if best_val is None or val_loss < best_val:
                best_val = val_loss
            else:
                lr /= 4.0
    facts["final"] = snapshot(model)
    facts["val_ppl"] = math.exp(best_val) if best_val is not None else None
    return finish(facts, args.dump)


if __name__ == "__main__":
    main()
