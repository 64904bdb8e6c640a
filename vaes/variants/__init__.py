"""Balancing variants: one file each, registered on import. Adding one = a file + a line here."""
from vaes.variants import balanced, beta, free_bits, kl_annealing, learned_gamma, sigma  # noqa: F401
