"""Synthetic next-token data for the small attention examples (SDPA flags, tied weights).

Each sequence follows a fixed rule (next token = 3 * token + 1 mod VOCAB) with some
tokens replaced by noise, so a causal model can learn it from the past alone while
a model that can see the future copies the answer: the two are easy to tell apart.
"""

from __future__ import annotations

import torch

VOCAB = 16
SEQ_LEN = 12


def make_token_loader(
    batch_size: int, seed: int, num_samples: int = 512, data_seed: int = 4321
) -> torch.utils.data.DataLoader:
    """(inputs, targets) pairs, targets being the inputs shifted by one token."""
    generator = torch.Generator().manual_seed(data_seed)
    tokens = torch.empty(num_samples, SEQ_LEN + 1, dtype=torch.long)
    tokens[:, 0] = torch.randint(VOCAB, (num_samples,), generator=generator)
    for t in range(1, SEQ_LEN + 1):
        tokens[:, t] = (3 * tokens[:, t - 1] + 1) % VOCAB
    noise = torch.rand(num_samples, SEQ_LEN + 1, generator=generator) < 0.2
    tokens[noise] = torch.randint(VOCAB, (int(noise.sum()),), generator=generator)
    dataset = torch.utils.data.TensorDataset(tokens[:, :-1], tokens[:, 1:])
    shuffle = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=True, generator=shuffle
    )
