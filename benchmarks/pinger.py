"""ICMP echo every INTERVAL seconds to TARGET for at most DURATION seconds, as a script.

Run inside a container's network namespace (`nsenter --net=/proc/PID/ns/net python pinger.py
TARGET INTERVAL DURATION`); prints `S <seq> <unix time>` per request sent and `R <seq> <unix
time>` per reply, flushed, so the caller sees the first reply after an outage to the
millisecond. Standard library only (the host has no ping binary). TARGET must be an address in
a namespace the caller created.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import sys
import time


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _echo(ident: int, seq: int) -> bytes:
    payload = b"ovsbench" * 4
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    csum = _checksum(header + payload)
    return struct.pack("!BBHHH", 8, 0, csum, ident, seq) + payload


def main(argv: list[str]) -> int:
    target, interval, duration = argv[1], float(argv[2]), float(argv[3])
    ident = os.getpid() & 0xFFFF
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    end = time.monotonic() + duration
    next_send = time.monotonic()
    seq = 0
    out = sys.stdout
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= next_send:
            seq = (seq + 1) & 0xFFFF
            try:
                sock.sendto(_echo(ident, seq), (target, 0))
                out.write(f"S {seq} {time.time():.6f}\n")
            except OSError as e:  # e.g. no route or no ARP answer yet: keep trying
                out.write(f"E {seq} {time.time():.6f} {e.errno}\n")
            out.flush()
            next_send += interval
            if next_send < now:
                next_send = now + interval
        ready, _, _ = select.select([sock], [], [], max(0.0, next_send - time.monotonic()))
        if not ready:
            continue
        packet, addr = sock.recvfrom(2048)
        ihl = (packet[0] & 0x0F) * 4
        kind, _, _, rid, rseq = struct.unpack("!BBHHH", packet[ihl : ihl + 8])
        if kind == 0 and rid == ident and addr[0] == target:
            out.write(f"R {rseq} {time.time():.6f}\n")
            out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
