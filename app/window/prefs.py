"""What the window remembers between runs, in the app's settings (app.settings).

Keys: ``window/geometry`` and ``window/state`` (size, place, docks), ``window/custom_layout``
(the user arranged the docks: restore them as they were, else arrange them for the size),
``window/theme`` and ``window/preset`` (the last chosen). The folders file dialogs start in
are app.settings' (shared with the export dialogs).
"""

from __future__ import annotations

from typing import Any

from app.settings import settings


def remembered(key: str) -> str | None:
    """``window/<key>`` ("theme", "preset"), or None when never set."""
    value = settings().value(f"window/{key}", "", type=str)
    return value or None


def remember(key: str, value: str) -> None:
    store = settings()
    store.setValue(f"window/{key}", value)
    store.sync()


def save_window(window: Any) -> None:
    """The window's geometry, docks, theme and preset, as it closes."""
    store = settings()
    store.setValue("window/geometry", window.saveGeometry())
    store.setValue("window/state", window.saveState())
    store.setValue("window/custom_layout", bool(window.layout_manager.custom))
    store.setValue("window/theme", window.theme.name)
    store.setValue("window/preset", window.preset_name)
    store.sync()


def restore_window(window: Any) -> bool:
    """Size and place the window as it was; its docks too when the user had arranged them
    (else they are arranged for the size). Returns whether anything was restored."""
    store = settings()
    geometry = store.value("window/geometry")
    if geometry is None:
        return False
    window.restoreGeometry(geometry)
    state = store.value("window/state")
    if store.value("window/custom_layout", False, type=bool) and state is not None:
        if window.restoreState(state):
            window.layout_manager.custom = True
            window.layout_manager.fit_tabs()
            return True
    window.layout_manager.arrange()
    return True
