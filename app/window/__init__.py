"""The main window and what it assembles: menus, transport bar, status bar, Experiment dock,
sessions, help, the instrument schedule, settings, and the offscreen window used by
``shot``, ``export`` and the benchmarks.
"""
