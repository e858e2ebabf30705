"""RNN Explorer desktop app (PySide6 + pyqtgraph). See ARCHITECTURE.md."""
