"""Instruments that look inside a model between two training steps: gradients through
time (``bptt``), per-step Jacobians and their products (``jacobians``), and the spectrum
of the recurrent weights (``spectrum``).
"""
