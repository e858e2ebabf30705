"""The networks: instrumented recurrent cells (torch.nn-compatible), their initialisation,
the sequence model with a readout, and the encoder-decoder with attention.
"""
