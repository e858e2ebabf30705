"""Sessions: a trainer's whole state in memory (``snapshot``), in one ``.rnnx`` file
(``format``), read defensively (``readers``, ``checks``), and autosaved (``autosave``).
"""
