"""A 🤗 transformers.Trainer job: a 2-layer GPT-2 built from a config, synthetic token data.

Causal-LM fine-tuning as in the library's examples: ``GPT2LMHeadModel(GPT2Config(...))``
(no download), variable-length synthetic sequences padded by a user collator whose
``labels`` are the input ids with padding masked to -100, ``Trainer`` with AdamW, a
linear schedule with ``--warmup`` steps, ``--grad-accum`` gradient accumulation, gradient
clipping at 1.0 and an evaluation loop every 4 steps. One loss line per optimizer step
(the sum of the micro-batch losses that ``training_step`` returns), printed from a
``TrainerCallback``.

Injected bugs (``--bug``):

- ``pad_labels_not_masked``: the collator copies padded ``input_ids`` into ``labels``
  without setting the padding to -100, so the loss trains the model to predict padding:
  https://github.com/huggingface/transformers/issues/32832,
  https://github.com/allenai/open-instruct/issues/632.
- ``custom_loss_ignores_num_items`` (use with ``--grad-accum 4``): a ``compute_loss``
  override returns the per-micro-batch mean and ignores ``num_items_in_batch``; the
  model accepts loss kwargs, so Trainer does not divide by the accumulation steps and
  the gradients are GA times too large:
  https://github.com/huggingface/transformers/issues/37766,
  https://github.com/MakazhanAlpamys/Soup/issues/720 (transformers 5.16, torch 2.13).
- ``frozen_tied_embeddings``: "freeze the token embeddings" with
  ``wte.weight.requires_grad_(False)`` also freezes the LM head, whose weight is the same
  tensor (GPT-2 ties them): https://github.com/huggingface/transformers/issues/11903.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, group_lrs, markov_tokens, parser, report, snapshot

BUGS = {
    "pad_labels_not_masked": "padding positions of labels not set to -100",
    "custom_loss_ignores_num_items": "compute_loss override ignores num_items_in_batch (GA>1)",
    "frozen_tied_embeddings": "freezing wte also freezes the tied lm_head",
}
PAD, VOCAB, MAX_LEN = 0, 48, 24


def make_examples(count: int, seed: int) -> list[dict[str, list[int]]]:
    """Variable-length slices of a Markov token stream (ids 1..VOCAB-1; 0 is padding)."""
    stream = markov_tokens(count * MAX_LEN, VOCAB, first=1, data_seed=seed)
    lengths = torch.randint(8, MAX_LEN + 1, (count,), generator=torch.Generator().manual_seed(seed))
    return [
        {"input_ids": stream[i * MAX_LEN : i * MAX_LEN + int(n)].tolist()}
        for i, n in enumerate(lengths)
    ]


class PadCollator:
    """Right-pad to the longest sequence; labels = input ids, padding masked (or not)."""

    def __init__(self, mask_padding: bool):
        self.mask_padding = mask_padding
        self.unmasked_pad_labels = 0

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), longest), PAD, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, f in enumerate(features):
            ids[row, : len(f["input_ids"])] = torch.tensor(f["input_ids"])
            mask[row, : len(f["input_ids"])] = 1
        labels = ids.clone()
        if self.mask_padding:
            labels[mask == 0] = -100
        self.unmasked_pad_labels += int(((mask == 0) & (labels != -100)).sum())
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def main(argv: list[str] | None = None) -> dict:
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        PrinterCallback,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    p = parser(__doc__.split("\n\n")[0], BUGS, steps=12, batch_size=8, lr=3e-3, warmup=2)
    p.add_argument("--grad-accum", type=int, default=1)
    args = p.parse_args(argv)
    facts: dict = {"lr": [], "grad_norm": [], "losses": [], "trainable_lm_head": None}

    class LossLines(TrainerCallback):
        """Print the optimizer step's loss; record the lr the step used."""

        def __init__(self) -> None:
            self.pending = 0.0

        def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
            facts["lr"].append(group_lrs(optimizer))

        def on_step_end(self, args, state, control, **kwargs):
            facts["losses"].append(self.pending)
            report(state.global_step - 1, self.pending)
            self.pending = 0.0

    class LMTrainer(Trainer):
        def training_step(self, model, inputs, num_items_in_batch=None):
            loss = super().training_step(model, inputs, num_items_in_batch)
            lines.pending += loss.item()
            return loss

        if args.bug == "custom_loss_ignores_num_items":

            def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
                labels = inputs.pop("labels")
                outputs = model(**inputs)
                logits = outputs.logits[:, :-1].reshape(-1, outputs.logits.size(-1))
                loss = torch.nn.functional.cross_entropy(
                    logits, labels[:, 1:].reshape(-1), ignore_index=-100
                )
                return (loss, outputs) if return_outputs else loss

    lines = LossLines()
    torch.manual_seed(args.seed)
    config = GPT2Config(
        vocab_size=VOCAB,
        n_positions=MAX_LEN,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=1,
        eos_token_id=1,
        pad_token_id=PAD,
    )
    model = GPT2LMHeadModel(config)
    if args.bug == "frozen_tied_embeddings":
        model.transformer.wte.weight.requires_grad_(False)  # meant: embeddings only
    facts["initial"] = snapshot(model)
    collator = PadCollator(mask_padding=args.bug != "pad_labels_not_masked")
    with tempfile.TemporaryDirectory(prefix="hf-trainer-") as out:
        training_args = TrainingArguments(
            output_dir=out,
            max_steps=args.steps,
            per_device_train_batch_size=args.batch_size,
            per_device_eval_batch_size=args.batch_size,
            gradient_accumulation_steps=args.grad_accum,
            learning_rate=args.lr,
            warmup_steps=args.warmup,
            lr_scheduler_type="linear",
            weight_decay=0.01,
            max_grad_norm=1.0,
            eval_strategy="steps",
            eval_steps=4,
            logging_strategy="steps",
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            use_cpu=True,
            seed=args.seed,
            data_seed=args.seed,
            dataloader_num_workers=0,
        )
        trainer = LMTrainer(
            model=model,
            args=training_args,
            train_dataset=make_examples(256, 1234),
            eval_dataset=make_examples(16, 99),
            data_collator=collator,
            callbacks=[lines],
        )
        trainer.remove_callback(PrinterCallback)  # its log dicts would interleave the lines
        trainer.train()
    facts["grad_norm"] = [e["grad_norm"] for e in trainer.state.log_history if "grad_norm" in e]
    facts["eval_loss"] = [e["eval_loss"] for e in trainer.state.log_history if "eval_loss" in e]
    facts["unmasked_pad_labels"] = collator.unmasked_pad_labels
    facts["final"] = snapshot(model)
    facts["lm_head_is_wte"] = model.lm_head.weight is model.transformer.wte.weight
    return finish(facts, args.dump)


if __name__ == "__main__":
    main()
