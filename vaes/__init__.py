"""vaebench's library: variants, networks, data sets, the trainer and the metrics."""
from vaes.registry import get_variant, list_variants, register_variant
import vaes.variants  # registers the built-in variants
from vaes.load import RunNotLoadable, TrainedRun, load_run  # trained runs from Python

__all__ = ["get_variant", "list_variants", "register_variant", "load_run", "TrainedRun", "RunNotLoadable"]
