"""The hand-written rtnetlink decoder, checked against pyroute2 and `ip -s neigh` on the same
real captures (tests/fixtures/netlink, recorded by scripts/record-fixtures)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from pyroute2.netlink.rtnl.ndmsg import ndmsg

from netagent.errors import NetagentError
from netagent.parse.netlink import (
    NLM_F_DUMP_INTR,
    NetlinkError,
    chunk_status,
    decode_links,
    decode_neighbours,
    neighbour_dump_request,
)


def split_messages(data: bytes) -> list[bytes]:
    out, offset = [], 0
    while offset < len(data):
        (length,) = struct.unpack_from("=I", data, offset)
        out.append(data[offset:offset + length])
        offset += (length + 3) & ~3
    return out


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_decoder_agrees_with_pyroute2(fixtures: Path, family: str) -> None:
    data = (fixtures / "netlink" / f"neigh-{family}.bin").read_bytes()
    ours = decode_neighbours(data)
    theirs = []
    for raw in split_messages(data):
        if struct.unpack_from("=H", raw, 4)[0] != 28:  # RTM_NEWNEIGH
            continue
        msg = ndmsg(raw)
        msg.decode()
        cache = msg.get_attr("NDA_CACHEINFO")
        theirs.append((msg["ifindex"], msg["state"], msg["flags"],
                       msg.get_attr("NDA_FLAGS_EXT") or 0,
                       cache["ndm_refcnt"], cache["ndm_updated"]))
    assert len(ours) == len(theirs) > 0
    assert [tuple(e) for e in ours] == theirs


def parse_ip_s_neigh(text: str) -> list[dict[str, object]]:
    """`ip -s neigh show nud all` lines: state, ref count, updated age, extern_learn."""
    rows = []
    for line in text.splitlines():
        words = line.split()
        used = words[words.index("used") + 1].split("/")[2].replace("probes", "")
        rows.append({
            "dst": words[0],
            "state": words[-1].lower(),
            "ref": int(words[words.index("ref") + 1]) if "ref" in words else 0,
            "updated_s": int(used),
            "extern_learn": "extern_learn" in words,
        })
    return rows


def test_decoder_agrees_with_ip_command(fixtures: Path) -> None:
    rows = parse_ip_s_neigh((fixtures / "netlink" / "neigh.ip-s-neigh.txt").read_text())
    entries = (decode_neighbours((fixtures / "netlink" / "neigh-ipv4.bin").read_bytes())
               + decode_neighbours((fixtures / "netlink" / "neigh-ipv6.bin").read_bytes()))
    from netagent.parse.neighbours import state_name

    assert sorted(state_name(e.state) for e in entries) == sorted(str(r["state"]) for r in rows)
    assert sum(1 for e in entries if e.refcnt) == sum(1 for r in rows if r["ref"])
    assert sum(1 for e in entries if e.flags & 0x10) == sum(1 for r in rows if r["extern_learn"])


def test_links_are_named(fixtures: Path) -> None:
    links = decode_links((fixtures / "netlink" / "links.bin").read_bytes())
    names = {link.name: link for link in links}
    assert {"lo", "vpod0"} <= set(names)
    assert names["vpod0"].kind == "veth"
    assert names["lo"].ifindex == 1


def test_last_chunk_ends_the_dump(fixtures: Path) -> None:
    data = (fixtures / "netlink" / "neigh-ipv4.bin").read_bytes()
    status = chunk_status(data)
    assert status.done and not status.interrupted
    first = split_messages(data)[0]
    assert not chunk_status(first).done


def test_interrupted_dump_is_flagged(fixtures: Path) -> None:
    data = bytearray((fixtures / "netlink" / "neigh-ipv4.bin").read_bytes())
    (flags,) = struct.unpack_from("=H", data, 6)
    struct.pack_into("=H", data, 6, flags | NLM_F_DUMP_INTR)
    assert chunk_status(bytes(data)).interrupted


def test_kernel_error_is_raised_with_errno() -> None:
    request = neighbour_dump_request("ipv4", seq=1)
    error = struct.pack("=IHHII", 16 + 4 + len(request), 2, 0, 1, 0) + struct.pack("=i", -1)
    error += request
    with pytest.raises(NetlinkError, match="Operation not permitted") as info:
        chunk_status(error)
    assert info.value.errno == 1
    with pytest.raises(NetlinkError):
        decode_neighbours(error)


def test_truncated_message_is_an_error(fixtures: Path) -> None:
    data = (fixtures / "netlink" / "neigh-ipv4.bin").read_bytes()
    first = split_messages(data)[0]
    with pytest.raises(NetagentError, match="truncated"):
        decode_neighbours(first[:-8])
