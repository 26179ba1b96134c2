"""The one exception family netagent raises.

System and library errors are wrapped at the boundary (``raise NetagentError(...) from err``)
so callers above ``sources/`` handle a single type.
"""


class NetagentError(Exception):
    """Base class for every error netagent reports to a person."""


class ConfigError(NetagentError):
    """A configuration file or option is wrong; the message names the key and the file."""


class SourceError(NetagentError):
    """A source could not read what it needs (missing file, no permission, netlink error)."""


class ParseError(NetagentError):
    """Input from the system or a server is not what its format says (the message says how)."""
