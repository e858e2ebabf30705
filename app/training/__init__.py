"""Training in a process of its own. Everything here except ``controller`` runs in the
child process and imports no Qt (an import-linter contract checks it): ``loop`` (the
training loop), ``compare`` (the RNN/LSTM/GRU comparison loop), ``engine`` (building
trainers, describing runs), ``jobs`` (work run where the model lives) and ``messages``
(the typed commands and replies that cross the pipe). ``controller`` is the window's face
of such a process (Qt signals in the GUI thread).
"""
