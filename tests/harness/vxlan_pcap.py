#!/usr/bin/env python3
"""Decodes the VXLAN packets of a pcap file (Ethernet link type, as tcpdump -w writes it on a
bridge port) into one JSON object per packet on stdout:

  {"outer_src": "172.30.0.11", "outer_dst": "172.30.0.12", "udp_dport": 4789, "vni": 4242,
   "inner_src": "10.244.1.2", "inner_dst": "10.244.2.2", "inner_proto": 6, "len": 98}

Only what the harness tests need: outer IPv4 or IPv6 + UDP, the 8-byte VXLAN header (RFC 7348:
flags with the I bit, 24-bit VNI), the inner Ethernet frame and its IPv4/IPv6 header (inner
fields are null for inner ARP/ND-less frames). Non-VXLAN packets are skipped.

  vxlan_pcap.py FILE [--port 4789]
"""

import argparse
import ipaddress
import json
import struct
import sys


def read_pcap(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise SystemExit("%s: not a pcap file (magic %s)" % (path, magic.hex()))
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    if linktype != 1:
        raise SystemExit("%s: link type %d, expected Ethernet (1)" % (path, linktype))
    off = 24
    while off + 16 <= len(data):
        incl = struct.unpack(endian + "I", data[off + 8:off + 12])[0]
        yield data[off + 16:off + 16 + incl]
        off += 16 + incl


def ether_payload(frame):
    """(ethertype, payload) skipping 802.1Q tags."""
    if len(frame) < 14:
        return None, b""
    etype = struct.unpack("!H", frame[12:14])[0]
    off = 14
    while etype == 0x8100 and len(frame) >= off + 4:
        etype = struct.unpack("!H", frame[off + 2:off + 4])[0]
        off += 4
    return etype, frame[off:]


def ip_header(etype, p):
    """(src, dst, l4 proto, l4 payload) of an IPv4/IPv6 packet, or None."""
    if etype == 0x0800 and len(p) >= 20:
        ihl = (p[0] & 0x0F) * 4
        return (str(ipaddress.IPv4Address(p[12:16])), str(ipaddress.IPv4Address(p[16:20])), p[9], p[ihl:])
    if etype == 0x86DD and len(p) >= 40:
        return (str(ipaddress.IPv6Address(p[8:24])), str(ipaddress.IPv6Address(p[24:40])), p[6], p[40:])
    return None


def decode(frame, port):
    etype, p = ether_payload(frame)
    outer = ip_header(etype, p)
    if not outer or outer[2] != 17 or len(outer[3]) < 16:
        return None
    udp = outer[3]
    dport = struct.unpack("!H", udp[2:4])[0]
    if port is not None and dport != port:
        return None
    vx = udp[8:16]
    flags, vni = vx[0], int.from_bytes(vx[4:7], "big")
    inner_etype, inner = ether_payload(udp[16:])
    ih = ip_header(inner_etype, inner)
    return {"outer_src": outer[0], "outer_dst": outer[1], "udp_dport": dport, "vxlan_flags": flags,
            "vni": vni, "inner_src_mac": udp[16 + 6:16 + 12].hex(":"), "inner_dst_mac": udp[16:16 + 6].hex(":"),
            "inner_ethertype": inner_etype, "inner_src": ih[0] if ih else None,
            "inner_dst": ih[1] if ih else None, "inner_proto": ih[2] if ih else None, "len": len(frame)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pcap")
    parser.add_argument("--port", type=int, help="only this UDP destination port")
    args = parser.parse_args()
    for frame in read_pcap(args.pcap):
        d = decode(frame, args.port)
        if d:
            print(json.dumps(d))
    return 0


if __name__ == "__main__":
    sys.exit(main())
