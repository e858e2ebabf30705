"""Compare: RNN vs LSTM vs GRU on the same experiment, trained in a child process.
"""
