"""netagent: a node-level guard for the kernel's small network tables.

Layers, from the inside out (enforced by ``.importlinter``):
``model`` <- ``parse`` <- ``sources`` <- ``checks`` <- ``report``/``exporter`` <- ``cli``.
"""

__version__ = "0.1.0"
