"""A panel's header: its option widgets, then its note, laid out so nothing is ever cut off.

The widgets go left to right and wrap onto another line when the panel is narrower than
they are together (Decoding's toolbar on a laptop); the note goes at the right of the last
line when it fits there, and otherwise onto a line of its own, word-wrapped to the panel's
width ("σ_max < 1/γ = 1 would make gradien" was cut off at 1280x720). The header is as
tall as its lines: the layout has a height for each width, which the panel's vertical
layout honours.
"""

from __future__ import annotations

from PySide6.QtCore import QPoint, QRect, QSize, Qt
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import QLabel, QLayout, QLayoutItem, QWidget, QWidgetItem


class HeaderLayout(QLayout):
    """Flowing option widgets plus a word-wrapped note (``set_note``); see the module doc."""

    def __init__(self, parent: QWidget | None = None, spacing: int = 12, line_spacing: int = 2):
        super().__init__(parent)
        self._items: list[QLayoutItem] = []
        self._note: QLabel | None = None
        self._note_item: QLayoutItem | None = None
        self._spacing = spacing
        self._line_spacing = line_spacing

    # -- QLayout ---------------------------------------------------------------------------
    def addItem(self, item: QLayoutItem) -> None:  # noqa: N802 (Qt naming)
        self._items.append(item)

    def set_note(self, note: QLabel) -> None:
        """The note: last, word-wrapped when it needs a line of its own."""
        self.addChildWidget(note)
        note.setWordWrap(True)
        self._note = note
        self._note_item = QWidgetItem(note)
        self.invalidate()

    def _all(self) -> list[QLayoutItem]:
        return self._items + ([self._note_item] if self._note_item is not None else [])

    def count(self) -> int:
        return len(self._all())

    def itemAt(self, index: int) -> QLayoutItem | None:  # noqa: N802 (Qt naming)
        items = self._all()
        return items[index] if 0 <= index < len(items) else None

    def takeAt(self, index: int) -> QLayoutItem | None:  # noqa: N802 (Qt naming)
        if 0 <= index < len(self._items):
            return self._items.pop(index)
        if index == len(self._items) and self._note_item is not None:
            item, self._note_item, self._note = self._note_item, None, None
            return item
        return None

    def expandingDirections(self) -> Qt.Orientation:  # noqa: N802 (Qt naming)
        return Qt.Orientation(0)

    def hasHeightForWidth(self) -> bool:  # noqa: N802 (Qt naming)
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802 (Qt naming)
        return self._arrange(QRect(0, 0, width, 0), apply=False)

    def setGeometry(self, rect: QRect) -> None:  # noqa: N802 (Qt naming)
        super().setGeometry(rect)
        self._arrange(rect, apply=True)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt naming)
        """Everything on one line (what a wide panel shows)."""
        m = self.contentsMargins()
        widgets = [i.sizeHint() for i in self._items if not i.isEmpty()]
        width = sum(s.width() for s in widgets) + self._spacing * max(len(widgets) - 1, 0)
        height = max((s.height() for s in widgets), default=0)
        if self._has_note():
            width += self._spacing + self._note_width()
            height = max(height, self._note.fontMetrics().height())
        return QSize(width + m.left() + m.right(), height + m.top() + m.bottom())

    def minimumSize(self) -> QSize:  # noqa: N802 (Qt naming)
        """As narrow as the widest widget, or the note's longest word."""
        m = self.contentsMargins()
        width = max((i.minimumSize().width() for i in self._items if not i.isEmpty()), default=0)
        if self._has_note():
            metrics = self._note.fontMetrics()
            width = max(width, max(metrics.horizontalAdvance(w) for w in self._note.text().split()))
        return QSize(width + m.left() + m.right(), m.top() + m.bottom())

    # -- layout ----------------------------------------------------------------------------
    def _has_note(self) -> bool:
        return self._note is not None and not self._note.isHidden() and bool(self._note.text().strip())

    def _note_width(self) -> int:
        metrics = QFontMetrics(self._note.font())
        return max(metrics.horizontalAdvance(line) for line in self._note.text().split("\n")) + 2

    def _arrange(self, rect: QRect, apply: bool) -> int:
        """Place the items in ``rect`` (or only measure); returns the height used."""
        m = self.contentsMargins()
        area = rect.adjusted(m.left(), m.top(), -m.right(), -m.bottom())
        left, right = area.left(), area.left() + max(area.width(), 1)
        lines: list[list[tuple[QLayoutItem, int, QSize]]] = [[]]
        x = left
        for item in self._items:
            if item.isEmpty():
                continue
            hint = item.sizeHint()
            width = min(max(hint.width(), item.minimumSize().width()), right - left)
            if lines[-1] and x + width > right:
                lines.append([])
                x = left
            lines[-1].append((item, x, QSize(width, hint.height())))
            x += width + self._spacing
        note_line = None
        if self._has_note():
            width = self._note_width()
            if lines[-1] and x + width <= right:  # at the right of the last line
                note_line = (len(lines) - 1, right - width, width, self._note.fontMetrics().height(), True)
            else:  # a line of its own, wrapped to the whole width (right-aligned if one line)
                if lines[-1]:
                    lines.append([])
                one_line = width <= right - left
                width = right - left
                note_line = (len(lines) - 1, left, width, self._note.heightForWidth(width), one_line)
        if apply and note_line is None and self._note_item is not None:
            self._note_item.setGeometry(QRect(left, area.top(), 0, 0))  # empty: nowhere
        y = area.top()
        for index, line in enumerate(lines):
            height = max((size.height() for _, _, size in line), default=0)
            if note_line is not None and note_line[0] == index:
                height = max(height, note_line[3])
            if apply:
                for item, x, size in line:
                    item.setGeometry(QRect(QPoint(x, y + (height - size.height()) // 2), size))
                if note_line is not None and note_line[0] == index:
                    _, x, width, note_height, beside = note_line
                    self._note.setAlignment((Qt.AlignRight if beside else Qt.AlignLeft) | Qt.AlignVCenter)
                    top = y + (height - note_height) // 2 if beside else y
                    self._note_item.setGeometry(QRect(x, top, width, note_height))
            y += height + (self._line_spacing if index < len(lines) - 1 else 0)
        return y - rect.top() + m.bottom()
