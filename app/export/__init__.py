"""Figures and data for slides: one panel as a figure (``figure``), its data as files
(``data``), every panel at once (``batch``) and the dialogs and menus that offer them
(``dialog``).
"""
