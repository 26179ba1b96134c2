"""Pure parsers: text or bytes in, immutable records (``netagent.model``) out.

No I/O, no clocks, no system libraries: everything here runs on captured fixtures.
"""
