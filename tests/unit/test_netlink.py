"""The hand-written rtnetlink decoder, checked against pyroute2 and `ip -s neigh` on the same
real captures (tests/fixtures/netlink, recorded by scripts/record-fixtures)."""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path

import pytest
from pyroute2.netlink.rtnl.ndmsg import ndmsg

from netagent.errors import NetagentError
from netagent.parse.neighbours import RECENT_TICKS
from netagent.parse.netlink import (
    NLM_F_DUMP_INTR,
    NeighbourTally,
    NetlinkError,
    chunk_status,
    decode_links,
    neighbour_dump_request,
    tally_neighbours,
)


def split_messages(data: bytes) -> list[bytes]:
    out, offset = [], 0
    while offset < len(data):
        (length,) = struct.unpack_from("=I", data, offset)
        out.append(data[offset:offset + length])
        offset += (length + 3) & ~3
    return out


def tally(data: bytes) -> NeighbourTally:
    out: NeighbourTally = Counter()
    status = tally_neighbours(data, out, recent_ticks=RECENT_TICKS)
    assert status.done == (struct.unpack_from("=H", split_messages(data)[-1], 4)[0] == 3)
    return out


def pyroute2_tally(data: bytes) -> NeighbourTally:
    """The same tally from pyroute2's full decoding of each message."""
    out: NeighbourTally = Counter()
    for raw in split_messages(data):
        if struct.unpack_from("=H", raw, 4)[0] != 28:  # RTM_NEWNEIGH
            continue
        msg = ndmsg(raw)
        msg.decode()
        cache = msg.get_attr("NDA_CACHEINFO")
        out[(msg["ifindex"], msg["state"], msg["flags"], msg.get_attr("NDA_FLAGS_EXT") or 0,
             cache["ndm_refcnt"] > 0, cache["ndm_updated"] <= RECENT_TICKS)] += 1
    return out


# The IPv4 capture mixes layouts (entries without a link-layer address are shorter), so it is
# read message by message; the IPv6 one is a run of one layout, read column by column.
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_decoder_agrees_with_pyroute2(fixtures: Path, family: str) -> None:
    data = (fixtures / "netlink" / f"neigh-{family}.bin").read_bytes()
    ours = tally(data)
    assert sum(ours.values()) > 0
    assert ours == pyroute2_tally(data)


def with_cacheinfo(message: bytes, *, refcnt: int, updated: int) -> bytes:
    """A copy of a common-layout message with other ``ndm_refcnt`` and ``ndm_updated``."""
    out = bytearray(message)
    struct.pack_into("=II", out, len(out) - 8, updated, refcnt)
    return bytes(out)


def test_column_and_message_paths_agree(fixtures: Path) -> None:
    messages = split_messages((fixtures / "netlink" / "neigh-ipv4.bin").read_bytes())
    common = [m for m in messages if len(m) == 76]
    short = next(m for m in messages if len(m) == 64)  # no NDA_LLADDR: another layout
    done = messages[-1]
    # Ages on both sides of forced GC's 5 s, referenced and not: 400 messages in one chunk.
    run = [with_cacheinfo(common[i % len(common)], refcnt=i % 3,
                          updated=RECENT_TICKS - 2 + i % 5) for i in range(400)]
    by_columns = tally(b"".join(run) + done)
    assert by_columns == pyroute2_tally(b"".join(run))
    assert {key[4] for key in by_columns} == {True, False}  # both sides of each rule
    assert {key[5] for key in by_columns} == {True, False}
    # One message of another layout first: the whole chunk is read message by message.
    by_messages = tally(short + b"".join(run) + done)
    assert by_messages - by_columns == pyroute2_tally(short)
    assert sum(by_messages.values()) == 401


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
    keys = (tally((fixtures / "netlink" / "neigh-ipv4.bin").read_bytes())
            + tally((fixtures / "netlink" / "neigh-ipv6.bin").read_bytes()))
    from netagent.parse.neighbours import state_name

    states: Counter[str] = Counter()
    for key, n in keys.items():
        states[state_name(key[1])] += n
    assert states == Counter(str(r["state"]) for r in rows)
    assert sum(n for k, n in keys.items() if k[4]) == sum(1 for r in rows if r["ref"])
    assert (sum(n for k, n in keys.items() if k[2] & 0x10)
            == sum(1 for r in rows if r["extern_learn"]))


def test_links_are_named(fixtures: Path) -> None:
    links = decode_links((fixtures / "netlink" / "links.bin").read_bytes())
    names = {link.name: link for link in links}
    assert {"lo", "vpod0"} <= set(names)
    assert names["vpod0"].kind == "veth"
    assert names["lo"].ifindex == 1


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_last_chunk_ends_the_dump(fixtures: Path, family: str) -> None:
    data = (fixtures / "netlink" / f"neigh-{family}.bin").read_bytes()
    first = split_messages(data)[0]
    status = chunk_status(data)
    assert status.done and not status.interrupted
    assert not chunk_status(first).done
    status = tally_neighbours(data, Counter(), recent_ticks=RECENT_TICKS)
    assert status.done and not status.interrupted
    assert not tally_neighbours(first, Counter(), recent_ticks=RECENT_TICKS).done


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_interrupted_dump_is_flagged(fixtures: Path, family: str) -> None:
    data = bytearray((fixtures / "netlink" / f"neigh-{family}.bin").read_bytes())
    second = len(split_messages(bytes(data))[0])  # the flag on a message inside the chunk
    (flags,) = struct.unpack_from("=H", data, second + 6)
    struct.pack_into("=H", data, second + 6, flags | NLM_F_DUMP_INTR)
    assert chunk_status(bytes(data)).interrupted
    counted: NeighbourTally = Counter()
    assert tally_neighbours(bytes(data), counted, recent_ticks=RECENT_TICKS).interrupted
    assert counted == tally((fixtures / "netlink" / f"neigh-{family}.bin").read_bytes())


def test_kernel_error_is_raised_with_errno() -> None:
    request = neighbour_dump_request("ipv4", seq=1)
    error = struct.pack("=IHHII", 16 + 4 + len(request), 2, 0, 1, 0) + struct.pack("=i", -1)
    error += request
    with pytest.raises(NetlinkError, match="Operation not permitted") as info:
        chunk_status(error)
    assert info.value.errno == 1
    with pytest.raises(NetlinkError):
        tally_neighbours(error, Counter(), recent_ticks=RECENT_TICKS)


def test_truncated_message_is_an_error(fixtures: Path) -> None:
    data = (fixtures / "netlink" / "neigh-ipv4.bin").read_bytes()
    first = split_messages(data)[0]
    with pytest.raises(NetagentError, match="truncated"):
        tally_neighbours(first[:-8], Counter(), recent_ticks=RECENT_TICKS)
