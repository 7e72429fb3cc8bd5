"""Fixtures: a real ckpt-server from the build tree on a loopback port.

ctest sets CKPT_BUILD_DIR (the build directory) and PYTHONPATH (its python/
directory, where the ckpt package is assembled)."""

import os
import subprocess
import tempfile

import pytest


def _server_binary():
    build_dir = os.environ.get("CKPT_BUILD_DIR")
    if not build_dir:
        pytest.fail("CKPT_BUILD_DIR is not set (run through ctest)")
    path = os.path.join(build_dir, "server", "rpc", "ckpt-server")
    if not os.access(path, os.X_OK):
        pytest.fail(f"no ckpt-server binary at {path}")
    return path


@pytest.fixture
def server():
    """The address HOST:PORT of a fresh ckpt-server, stopped by PID after
    the test."""
    with tempfile.TemporaryDirectory(prefix="ckpt-pytest-") as data_dir:
        process = subprocess.Popen(
            [_server_binary(), "--data-dir", data_dir, "--listen",
             "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            line = process.stdout.readline()
            prefix = "ckpt-server listening on "
            if not line.startswith(prefix):
                process.kill()
                process.wait()
                pytest.fail(f"ckpt-server did not start: {line!r}")
            yield line[len(prefix):].strip()
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            process.stdout.close()


@pytest.fixture
def client(server):
    import ckpt
    return ckpt.Client(server, connect_timeout=10.0)
