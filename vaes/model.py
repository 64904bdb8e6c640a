"""The VAE: an encoder, a decoder and a balancing variant, composed.

The variant (``vaes/variants``) owns the loss and any state it needs (a learned
log-gamma, a running MSE) as parameters or buffers, so the state is saved, moved to the
device and resumed with the weights.
"""
from __future__ import annotations

import torch
from torch import nn


class VAE(nn.Module):
    """Gaussian-posterior VAE; ``output='sigmoid'`` for images in [0, 1], 'identity' for latents."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, balance: nn.Module, *,
                 latent_dim: int, output: str = "sigmoid"):
        super().__init__()
        if output not in ("sigmoid", "identity"):
            raise ValueError(f"output must be 'sigmoid' or 'identity', got {output!r}")
        self.encoder, self.decoder, self.balance = encoder, decoder, balance
        self.latent_dim = latent_dim
        self.output = output

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance, each (B, d)."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Mean of p(x|z): (B, d) -> shape of x, in [0, 1] for images."""
        logits = self.decoder(z)
        return torch.sigmoid(logits) if self.output == "sigmoid" else logits

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encode, sample z by reparameterisation, decode. Returns mu, logvar, z, logits, x_hat."""
        mu, logvar = self.encoder(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        logits = self.decoder(z)
        x_hat = torch.sigmoid(logits) if self.output == "sigmoid" else logits
        return {"mu": mu, "logvar": logvar, "z": z, "logits": logits, "x_hat": x_hat}

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The variant's named loss terms on batch x (``loss`` is what gets minimised)."""
        return self.balance.loss(x, self(x))

    def after_step(self, terms: dict[str, torch.Tensor]) -> None:
        """Let the variant update its state after an optimiser step (training only)."""
        hook = getattr(self.balance, "after_step", None)
        if hook is not None:
            with torch.no_grad():
                hook(terms)

    def gamma(self) -> torch.Tensor | None:
        """The decoder's current standard deviation, or None where the variant has none."""
        return self.balance.gamma()

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, *, noise: bool = False) -> torch.Tensor:
        """n samples from p(z) p(x|z): the decoder's mean, plus its Gaussian noise gamma * eps
        when ``noise`` (ancestral sampling; used for the second stage, whose output is z)."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator, device=device)
        x = self.decode(z)
        gamma = self.gamma()
        if noise and gamma is not None:
            x = x + gamma.to(device) * torch.randn(x.shape, generator=generator, device=device)
        return x
