"""Reading the files people write: bounded regular files and strict YAML.

netagent reads three kinds of file it does not control: its own ``--config``, kubeconfigs and
the kubelet's configuration (read again every DNS round). Each may be wrong, or hostile, so:

- ``read_text`` opens regular files only (a FIFO would block for ever, ``/dev/zero`` would
  fill memory), reads at most ``limit`` bytes and decodes UTF-8 strictly. Every failure is a
  ``LoadError`` naming the file.
- ``load_yaml`` is PyYAML's safe loader with three things taken away: aliases (a 400-byte
  "billion laughs" document expands to gigabytes once anything walks it), duplicate keys
  (YAML says a key is unique; PyYAML silently keeps the last one) and the YAML 1.1 implicit
  types that surprise people: ``2:30`` read as 150 (sexagesimal), ``yes``/``on``/``no``/
  ``off`` read as booleans, ``1_000`` as 1000. Scalars resolve by the YAML 1.2 core schema:
  ``true``/``false``, decimal, ``0x``/``0o`` integers and plain floats; anything else is a
  string, and the configuration's type checks then say so. JSON documents load the same way.
- ``shorten`` cuts a value for an error message, so a huge value is never printed whole.

No network, no subprocess: this module sits just above ``netagent.model`` in the layers.
"""

from __future__ import annotations

import os
import re
import stat
from typing import Any

import yaml

from netagent.errors import NetagentError

MAX_CONFIG_BYTES = 1 << 20  # a configuration or kubelet file is a few KB
MAX_KUBECONFIG_BYTES = 4 << 20  # kubeconfigs carry certificates: still well under 4 MB


class LoadError(NetagentError):
    """A file could not be read or understood; the message names the file."""


def read_text(path: str | os.PathLike[str], *, limit: int = MAX_CONFIG_BYTES,
              what: str = "file", errors: str = "strict") -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes.

    Opened with O_NONBLOCK so that a FIFO does not block the open itself; anything but a
    regular file is refused before a byte is read. ``FileNotFoundError`` is re-raised as is
    (callers decide whether a missing file is an error); every other failure is a
    ``LoadError``. ``errors="replace"`` reads as glibc does files it only scans for
    keywords (resolv.conf): bytes that are not UTF-8 become U+FFFD instead of an error.
    """
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        raise
    except OSError as err:
        raise LoadError(f"{name}: cannot read {what}: {err.strerror or err}") from err
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise LoadError(f"{name}: {what} is not a regular file")
        if info.st_size > limit:
            raise LoadError(f"{name}: {what} is larger than {_size(limit)}")
        chunks: list[bytes] = []
        size = 0
        while True:  # st_size can lie (procfs, a file growing): bound what is read too
            chunk = os.read(fd, min(1 << 16, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise LoadError(f"{name}: {what} is larger than {_size(limit)}")
    except OSError as err:
        raise LoadError(f"{name}: cannot read {what}: {err.strerror or err}") from err
    finally:
        os.close(fd)
    data = b"".join(chunks)
    try:
        return data.decode("utf-8", errors)
    except UnicodeDecodeError as err:
        raise LoadError(f"{name}: {what} is not UTF-8 text (byte {err.start}: "
                        f"{data[err.start:err.start + 1]!r})") from err


def _size(limit: int) -> str:
    return f"{limit >> 20} MB" if limit >= 1 << 20 else f"{limit >> 10} KB"


def shorten(value: Any, width: int = 60) -> str:
    """``repr(value)``, cut to ``width`` characters for an error message."""
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


# --- strict YAML ---------------------------------------------------------------------------

class YamlError(LoadError):
    """Not a document netagent accepts; the message says where and why."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader without aliases, duplicate keys or YAML 1.1 implicit types."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.constructor.ConstructorError(
                None, None, f"aliases (*{event.anchor}) are not allowed", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise yaml.constructor.ConstructorError(
                    None, None, "merge keys (<<) are not allowed", key_node.start_mark)
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be a scalar", key_node.start_mark
                ) from None
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {shorten(key)} (first at line "
                    f"{seen[key].line + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


# The YAML 1.2 core schema (yaml.org/spec/1.2.2 10.3.2), replacing the YAML 1.1 resolvers
# for booleans, integers and floats; null keeps PyYAML's (the same set of spellings).
_CORE = {
    "tag:yaml.org,2002:bool": (re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                               list("tTfF")),
    "tag:yaml.org,2002:int": (re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
                              list("-+0123456789")),
    "tag:yaml.org,2002:float": (re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), list("-+.0123456789")),
}
_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _CORE]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _tag, (_regexp, _first) in _CORE.items():
    _StrictLoader.add_implicit_resolver(_tag, _regexp, _first)


def _construct_int(loader: _StrictLoader, node: Any) -> int:
    text = loader.construct_scalar(node)
    if len(text) > 40:  # far beyond any setting; int() of 10^6 digits is slow
        raise yaml.constructor.ConstructorError(None, None, "integer too long",
                                                node.start_mark)
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text)


def _construct_float(loader: _StrictLoader, node: Any) -> float:
    text = str(loader.construct_scalar(node)).lower()
    if text.endswith("nan"):
        return float("nan")
    if text.endswith("inf"):
        return float("-inf") if text.startswith("-") else float("inf")
    return float(text)


def _construct_bool(loader: _StrictLoader, node: Any) -> bool:
    return str(loader.construct_scalar(node)).lower() == "true"


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_StrictLoader.add_constructor("tag:yaml.org,2002:float", _construct_float)
_StrictLoader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)


def load_yaml(text: str, *, where: str) -> Any:
    """One YAML (or JSON) document, strictly; ``YamlError`` names ``where`` and the line."""
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as err:
        raise YamlError(f"{where}: not valid YAML: {_yaml_reason(err)}") from err
    except RecursionError as err:
        raise YamlError(f"{where}: not valid YAML: nested too deeply") from err


def _yaml_reason(err: yaml.YAMLError) -> str:
    if isinstance(err, yaml.MarkedYAMLError):
        problem = err.problem or err.context or "error"
        mark = err.problem_mark or err.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        return f"{problem}{where}"
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
