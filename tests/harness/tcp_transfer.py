#!/usr/bin/env python3
"""A TCP transfer whose arrival is confirmed by the receiver (iperf3 -n reports the server's
count at the end of the test, which may miss bytes still in flight, so it cannot say "all of
it arrived").

  tcp_transfer.py serve --port P [--ready FILE]   accept one connection, read until EOF, answer
                                                  with the byte count and SHA-256, exit
  tcp_transfer.py send --to IP --port P --bytes N send N pseudo-random bytes, half-close, print
                                                  {"sent", "received", "sha256_match", "seconds"}
                                                  and exit 0 only if all N arrived intact
"""

import argparse
import hashlib
import json
import os
import socket
import sys
import time


def serve(args):
    srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # IPv4 too, as mapped addresses
    srv.bind(("::", args.port))
    srv.listen(1)
    srv.settimeout(args.timeout)
    if args.ready:
        with open(args.ready, "w") as f:
            f.write("ready\n")
    conn, _ = srv.accept()
    conn.settimeout(args.timeout)
    digest, count = hashlib.sha256(), 0
    while True:
        data = conn.recv(1 << 16)
        if not data:
            break
        digest.update(data)
        count += len(data)
    conn.sendall(("%d %s\n" % (count, digest.hexdigest())).encode())
    conn.close()
    return 0


def send(args):
    payload = os.urandom(args.bytes)
    family = socket.AF_INET6 if ":" in args.to else socket.AF_INET
    start = time.monotonic()
    conn = socket.create_connection((args.to, args.port), timeout=args.timeout)
    conn.settimeout(args.timeout)
    conn.sendall(payload)
    conn.shutdown(socket.SHUT_WR)
    reply = b""
    while not reply.endswith(b"\n"):
        data = conn.recv(256)
        if not data:
            break
        reply += data
    conn.close()
    seconds = time.monotonic() - start
    parts = reply.decode(errors="replace").split()
    received = int(parts[0]) if parts and parts[0].isdigit() else -1
    match = len(parts) > 1 and parts[1] == hashlib.sha256(payload).hexdigest()
    print(json.dumps({"to": args.to, "family": 6 if family == socket.AF_INET6 else 4, "sent": args.bytes,
                      "received": received, "sha256_match": match, "seconds": round(seconds, 4)}))
    return 0 if received == args.bytes and match else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--ready", help="file written once listening")
    s.add_argument("--timeout", type=float, default=30)
    c = sub.add_parser("send")
    c.add_argument("--to", required=True)
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--bytes", type=int, default=2 << 20)
    c.add_argument("--timeout", type=float, default=30)
    args = parser.parse_args()
    return serve(args) if args.cmd == "serve" else send(args)


if __name__ == "__main__":
    sys.exit(main())
