"""Exception types the engine raises for bad input; the app and CLI show their message."""

from __future__ import annotations


class UserError(Exception):
    """Something the user asked for cannot be done; the message says what and why."""


class PresetError(UserError):
    """A preset is unknown or its file is invalid."""


class SessionError(UserError):
    """A session file cannot be read or written."""


class ResourceError(UserError):
    """A configuration would need more memory than is safe on this machine."""
