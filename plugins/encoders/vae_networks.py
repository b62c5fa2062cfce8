"""The networks behind ``rna-vae`` / ``mutation-vae`` (torch imported lazily, behind :func:`build_vae`).

``mlp``
    fusionkit's symmetric MLP VAE: encoder ``hidden_dims`` -> linear (mu, logvar); decoder mirrors
    the encoder and ends in a linear layer (logits for BCE, values for the Gaussian losses).
``paper``
    the authors' RNA network (Exitare/heterogeneous-embedding-vectors,
    ``0_04_create_rna_embeddings.py``): encoder Dense(F/2, ReLU) -> Dense(F/3, ReLU); mu =
    Dense(latent) -> BatchNorm -> ReLU and log-variance the same way; decoder a single Dense(F)
    (sigmoid; here it returns logits and the loss applies the sigmoid, which is numerically the same).
    Its embeddings are non-negative with a mean offset, as the authors' were.

Both return ``(reconstruction, mu, logvar)`` from ``forward(x, noise)`` and ``(mu, logvar)`` from
``encode(x)``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

ARCHITECTURES = ("mlp", "paper")


def paper_hidden(in_dim: int) -> list[int]:
    """The authors' encoder widths for ``in_dim`` input features: F/2 then F/3 (at least 1 each)."""
    return [max(1, in_dim // 2), max(1, in_dim // 3)]


@lru_cache(maxsize=1)
def _classes() -> dict[str, Any]:
    import torch
    from torch import nn

    def _stack(prev: int, widths: list[int], dropout: float) -> tuple[list[nn.Module], int]:
        layers: list[nn.Module] = []
        for h in widths:
            layers += [nn.Linear(prev, h), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            prev = h
        return layers, prev

    class _Base(nn.Module):
        def encode(self, x: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
            h = self.encoder(x)
            return self.mu(h), self.logvar(h).clamp(-20.0, 20.0)

        def forward(self, x: "torch.Tensor", noise: "torch.Tensor"):
            mu, logvar = self.encode(x)
            z = mu + noise * torch.exp(0.5 * logvar)
            return self.decoder(z), mu, logvar

    class MLPVAE(_Base):
        """Encoder MLP -> (mu, logvar); mirrored decoder MLP -> reconstruction logits/values."""

        def __init__(self, in_dim: int, hidden: list[int], latent: int, dropout: float):
            super().__init__()
            enc, prev = _stack(in_dim, hidden, dropout)
            self.encoder = nn.Sequential(*enc)
            self.mu = nn.Linear(prev, latent)
            self.logvar = nn.Linear(prev, latent)
            dec, prev = _stack(latent, list(reversed(hidden)), dropout)
            self.decoder = nn.Sequential(*dec, nn.Linear(prev, in_dim))

    class PaperVAE(_Base):
        """The authors' RNA VAE: Dense(F/2) -> Dense(F/3); heads Dense -> BatchNorm -> ReLU; decoder Dense(F)."""

        def __init__(self, in_dim: int, hidden: list[int], latent: int, dropout: float):
            super().__init__()
            enc, prev = _stack(in_dim, hidden, dropout)
            self.encoder = nn.Sequential(*enc)
            self.mu = nn.Sequential(nn.Linear(prev, latent), nn.BatchNorm1d(latent), nn.ReLU())
            self.logvar = nn.Sequential(nn.Linear(prev, latent), nn.BatchNorm1d(latent), nn.ReLU())
            self.decoder = nn.Linear(latent, in_dim)

    return {"mlp": MLPVAE, "paper": PaperVAE}


def build_vae(architecture: str, in_dim: int, hidden: list[int], latent: int, dropout: float):
    """A fresh (untrained) VAE module of the named architecture."""
    return _classes()[architecture](in_dim, hidden, latent, dropout)


def n_params(architecture: str, in_dim: int, hidden: list[int], latent: int) -> int:
    """Parameter count of :func:`build_vae` without building it (for model cards and docs)."""
    total, prev = 0, in_dim
    for h in hidden:
        total += prev * h + h
        prev = h
    if architecture == "paper":
        return total + 2 * (prev * latent + 3 * latent) + latent * in_dim + in_dim
    total += 2 * (prev * latent + latent)
    prev = latent
    for h in reversed(hidden):
        total += prev * h + h
        prev = h
    return total + prev * in_dim + in_dim
