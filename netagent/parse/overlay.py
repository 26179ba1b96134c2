"""rtnetlink messages of an overlay device, decoded by hand: links, FDB, neighbours, routes.

An overlay's tables hold one entry per remote node (about a thousand in a large cluster),
but the dumps they come from do not: the AF_BRIDGE FDB dump covers every bridge of the
namespace and the IPv4 neighbour and route dumps every interface. So, like
``parse.netlink``, this walks the raw bytes with ``struct``, drops other interfaces' entries
after reading the fixed header, and builds one small tuple per entry that is kept. Layouts are
from ``include/uapi/linux/{rtnetlink,neighbour,if_link}.h``.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator
from typing import NamedTuple

from netagent.model import FdbEntry, OverlayNeighbour, OverlayRoute
from netagent.parse.netlink import (
    FAMILY_NUMBERS,
    IFLA_IFNAME,
    IFLA_INFO_KIND,
    IFLA_LINKINFO,
    RTM_GETNEIGH,
    RTM_NEWLINK,
    RTM_NEWNEIGH,
    attr_u32,
    cstring,
    dump_request,
    iter_attrs,
    iter_messages,
    unpack_header,
)

# include/uapi/linux/rtnetlink.h
RTM_NEWROUTE = 24
RTM_GETROUTE = 26
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_TABLE = 15
RT_TABLE_MAIN = 254
RTN_UNICAST = 1
RTNH_F_ONLINK = 4

# include/uapi/linux/neighbour.h
NDA_DST = 1
NDA_LLADDR = 2
NDA_IFINDEX = 8

# include/uapi/linux/if_link.h
IFLA_ADDRESS = 1
IFLA_INFO_DATA = 2
IFLA_VXLAN_ID = 1
IFLA_VXLAN_LOCAL = 4
IFLA_VXLAN_LEARNING = 7
IFLA_VXLAN_PORT = 15
IFLA_VXLAN_LOCAL6 = 17
IFF_UP = 0x1

AF_INET = 2
AF_INET6 = 10

_NDMSG = struct.Struct("=BBHiHBB")  # family, pad1, pad2, ifindex, state, flags, type
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, proto, scope,
#                                       type, flags
_IFINFOMSG = struct.Struct("=BBHiII")  # family, pad, type, index, flags, change
_RTATTR = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_BE16 = struct.Struct("!H")


class LinkDetail(NamedTuple):
    """An interface with what a VXLAN check needs (``ip -d link show``)."""

    ifindex: int
    name: str
    kind: str
    mac: str | None
    up: bool
    vni: int | None = None
    local: str | None = None
    port: int | None = None
    learning: bool | None = None


def neighbour_dump_request(family: str, *, ifindex: int = 0, seq: int) -> bytes:
    """RTM_GETNEIGH for one family; with ``ifindex`` the kernel returns that device only.

    The kernel reads NDA_IFINDEX from a dump request as a filter (``neigh_valid_dump_req``
    in net/core/neighbour.c, what ``ip neigh show dev X`` sends). The AF_BRIDGE dump ignores
    it on some kernels, so decoders filter by index as well.
    """
    header = _NDMSG.pack(FAMILY_NUMBERS[family], 0, 0, 0, 0, 0, 0)
    if ifindex:
        header += _RTATTR.pack(8, NDA_IFINDEX) + _U32.pack(ifindex)
    return dump_request(RTM_GETNEIGH, header, seq=seq)


def route_dump_request(family: str = "ipv4", *, seq: int) -> bytes:
    """RTM_GETROUTE for every route of one family (``ip [-6] route show table all``)."""
    return dump_request(RTM_GETROUTE,
                        _RTMSG.pack(FAMILY_NUMBERS[family], 0, 0, 0, 0, 0, 0, 0, 0), seq=seq)


def decode_link_details(buf: bytes) -> list[LinkDetail]:
    """Every RTM_NEWLINK of a chunk, with the VXLAN settings when the kind is "vxlan"."""
    out: list[LinkDetail] = []
    for msg_type, _flags, start, end in iter_messages(buf):
        if msg_type != RTM_NEWLINK:
            continue
        _fam, _pad, _type, index, ifflags, _change = unpack_header(_IFINFOMSG, buf, start, end)
        name, kind, mac = "", "", None
        info: dict[int, tuple[int, int]] = {}
        for atype, astart, aend in iter_attrs(buf, start + _IFINFOMSG.size, end):
            if atype == IFLA_IFNAME:
                name = cstring(buf, astart, aend)
            elif atype == IFLA_ADDRESS:
                mac = format_mac(buf[astart:aend])
            elif atype == IFLA_LINKINFO:
                for itype, istart, iend in iter_attrs(buf, astart, aend):
                    if itype == IFLA_INFO_KIND:
                        kind = cstring(buf, istart, iend)
                    elif itype == IFLA_INFO_DATA:
                        info = {t: (s, e) for t, s, e in iter_attrs(buf, istart, iend)}
        detail = LinkDetail(index, name, kind, mac, bool(ifflags & IFF_UP))
        if kind == "vxlan":
            detail = _with_vxlan_info(detail, buf, info)
        out.append(detail)
    return out


def _with_vxlan_info(link: LinkDetail, buf: bytes, info: dict[int, tuple[int, int]]
                     ) -> LinkDetail:
    vni = port = None
    local = None
    learning = None
    if IFLA_VXLAN_ID in info:
        vni = attr_u32(buf, *info[IFLA_VXLAN_ID])
    for attr in (IFLA_VXLAN_LOCAL, IFLA_VXLAN_LOCAL6):
        if attr in info:
            start, end = info[attr]
            local = format_ip(buf[start:end])
    if IFLA_VXLAN_PORT in info and info[IFLA_VXLAN_PORT][1] - info[IFLA_VXLAN_PORT][0] >= 2:
        port = _BE16.unpack_from(buf, info[IFLA_VXLAN_PORT][0])[0]
    if IFLA_VXLAN_LEARNING in info and info[IFLA_VXLAN_LEARNING][1] > info[
            IFLA_VXLAN_LEARNING][0]:
        learning = bool(buf[info[IFLA_VXLAN_LEARNING][0]])
    return link._replace(vni=vni, local=local, port=port, learning=learning)


def decode_fdb(buf: bytes, *, ifindex: int) -> list[FdbEntry]:
    """AF_BRIDGE RTM_NEWNEIGH messages of device ``ifindex`` (``bridge fdb show dev X``)."""
    return [FdbEntry(mac or "", dst, state, flags)
            for _fam, state, flags, dst, mac in _neighbours(buf, ifindex)]


def decode_device_neighbours(buf: bytes, *, ifindex: int, family: str = "ipv4"
                             ) -> list[OverlayNeighbour]:
    """RTM_NEWNEIGH messages of device ``ifindex`` (``ip -4 neigh show dev X``)."""
    wanted = FAMILY_NUMBERS[family]
    return [OverlayNeighbour(dst, mac, state)
            for fam, state, _flags, dst, mac in _neighbours(buf, ifindex)
            if fam == wanted and dst is not None]


def _neighbours(buf: bytes, ifindex: int
                ) -> Iterator[tuple[int, int, int, str | None, str | None]]:
    for msg_type, _flags, start, end in iter_messages(buf):
        if msg_type != RTM_NEWNEIGH:
            continue
        fam, _p1, _p2, index, state, flags, _type = unpack_header(_NDMSG, buf, start, end)
        if index != ifindex:
            continue
        dst = mac = None
        for atype, astart, aend in iter_attrs(buf, start + _NDMSG.size, end):
            if atype == NDA_DST:
                dst = format_ip(buf[astart:aend])
            elif atype == NDA_LLADDR:
                mac = format_mac(buf[astart:aend])
        yield fam, state, flags, dst, mac


def decode_routes(buf: bytes, *, ifindex: int, family: str = "ipv4") -> list[OverlayRoute]:
    """Main-table unicast routes of one family whose output device is ``ifindex``.

    Multipath routes (RTA_MULTIPATH) are not followed: neither flannel nor Calico installs
    them on a VXLAN device.
    """
    out: list[OverlayRoute] = []
    wanted = FAMILY_NUMBERS[family]
    unspecified = "::" if family == "ipv6" else "0.0.0.0"
    for msg_type, _flags, start, end in iter_messages(buf):
        if msg_type != RTM_NEWROUTE:
            continue
        fam, dst_len, _sl, _tos, table, _proto, _scope, rtype, rflags = unpack_header(
            _RTMSG, buf, start, end)
        if fam != wanted or rtype != RTN_UNICAST:
            continue
        dst = gateway = oif = None
        for atype, astart, aend in iter_attrs(buf, start + _RTMSG.size, end):
            if atype == RTA_DST:
                dst = (astart, aend)
            elif atype == RTA_GATEWAY:
                gateway = (astart, aend)
            elif atype == RTA_OIF:
                oif = attr_u32(buf, astart, aend)
            elif atype == RTA_TABLE:
                table = attr_u32(buf, astart, aend) or table
        if oif != ifindex or table != RT_TABLE_MAIN:
            continue
        # addresses formatted only for the device's routes, not the whole table's
        prefix = format_ip(buf[dst[0]:dst[1]]) if dst else None
        via = format_ip(buf[gateway[0]:gateway[1]]) if gateway else None
        out.append(OverlayRoute(f"{prefix or unspecified}/{dst_len}", via,
                                bool(rflags & RTNH_F_ONLINK)))
    return out


def format_mac(raw: bytes) -> str:
    return bytes(raw).hex(":")


def format_ip(raw: bytes) -> str | None:
    if len(raw) == 4:
        return "%d.%d.%d.%d" % tuple(raw)  # noqa: UP031  # a third of ipaddress's cost
    if len(raw) == 16:
        return str(ipaddress.IPv6Address(bytes(raw)))
    return None
