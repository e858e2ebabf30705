"""Benchmarks of the engine, for ``python main.py bench`` (app.cli.bench): each returns a
dict with a ratio of two things timed in the same run.
"""
