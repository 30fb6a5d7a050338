"""Sub-commands of the `jghub` command line, one module per room.

Docstrings and help strings wrap like any other text here: the `jghub` group (hub/cli.py) joins
the lines of each paragraph before typer renders them, and the terminal breaks them at its width.
A blank line separates paragraphs.
"""
