"""Inside the cell: the panel, the cell diagram (``view``, ``diagram``) and its equations.
"""
