"""Headless commands of the engine: ``presets`` and ``train`` (``train``), ``decode``
(``decode``); shared helpers in ``common``; torch thread settings in ``runtime``.
"""
