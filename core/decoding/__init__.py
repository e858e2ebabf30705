"""Decoding: greedy, sampling and beam search over any step function (``search``), the
beam-search tree as plain data (``tree``), and decoding typed text with a trained
encoder-decoder (``text``).
"""
