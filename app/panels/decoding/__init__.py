"""Decoding: the panel, the beam-search tree and the attention map of one hypothesis.
"""
