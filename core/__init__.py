"""RNN Explorer's engine: cells, tasks, training, BPTT, decoding, sessions. No Qt here.

Modules are imported individually (``from core.training.trainer import Trainer``) so that importing
one light module (records, config) does not load torch.
"""

__version__ = "0.1.0"
