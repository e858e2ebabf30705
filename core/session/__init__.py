"""Sessions: a trainer's whole state in memory (``snapshot``), in one ``.rnnx`` file
(``format``), read defensively (``readers``, ``checks``), and autosaved (``autosave``).
"""

SUFFIX = ".rnnx"  # a session file's; here, so the window can look for autosaves without loading torch
