"""Balancing variants: one file each, registered on import. Adding one = a file + a line here."""
from vaes.variants import balanced, beta, free_bits, kl_annealing, learned_gamma, sigma

__all__ = ["balanced", "beta", "free_bits", "kl_annealing", "learned_gamma", "sigma"]  # imported to register
