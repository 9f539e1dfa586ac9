"""Benchmarks: scripts that print figures side by side, run as modules (`python -m benchmarks.speed`, ...).

The measured tables, with machine, date and command, are in `benchmarks/RESULTS.md`.
"""
