"""Training: the trainer (one optimiser update per step, plain records out), its bounded
history, the last-good state a diverged run goes back to, memory estimates, gradient
clipping, the model factory and the RNN/LSTM/GRU comparison.
"""
