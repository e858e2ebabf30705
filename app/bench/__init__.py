"""Benchmarks of the desktop app (the window), for ``python main.py bench`` (app.cli.bench).
"""
