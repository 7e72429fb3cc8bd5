"""T18 (c) and (d): a stranger speaking raw HTTP/2 to a real ckpt-server.

No gRPC library on the attacking side: frames are written by hand on plain
TCP sockets, as an attacker's tool would. (c) the rapid-reset pattern
(CVE-2023-44487: open a stream, reset it at once, repeat) on several
connections, and thousands of idle connections, while a well-behaved
client times a cheap call; (d) a client pinging faster than the server's
policy allows must get GOAWAY ENHANCE_YOUR_CALM "too_many_pings".

CKPT_HTTP2_SECONDS (rapid reset, default 1) and CKPT_HTTP2_IDLE (idle
connections, default 2000) make it larger for the soak.
"""

import os
import socket
import struct
import subprocess
import tempfile
import threading
import time

import grpc
import pytest

from conftest import ServerProcess, _server_binary
from raw_api import stubs

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY = 0, 1, 3, 4, 6, 7
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
CANCEL, ENHANCE_YOUR_CALM = 0x8, 0xB


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + \
        struct.pack(">I", stream) + payload


def literal(name_index, value):
    """An HPACK literal header field without indexing, its name from the
    static table, its value a plain string (RFC 7541, 6.2.2)."""
    value = value.encode()
    prefix = bytes([name_index]) if name_index < 15 else \
        bytes([15, name_index - 15])
    return prefix + bytes([len(value)]) + value


def request_headers(authority, method):
    """The header block of a gRPC unary request: :method POST (static 3),
    :scheme http (6), :path (4), :authority (1), content-type (31) and
    te: trailers (a new name)."""
    return (b"\x83\x86" + literal(4, f"/ckpt.v1.CheckpointService/{method}")
            + literal(1, authority) + literal(31, "application/grpc")
            + b"\x00\x02te\x08trailers")


def read_frame(sock):
    """(type, flags, stream, payload), or None when the server closed."""
    header = b""
    while len(header) < 9:
        more = sock.recv(9 - len(header))
        if not more:
            return None
        header += more
    length = int.from_bytes(header[:3], "big")
    payload = b""
    while len(payload) < length:
        more = sock.recv(length - len(payload))
        if not more:
            return None
        payload += more
    return header[3], header[4], \
        int.from_bytes(header[5:9], "big") & 0x7FFFFFFF, payload


def open_connection(address):
    host, port = address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(PREFACE + frame(SETTINGS, 0, 0))
    return sock


def wait_for_goaway(sock, deadline):
    """The GOAWAY frame's (error code, debug data), acknowledging the
    server's SETTINGS and PINGs on the way, or None if the connection
    closed or `deadline` passed without one."""
    sock.settimeout(max(0.1, deadline - time.monotonic()))
    while time.monotonic() < deadline:
        try:
            got = read_frame(sock)
        except (socket.timeout, ConnectionError):
            return None
        if got is None:
            return None
        kind, flags, _, payload = got
        if kind == GOAWAY:
            return int.from_bytes(payload[4:8], "big"), payload[8:]
        if kind == SETTINGS and not flags & ACK:
            sock.sendall(frame(SETTINGS, ACK, 0))
    return None


@pytest.fixture
def server():
    with tempfile.TemporaryDirectory(prefix="ckpt-http2-") as root:
        process = ServerProcess(os.path.join(root, "db"), [
            "--gc-interval", "0", "--max-connection-idle-seconds", "2"])
        process.start()
        try:
            yield process
        finally:
            process.stop()


class LatencyProbe:
    """A well-behaved client calling ListJobs in a loop on its own
    connection; latencies in seconds, and any error."""

    def __init__(self, address):
        _, pb_grpc = stubs()
        self._channel = grpc.insecure_channel(
            address, options=[("grpc.use_local_subchannel_pool", 1)])
        self._stub = pb_grpc.CheckpointServiceStub(self._channel)
        self.latencies, self.errors = [], []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self):
        pb, _ = stubs()
        while not self._stop.is_set():
            start = time.monotonic()
            try:
                self._stub.ListJobs(pb.ListJobsRequest(), timeout=5)
                self.latencies.append(time.monotonic() - start)
            except grpc.RpcError as error:
                self.errors.append(f"{error.code()}: {error.details()}")
            time.sleep(0.005)

    def __enter__(self):
        pb, _ = stubs()
        self._stub.ListJobs(pb.ListJobsRequest(), timeout=30)  # connected
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._channel.close()

    def p99(self):
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def test_a_client_pinging_too_often_gets_goaway_too_many_pings(server):
    """Pings with no call open, each sent as soon as the last is answered
    (the server's policy allows one per 10 s without data)."""
    sock = open_connection(server.address)
    sock.settimeout(10)
    goaway, pings = None, 0
    try:
        while goaway is None and pings < 20:
            sock.sendall(frame(PING, 0, 0, struct.pack(">Q", pings)))
            pings += 1
            while True:
                got = read_frame(sock)
                if got is None:
                    break
                kind, flags, _, payload = got
                if kind == GOAWAY:
                    goaway = (int.from_bytes(payload[4:8], "big"),
                              payload[8:])
                    break
                if kind == SETTINGS and not flags & ACK:
                    sock.sendall(frame(SETTINGS, ACK, 0))
                if kind == PING and flags & ACK:
                    break
            if got is None:
                break
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass
    finally:
        sock.close()
    assert goaway is not None, \
        f"the server answered {pings} pings without a GOAWAY"
    code, debug = goaway
    assert code == ENHANCE_YOUR_CALM, (code, debug)
    assert b"too_many_pings" in debug
    print(f"T18d ping flood: GOAWAY ENHANCE_YOUR_CALM {debug!r} after "
          f"{pings} pings")
    # Others are served as before.
    with LatencyProbe(server.address) as probe:
        time.sleep(0.2)
    assert probe.latencies and not probe.errors


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def test_rapid_reset_is_survived_and_not_logged_call_by_call(tmp_path):
    """Streams opened and reset at once, on 4 connections, for
    CKPT_HTTP2_SECONDS (default 1). The server must come through it and
    answer again, and must not write a log line per reset call (an
    attacker's way to fill the log's disk): rpc_failed warnings are held to
    100 a second, the rest counted in rpc_failed_held_back lines.

    Known gap, measured and printed here, not asserted: Debian 12's gRPC
    (1.51) lacks the CVE-2023-44487 mitigations, so while the flood lasts
    the calls it queues before they reach ckpt grow the server's memory
    (~1 GB/s with the default --grpc-memory-quota, ~110 MB/s with 256 MiB)
    and a well-behaved call waits. docs/security.md says how to deploy
    around it."""
    seconds = float(os.environ.get("CKPT_HTTP2_SECONDS", "1"))
    log_path = tmp_path / "server.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [_server_binary(), "--data-dir", str(tmp_path / "db"),
             "--listen", "127.0.0.1:0", "--gc-interval", "0",
             "--grpc-memory-quota", "256MiB"],
            stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("ckpt-server listening on "), line
        address = line.split()[-1]
        idle_rss = rss_mib(process.pid)
        block = request_headers(address, "ListJobs")
        counts = []

        def attack():
            sent, stream = 0, 1
            end = time.monotonic() + seconds
            try:
                sock = open_connection(address)
                while time.monotonic() < end:
                    burst = bytearray()
                    for _ in range(100):
                        burst += frame(HEADERS, END_HEADERS, stream, block)
                        burst += frame(RST_STREAM, 0, stream,
                                       struct.pack(">I", CANCEL))
                        stream += 2
                    sock.sendall(burst)
                    sent += 100
                sock.close()
            except OSError:
                pass  # the server may end such a connection: its right
            counts.append(sent)

        attackers = [threading.Thread(target=attack) for _ in range(4)]
        for thread in attackers:
            thread.start()
        for thread in attackers:
            thread.join()
        peak_rss = rss_mib(process.pid)
        stopped = time.monotonic()
        _, pb_grpc = stubs()
        pb, _ = stubs()
        with grpc.insecure_channel(address) as channel:
            pb_grpc.CheckpointServiceStub(channel).ListJobs(
                pb.ListJobsRequest(), timeout=60)
        recovered = time.monotonic() - stopped
        time.sleep(1.1)  # the budget's window closes; held lines go out
        assert process.poll() is None, "the server exited"
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
    lines = log_path.read_text().splitlines()
    failed_seconds = {}
    held = 0
    for line in lines:
        if "event=rpc_failed " in line:
            second = line.split()[0][:len("ts=2026-01-01T00:00:00")]
            failed_seconds[second] = failed_seconds.get(second, 0) + 1
        if "event=rpc_failed_held_back " in line:
            held += int(line.split("count=")[1].split()[0])
    failed = sum(failed_seconds.values())
    streams = sum(counts)
    print(f"T18c rapid reset: {streams} streams opened and reset in "
          f"{seconds:.0f} s ({streams / seconds:.0f}/s) on 4 connections; "
          f"server RSS {idle_rss:.0f} -> {peak_rss:.0f} MiB; answered again "
          f"{recovered:.1f} s after; {failed} rpc_failed lines over "
          f"{len(failed_seconds)} s, {held} held back")
    assert streams > 1000
    # At most 100 rpc_failed lines in any second, and the rest counted.
    # (A line let through at the end of a second may be stamped in the
    # next: some slack.)
    assert max(failed_seconds.values()) <= 120, failed_seconds
    assert held > 0


def test_thousands_of_idle_connections_are_reaped(server):
    count = int(os.environ.get("CKPT_HTTP2_IDLE", "2000"))
    socks = []
    with LatencyProbe(server.address) as probe:
        for _ in range(count):
            socks.append(open_connection(server.address))
        opened = time.monotonic()
        # --max-connection-idle-seconds 2: each is sent GOAWAY, then closed.
        reaped = 0
        for sock in socks:
            if wait_for_goaway(sock, opened + 30) is not None:
                reaped += 1
        took = time.monotonic() - opened
    for sock in socks:
        sock.close()
    print(f"T18c idle: {reaped} of {count} idle connections sent GOAWAY "
          f"within {took:.1f} s (idle limit 2 s); probe p99 "
          f"{probe.p99() * 1000:.1f} ms, errors {len(probe.errors)}")
    assert reaped == count
    assert not probe.errors, probe.errors[:3]
    assert probe.p99() < 0.5
    assert server.process.poll() is None, "the server exited"
