"""``python -m benchmarks.speed``."""
from benchmarks.speed.cli import main

main()
