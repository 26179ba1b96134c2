"""rtnetlink messages decoded by hand, for the few fields netagent needs.

pyroute2 decodes every attribute of every message into nested Python objects; on a table of
50,000 neighbours that costs seconds and hundreds of megabytes (DESIGN.md §2). A neighbour
dump needs five fixed header fields and two attributes, so this module walks the raw bytes
with ``struct`` and builds one small tuple per entry. Layouts are from
``include/uapi/linux/{netlink,rtnetlink,neighbour,if_link}.h``.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import NamedTuple

from netagent.errors import NetagentError
from netagent.model import NeighbourEntry

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
_CACHEINFO = struct.Struct("=IIII")  # confirmed, used, updated, refcnt

# The layout neigh_fill_info() produces for nearly every entry: NDA_DST, NDA_LLADDR (6-byte
# MAC, padded to 12), NDA_PROBES, NDA_CACHEINFO, and nothing after it. One unpack reads
# ifindex, state, flags, both attribute headers and the cache info; a message of another
# length, or whose headers do not match, takes the general attribute walk below.
# message length -> struct (skipping nlmsghdr, ndmsg family/pads, NDA_DST and NDA_LLADDR)
_COMMON_LAYOUTS = {
    76: struct.Struct("=20xiHBx20xHH4xHHIIII"),  # IPv4: NDA_DST 8 bytes
    88: struct.Struct("=20xiHBx32xHH4xHHIIII"),  # IPv6: NDA_DST 20 bytes
}
_NDA_PROBES = 4


class Link(NamedTuple):
    ifindex: int
    name: str
    kind: str  # IFLA_INFO_KIND ("veth", "vxlan", ...), "" when the kernel gives none


class DumpChunk(NamedTuple):
    """What one ``recv()`` of a dump held, besides the messages themselves."""

    done: bool
    interrupted: bool


class NetlinkError(NetagentError):
    """The kernel answered a request with NLMSG_ERROR."""

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
            raise NetagentError(f"truncated netlink message at byte {offset}")
        if msg_type == NLMSG_ERROR:
            (error,) = struct.unpack_from("=i", buf, offset + _NLMSGHDR.size)
            if error:
                raise NetlinkError(-error)
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
            raise NetagentError(f"malformed netlink message at byte {offset}")
        if flags & NLM_F_DUMP_INTR:
            interrupted = True
        if msg_type == NLMSG_DONE:
            done = True
        elif msg_type == NLMSG_ERROR:
            (error,) = struct.unpack_from("=i", buf, offset + 16)
            if error:
                raise NetlinkError(-error)
            done = True  # an acknowledgement ends the exchange
        offset += (length + 3) & ~3
    return DumpChunk(done=done, interrupted=interrupted)


def decode_neighbours(buf: bytes) -> list[NeighbourEntry]:
    """The RTM_NEWNEIGH messages of one received chunk, as ``NeighbourEntry`` tuples.

    This is the hot loop of a neighbour dump: one pass, no generator per message, and only
    NDA_CACHEINFO and NDA_FLAGS_EXT are looked at among the attributes.
    """
    out: list[NeighbourEntry] = []
    append = out.append
    hdr_unpack = _NLMSGHDR.unpack_from
    nd_unpack = _NDMSG.unpack_from
    rta_unpack = _RTATTR.unpack_from
    ci_unpack = _CACHEINFO.unpack_from
    u32_unpack = _U32.unpack_from
    hdr_size = _NLMSGHDR.size
    nd_size = _NDMSG.size
    common = {length: layout.unpack_from for length, layout in _COMMON_LAYOUTS.items()}
    offset, size = 0, len(buf)
    while offset + hdr_size <= size:
        length, msg_type, _flags, _seq, _pid = hdr_unpack(buf, offset)
        if length < hdr_size or offset + length > size:
            raise NetagentError(f"truncated netlink message at byte {offset}")
        end = offset + length
        fast = common.get(length) if msg_type == RTM_NEWNEIGH else None
        if fast is not None:
            (ifindex, state, flags, probes_len, probes_type, ci_len, ci_type, _conf, _used,
             updated, refcnt) = fast(buf, offset)
            if (probes_len == 8 and probes_type == _NDA_PROBES and ci_len == 20
                    and ci_type == NDA_CACHEINFO):
                append(NeighbourEntry(ifindex, state, flags, 0, refcnt, updated))
                offset += (length + 3) & ~3
                continue
        if msg_type == RTM_NEWNEIGH:
            _fam, _p1, _p2, ifindex, state, flags, _type = nd_unpack(buf, offset + hdr_size)
            refcnt = updated = None
            flags_ext = 0
            attr = offset + hdr_size + nd_size
            while attr + 4 <= end:
                alen, atype = rta_unpack(buf, attr)
                if alen < 4:
                    break
                atype &= 0x3FFF
                if atype == NDA_CACHEINFO and alen >= 20:
                    _conf, _used, updated, refcnt = ci_unpack(buf, attr + 4)
                elif atype == NDA_FLAGS_EXT and alen >= 8:
                    (flags_ext,) = u32_unpack(buf, attr + 4)
                attr += (alen + 3) & ~3
            append(NeighbourEntry(ifindex, state, flags, flags_ext, refcnt, updated))
        elif msg_type == NLMSG_ERROR:
            (error,) = struct.unpack_from("=i", buf, offset + hdr_size)
            if error:
                raise NetlinkError(-error)
        offset += (length + 3) & ~3
    return out


def decode_links(buf: bytes) -> list[Link]:
    """Interface index, name and kind from RTM_NEWLINK messages."""
    out: list[Link] = []
    for msg_type, _flags, start, end in iter_messages(buf):
        if msg_type != RTM_NEWLINK:
            continue
        _fam, _pad, _type, index, _flags2, _change = _IFINFOMSG.unpack_from(buf, start)
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
