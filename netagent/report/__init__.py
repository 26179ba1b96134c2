"""Rendering a ``Report`` for people (terminal) and programs (JSON). No I/O beyond strings."""
