"""The launch layer: submitit executors, array jobs, requeue on preemption, code snapshots.

Below both ``benchmarks`` (suites on a cluster) and ``sweeps`` (Optuna studies), above ``vaes``:
it knows how to send work to SLURM (or local subprocesses, or this process) and wait for it,
and nothing about what the work is.
"""
