#!/usr/bin/env python3
"""The cable between a lab home and its router, with loss, delay and jitter on demand.

The kernels this project is tested on are built without sch_netem (CONFIG_NET_SCH_NETEM is
not set: `tc qdisc add ... netem` answers "Specified qdisc kind is unknown"), so the lab's
access links are this program: two TAP devices, one in each namespace, and a loop that
carries Ethernet frames between them. Rate caps stay in the kernel (`tc tbf` on the TAP
devices); loss, delay and jitter are applied here.

Jitter never reorders packets: each frame leaves at max(its own due time, the previous
frame's), as on a real link whose delay varies (netem's jitter reorders, which no access
link does).

    linkem.py NS_A IF_A NS_B IF_B

NS_* are names under /run/netns. Prints "ready" once both devices exist. Reads one JSON
object per line on stdin to change the impairment of both directions:
    {"delay_ms": 75, "jitter_ms": 15, "loss_pct": 3, "seed": 1}
Exits when stdin closes (its devices disappear with it).
"""

import collections
import ctypes
import fcntl
import json
import os
import random
import select
import struct
import sys
import time

CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
MAX_QUEUE = 2000  # frames per direction; beyond it the link drops, as a full queue does

libc = ctypes.CDLL(None, use_errno=True)


def setns(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


def open_tap(netns, name):
    """A TAP device called `name` inside network namespace `netns`."""
    setns(f"/run/netns/{netns}")
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


class Direction:
    """One way of the cable: frames read from `src` wait in a FIFO until due, then go to `dst`."""

    def __init__(self, src, dst):
        self.src, self.dst = src, dst
        self.queue = collections.deque()
        self.last_due = 0.0
        self.delay = self.jitter = self.loss = 0.0
        self.rng = random.Random(0)

    def configure(self, delay_ms, jitter_ms, loss_pct, rng):
        self.delay, self.jitter, self.loss = delay_ms / 1000, jitter_ms / 1000, loss_pct / 100
        self.rng = rng

    def receive(self, now):
        while True:
            try:
                frame = os.read(self.src, 65536)
            except BlockingIOError:
                return
            if self.loss and self.rng.random() < self.loss:
                continue
            if not self.delay and not self.jitter and not self.queue:
                self.send(frame)
                continue
            if len(self.queue) >= MAX_QUEUE:
                continue
            due = now + max(0.0, self.rng.gauss(self.delay, self.jitter) if self.jitter else self.delay)
            due = max(due, self.last_due)
            self.last_due = due
            self.queue.append((due, frame))

    def flush(self, now):
        while self.queue and self.queue[0][0] <= now:
            self.send(self.queue.popleft()[1])

    def send(self, frame):
        try:
            os.write(self.dst, frame)
        except (BlockingIOError, OSError):
            pass  # the other side's queue is full or it is down: the frame is lost

    def next_due(self):
        return self.queue[0][0] if self.queue else None


def main(ns_a, if_a, ns_b, if_b):
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    fa = open_tap(ns_a, if_a)
    fb = open_tap(ns_b, if_b)
    libc.setns(own, CLONE_NEWNET)
    ways = [Direction(fa, fb), Direction(fb, fa)]
    by_fd = {fa: ways[0], fb: ways[1]}
    stdin = sys.stdin.fileno()
    os.set_blocking(stdin, False)
    pending = b""
    print("ready", flush=True)
    while True:
        now = time.monotonic()
        dues = [d for d in (w.next_due() for w in ways) if d is not None]
        timeout = max(0.0, min(dues) - now) if dues else 1.0
        readable, _, _ = select.select([fa, fb, stdin], [], [], timeout)
        now = time.monotonic()
        for fd in readable:
            if fd == stdin:
                chunk = os.read(stdin, 4096)
                if not chunk:
                    return
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    if line.strip():
                        config = json.loads(line)
                        seed = config.get("seed", 1)
                        for i, way in enumerate(ways):
                            way.configure(config.get("delay_ms", 0), config.get("jitter_ms", 0), config.get("loss_pct", 0), random.Random(seed * 2 + i))
                        print("configured", flush=True)
            else:
                by_fd[fd].receive(now)
        for way in ways:
            way.flush(now)


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
