"""Commands of the desktop app: ``gui`` and ``shot`` (``gui``), ``export`` (``export``) and
``bench`` (``bench``, which runs the engine's and the window's benchmarks).
"""
