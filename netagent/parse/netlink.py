"""rtnetlink messages decoded by hand, for the few fields netagent needs.

pyroute2 decodes every attribute of every message into nested Python objects; on a table of
50,000 neighbours that costs seconds and hundreds of megabytes (docs/design.md §2.1). A neighbour
dump needs five fixed header fields and two attributes, so this module reads the raw bytes
with ``struct`` and strided ``memoryview`` columns and only tallies the entries (no record
per entry). Layouts are from
``include/uapi/linux/{netlink,rtnetlink,neighbour,if_link}.h``.
"""

from __future__ import annotations

import os
import struct
from collections import Counter
from collections.abc import Iterator
from typing import Any, NamedTuple

from netagent.errors import ParseError

# include/uapi/linux/netlink.h
NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x01
NLM_F_MULTI = 0x02
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300

# include/uapi/linux/rtnetlink.h
RTM_NEWLINK = 16
RTM_GETLINK = 18
RTM_NEWNEIGH = 28
RTM_GETNEIGH = 30

# include/uapi/linux/neighbour.h
NDA_CACHEINFO = 3
NDA_FLAGS_EXT = 15

NUD_STATES = {
    0x01: "incomplete",
    0x02: "reachable",
    0x04: "stale",
    0x08: "delay",
    0x10: "probe",
    0x20: "failed",
    0x40: "noarp",
    0x80: "permanent",
    0x00: "none",
}
NUD_FAILED = 0x20
NUD_NOARP = 0x40
NUD_PERMANENT = 0x80

NTF_USE = 0x01
NTF_SELF = 0x02
NTF_MASTER = 0x04
NTF_PROXY = 0x08
NTF_EXT_LEARNED = 0x10
NTF_OFFLOADED = 0x20
NTF_STICKY = 0x40
NTF_ROUTER = 0x80
NTF_FLAGS = {
    NTF_EXT_LEARNED: "extern_learn",
    NTF_OFFLOADED: "offloaded",
    NTF_ROUTER: "router",
}
# NDA_FLAGS_EXT bits
NTF_EXT_MANAGED = 1 << 0
NTF_EXT_LOCKED = 1 << 1
NTF_EXT_EXT_VALIDATED = 1 << 2  # Linux 6.17: exempt from GC like NTF_EXT_LEARNED
NTF_EXT_FLAGS = {
    NTF_EXT_MANAGED: "managed",
    NTF_EXT_LOCKED: "locked",
    NTF_EXT_EXT_VALIDATED: "extern_valid",
}

# include/uapi/linux/if_link.h
IFLA_IFNAME = 3
IFLA_LINKINFO = 18
IFLA_INFO_KIND = 1

FAMILY_NUMBERS = {"ipv4": 2, "ipv6": 10, "bridge": 7}

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_NDMSG = struct.Struct("=BBHiHBB")  # family, pad1, pad2, ifindex, state, flags, type
_IFINFOMSG = struct.Struct("=BBHiII")  # family, pad, type, index, flags, change
_RTATTR = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_I32 = struct.Struct("=i")
_CACHEINFO = struct.Struct("=IIII")  # confirmed, used, updated, refcnt

# The layout neigh_fill_info() produces for nearly every entry: NDA_DST, NDA_LLADDR (6-byte
# MAC, padded to 12), NDA_PROBES, NDA_CACHEINFO, and nothing after it.
_NDA_PROBES = 4
_PROBES_HEADER = 8 | _NDA_PROBES << 16  # rta_len | rta_type, read as one native u32
_CACHEINFO_HEADER = 20 | NDA_CACHEINFO << 16


class _Layout(NamedTuple):
    """Where the fields sit in a message of the common layout, in 32-bit words."""

    words: int  # message length / 4
    probes_header: int
    cacheinfo_header: int  # ndm_updated is 3 words after it, ndm_refcnt 4


# message length -> layout. Word 5 is ndm_ifindex, word 6 ndm_state | ndm_flags << 16.
_COMMON_LAYOUTS = {
    76: _Layout(19, 12, 14),  # IPv4: NDA_DST is 8 bytes
    88: _Layout(22, 15, 17),  # IPv6: NDA_DST is 20 bytes
}
# Per message of a common layout, one unpack from the message start: ifindex, state, flags,
# the two attribute headers and the cache info.
_COMMON_UNPACK = {
    76: struct.Struct("=20xiHBx20xI4xIIIII").unpack_from,
    88: struct.Struct("=20xiHBx32xI4xIIIII").unpack_from,
}

# (ifindex, state, flags, flags_ext, referenced, recently updated): see NeighbourKey
NeighbourTally = Counter[tuple[int, int, int, int, bool | None, bool | None]]


class Link(NamedTuple):
    ifindex: int
    name: str
    kind: str  # IFLA_INFO_KIND ("veth", "vxlan", ...), "" when the kernel gives none


class DumpChunk(NamedTuple):
    """What one ``recv()`` of a dump held, besides the messages themselves."""

    done: bool
    interrupted: bool


class NetlinkError(ParseError):
    """The kernel answered a request with NLMSG_ERROR (a ParseError: what the decoder read
    is an error, not the records asked for; sources turn it into a SourceError)."""

    def __init__(self, errno: int) -> None:
        super().__init__(f"netlink error {errno} ({os.strerror(errno)})")
        self.errno = errno


def dump_request(msg_type: int, header: bytes, *, seq: int) -> bytes:
    """An ``NLM_F_REQUEST | NLM_F_DUMP`` message with the given fixed header."""
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(header), msg_type,
                          NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + header


def neighbour_dump_request(family: str, *, seq: int) -> bytes:
    return dump_request(RTM_GETNEIGH, _NDMSG.pack(FAMILY_NUMBERS[family], 0, 0, 0, 0, 0, 0),
                        seq=seq)


def link_dump_request(*, seq: int) -> bytes:
    return dump_request(RTM_GETLINK, _IFINFOMSG.pack(0, 0, 0, 0, 0, 0), seq=seq)


def iter_messages(buf: bytes) -> Iterator[tuple[int, int, int, int]]:
    """Yield ``(type, flags, payload_offset, end)`` for each message in ``buf``.

    NLMSG_ERROR with a non-zero error raises; NOOP is skipped.
    """
    offset, size = 0, len(buf)
    while offset + _NLMSGHDR.size <= size:
        length, msg_type, flags, _seq, _pid = _NLMSGHDR.unpack_from(buf, offset)
        if length < _NLMSGHDR.size or offset + length > size:
            raise ParseError(f"truncated netlink message at byte {offset}")
        if msg_type == NLMSG_ERROR:
            _raise_on_error(buf, offset)
        elif msg_type != NLMSG_NOOP:
            yield msg_type, flags, offset + _NLMSGHDR.size, offset + length
        offset += (length + 3) & ~3


def chunk_status(buf: bytes) -> DumpChunk:
    """Whether a received chunk ends the dump, and whether the kernel flagged it inconsistent.

    A tight walk over the message headers only: it runs once per chunk of every dump.
    """
    done = interrupted = False
    unpack = _NLMSGHDR.unpack_from
    offset, size = 0, len(buf)
    while offset + 16 <= size:
        length, msg_type, flags, _seq, _pid = unpack(buf, offset)
        if length < 16:
            raise ParseError(f"malformed netlink message at byte {offset}")
        if flags & NLM_F_DUMP_INTR:
            interrupted = True
        if _ends_dump(buf, offset, msg_type):
            done = True
        offset += (length + 3) & ~3
    return DumpChunk(done=done, interrupted=interrupted)


def tally_neighbours(buf: bytes, tally: NeighbourTally, *, recent_ticks: int) -> DumpChunk:
    """Add the RTM_NEWNEIGH messages of one received chunk to ``tally``, by NeighbourKey.

    ``recent_ticks``: an entry whose ``ndm_updated`` is at most this is "recently updated".
    Returns whether the chunk ends the dump and whether the kernel flagged it interrupted;
    NLMSG_ERROR with an error raises ``NetlinkError``.

    This is the hot loop of a neighbour dump. A chunk of a full table is a run of a few
    hundred messages of one common layout: those are checked and counted column by column,
    through strided views of the chunk (``memoryview`` slices with a step), so the loop over
    entries runs inside ``Counter``, not in Python bytecode. Any other chunk, and what
    follows the run (the NLMSG_DONE), is walked message by message.
    """
    interrupted = False
    offset = 0
    length = _u32(buf, 0) if len(buf) >= 4 else 0
    layout = _COMMON_LAYOUTS.get(length)
    if layout is not None:
        run = len(buf) // length
        w = memoryview(buf)[:run * length].cast("I")
        step = layout.words
        headers = set(w[1::step])  # nlmsg_type | nlmsg_flags << 16
        if (set(w[0::step]) == {length}
                and {h & 0xFFFF for h in headers} == {RTM_NEWNEIGH}
                and set(w[layout.probes_header::step]) == {_PROBES_HEADER}
                and set(w[layout.cacheinfo_header::step]) == {_CACHEINFO_HEADER}):
            interrupted = any(h >> 16 & NLM_F_DUMP_INTR for h in headers)
            updated = layout.cacheinfo_header + 3
            columns: Counter[tuple[int, int, bool, bool]] = Counter(zip(
                w[5::step],  # ndm_ifindex
                w[6::step],  # ndm_state | ndm_flags << 16 | ndm_type << 24
                map(bool, w[updated + 1::step]),  # ndm_refcnt > 0
                map(recent_ticks.__ge__, w[updated::step]),  # ndm_updated <= recent_ticks
                strict=True,
            ))
            for (ifindex, word, referenced, recent), n in columns.items():
                tally[(ifindex, word & 0xFFFF, word >> 16 & 0xFF, 0, referenced, recent)] += n
            offset = run * length
    done, rest_interrupted = _tally_messages(buf, offset, tally, recent_ticks)
    return DumpChunk(done=done, interrupted=interrupted or rest_interrupted)


def _tally_messages(buf: bytes, offset: int, tally: NeighbourTally,
                    recent_ticks: int) -> tuple[bool, bool]:
    """``tally_neighbours`` one message at a time, from ``offset``: (done, interrupted)."""
    done = interrupted = False
    hdr_unpack = _NLMSGHDR.unpack_from
    nd_unpack = _NDMSG.unpack_from
    rta_unpack = _RTATTR.unpack_from
    ci_unpack = _CACHEINFO.unpack_from
    hdr_size = _NLMSGHDR.size
    nd_size = _NDMSG.size
    size = len(buf)
    while offset + hdr_size <= size:
        length, msg_type, msg_flags, _seq, _pid = hdr_unpack(buf, offset)
        if length < hdr_size or offset + length > size:
            raise ParseError(f"truncated netlink message at byte {offset}")
        if msg_flags & NLM_F_DUMP_INTR:
            interrupted = True
        if msg_type == RTM_NEWNEIGH:
            common = _COMMON_UNPACK.get(length)
            if common is not None:
                (ifindex, state, flags, probes_header, cacheinfo_header, _conf, _used, updated,
                 refcnt) = common(buf, offset)
                if (probes_header == _PROBES_HEADER
                        and cacheinfo_header == _CACHEINFO_HEADER):
                    tally[(ifindex, state, flags, 0, refcnt > 0, updated <= recent_ticks)] += 1
                    offset += (length + 3) & ~3
                    continue
            if length < hdr_size + nd_size:
                raise ParseError(f"truncated neighbour message at byte {offset}")
            _fam, _p1, _p2, ifindex, state, flags, _type = nd_unpack(buf, offset + hdr_size)
            referenced = recent = None
            flags_ext = 0
            end = offset + length
            attr = offset + hdr_size + nd_size
            while attr + 4 <= end:
                alen, atype = rta_unpack(buf, attr)
                if alen < 4 or attr + alen > end:
                    break
                atype &= 0x3FFF
                if atype == NDA_CACHEINFO and alen >= 20:
                    _conf, _used, updated, refcnt = ci_unpack(buf, attr + 4)
                    referenced, recent = refcnt > 0, updated <= recent_ticks
                elif atype == NDA_FLAGS_EXT and alen >= 8:
                    flags_ext = _u32(buf, attr + 4)
                attr += (alen + 3) & ~3
            tally[(ifindex, state, flags, flags_ext, referenced, recent)] += 1
        elif _ends_dump(buf, offset, msg_type):
            done = True
        offset += (length + 3) & ~3
    return done, interrupted


def _ends_dump(buf: bytes, offset: int, msg_type: int) -> bool:
    """Whether the message at ``offset`` ends the dump: NLMSG_DONE, or an NLMSG_ERROR
    acknowledgement. An NLMSG_ERROR carrying an error raises ``NetlinkError``."""
    if msg_type == NLMSG_ERROR:
        _raise_on_error(buf, offset)
        return True
    return msg_type == NLMSG_DONE


def _raise_on_error(buf: bytes, offset: int) -> None:
    """The NLMSG_ERROR message at ``offset``: an error raises, an acknowledgement (0) returns."""
    if _u32(buf, offset) < _NLMSGHDR.size + 4 or offset + _NLMSGHDR.size + 4 > len(buf):
        raise ParseError(f"truncated netlink error message at byte {offset}")
    (error,) = _I32.unpack_from(buf, offset + _NLMSGHDR.size)
    if error:
        raise NetlinkError(-error)


def _u32(buf: bytes, offset: int) -> int:
    value: int = _U32.unpack_from(buf, offset)[0]
    return value


def decode_links(buf: bytes) -> list[Link]:
    """Interface index, name and kind from RTM_NEWLINK messages."""
    out: list[Link] = []
    for msg_type, _flags, start, end in iter_messages(buf):
        if msg_type != RTM_NEWLINK:
            continue
        _fam, _pad, _type, index, _flags2, _change = unpack_header(_IFINFOMSG, buf, start, end)
        name, kind = "", ""
        for atype, astart, aend in iter_attrs(buf, start + _IFINFOMSG.size, end):
            if atype == IFLA_IFNAME:
                name = cstring(buf, astart, aend)
            elif atype == IFLA_LINKINFO:
                for itype, istart, iend in iter_attrs(buf, astart, aend):
                    if itype == IFLA_INFO_KIND:
                        kind = cstring(buf, istart, iend)
        out.append(Link(index, name, kind))
    return out


def unpack_header(layout: struct.Struct, buf: bytes, start: int, end: int) -> tuple[Any, ...]:
    """The fixed header of a message payload; a payload too short for it is an error."""
    if end - start < layout.size:
        raise ParseError(f"netlink message too short for its header at byte {start}")
    return layout.unpack_from(buf, start)


def attr_u32(buf: bytes, start: int, end: int) -> int | None:
    """A u32 attribute payload, or None when the payload is shorter than 4 bytes."""
    return _u32(buf, start) if end - start >= 4 else None


def iter_attrs(buf: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """``(type, payload start, payload end)`` of each rtattr between ``start`` and ``end``."""
    offset = start
    while offset + 4 <= end:
        length, atype = _RTATTR.unpack_from(buf, offset)
        if length < 4 or offset + length > end:
            return
        yield atype & 0x3FFF, offset + 4, offset + length
        offset += (length + 3) & ~3


def cstring(buf: bytes, start: int, end: int) -> str:
    """A NUL-terminated string attribute."""
    return bytes(buf[start:end]).split(b"\0", 1)[0].decode("utf-8", "replace")
