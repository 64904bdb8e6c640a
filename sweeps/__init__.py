"""Optuna studies and their submitit launcher: python -m sweeps.run --study NAME."""
