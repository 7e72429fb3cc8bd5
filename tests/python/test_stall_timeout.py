"""ckpt.Client(stream_stall_timeout=): the progress bound of the client's
streams, checked as an argument and against a server that keeps the
connection (answering keepalive pings) but stops reading the upload
(tests/integration/stalling_proxy.py in front of a real ckpt-server)."""

import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

import ckpt

_PROXY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                      "integration", "stalling_proxy.py")


@pytest.fixture
def stalling_proxy(server):
    """HOST:PORT of a proxy in front of `server` that stalls the first
    upload (it never reads a message of it) and forwards everything else."""
    with tempfile.TemporaryDirectory(prefix="ckpt-proxy-") as tmp:
        port_file = os.path.join(tmp, "port")
        proxy = subprocess.Popen([sys.executable, _PROXY, server, port_file,
                                  "upload"])
        try:
            deadline = time.monotonic() + 30
            while not os.path.exists(port_file):
                assert proxy.poll() is None, "the stalling proxy exited"
                assert time.monotonic() < deadline, "no proxy port"
                time.sleep(0.05)
            with open(port_file) as f:
                yield f"127.0.0.1:{f.read().strip()}"
        finally:
            proxy.kill()
            proxy.wait()


def _tensor(data):
    return ("w", "uint8", [data.size], [0], [data.size], data)


def test_stream_stall_timeout_is_checked_naming_the_argument():
    cases = [
        ("1", TypeError, "stream_stall_timeout must be a number"),
        (True, TypeError, "stream_stall_timeout must be a number"),
        (0, ValueError, "stream_stall_timeout must be > 0"),
        (-5, ValueError, "stream_stall_timeout must be > 0"),
        (math.nan, ValueError, "stream_stall_timeout must be a number"),
    ]
    for value, error, message in cases:
        with pytest.raises(error) as raised:
            ckpt.Client("127.0.0.1:1", stream_stall_timeout=value)
        assert str(raised.value).startswith(message), str(raised.value)
    # No bound at all is allowed, and so is a fraction of a second.
    ckpt.Client("127.0.0.1:1", stream_stall_timeout=math.inf)
    ckpt.Client("127.0.0.1:1", stream_stall_timeout=0.5)


def test_a_save_to_a_server_that_stops_reading_ends_at_the_bound(
        server, stalling_proxy):
    bound = 2.0
    client = ckpt.Client(stalling_proxy, connect_timeout=10.0,
                         stream_stall_timeout=bound)
    # 64 MiB: far more than the HTTP/2 windows hold.
    data = np.random.default_rng(5).integers(0, 256, 64 << 20,
                                             dtype=np.uint8)
    start = time.monotonic()
    with pytest.raises(ckpt.Error) as raised:
        client.save_shard("t/stall", 1, [_tensor(data)])
    took = time.monotonic() - start
    assert raised.value.code == "DEADLINE_EXCEEDED", raised.value
    assert (f"the server at {stalling_proxy} made no progress on the "
            "upload for 2s") in str(raised.value), str(raised.value)
    assert bound <= took < bound + 15, took
    # The proxy stalls only once: the same client saves, and it restores.
    client.save_shard("t/stall", 2, [_tensor(data)])
    direct = ckpt.Client(server, connect_timeout=10.0)
    (name, _, _, _, _, array), = direct.restore_shard("t/stall", 2)
    assert name == "w"
    assert np.array_equal(np.asarray(array).reshape(-1), data)
