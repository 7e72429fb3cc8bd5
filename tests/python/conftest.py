"""Fixtures: a real ckpt-server from the build tree on a loopback port.

ctest sets CKPT_BUILD_DIR (the build directory) and PYTHONPATH (its python/
directory, where the ckpt package is assembled)."""

import os
import signal
import subprocess
import tempfile

import pytest

# Helper modules whose asserts pytest should explain.
pytest.register_assert_rewrite("ceph_servers")


def _server_binary():
    build_dir = os.environ.get("CKPT_BUILD_DIR")
    if not build_dir:
        pytest.fail("CKPT_BUILD_DIR is not set (run through ctest)")
    path = os.path.join(build_dir, "server", "rpc", "ckpt-server")
    if not os.access(path, os.X_OK):
        pytest.fail(f"no ckpt-server binary at {path}")
    return path


class ServerProcess:
    """A ckpt-server on `data_dir` that a test can kill and start again on
    the same data (each start on a fresh loopback port), with `extra_args`
    (further ckpt-server flags, e.g. --tls-cert FILE)."""

    def __init__(self, data_dir, extra_args=()):
        self.data_dir = data_dir
        self.extra_args = list(extra_args)
        self.process = None
        self.address = None

    @property
    def pid(self):
        return self.process.pid

    def start(self):
        """Starts the server; returns once it listens."""
        assert self.process is None, "already running"
        self.process = subprocess.Popen(
            [_server_binary(), "--data-dir", self.data_dir, "--listen",
             "127.0.0.1:0", *self.extra_args],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.process.stdout.readline()
        prefix = "ckpt-server listening on "
        if not line.startswith(prefix):
            self.kill()
            pytest.fail(f"ckpt-server did not start: {line!r}")
        self.address = line[len(prefix):].strip()
        return self.address

    def kill(self):
        """SIGKILL by PID, as a crash: nothing is flushed or shut down."""
        self._end(lambda: os.kill(self.process.pid, signal.SIGKILL))

    def stop(self):
        """SIGTERM (a clean shutdown), SIGKILL after 30 s. A server a test
        left frozen (SIGSTOP) is resumed to receive it."""
        def terminate():
            self.process.terminate()
            os.kill(self.process.pid, signal.SIGCONT)
        self._end(terminate)

    def _end(self, signal_it):
        if self.process is None:
            return
        if self.process.poll() is None:
            signal_it()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()
        self.process = None
        self.address = None


@pytest.fixture
def server_process():
    """A started ServerProcess on a temporary data dir, stopped after the
    test."""
    with tempfile.TemporaryDirectory(prefix="ckpt-pytest-") as data_dir:
        process = ServerProcess(data_dir)
        try:
            process.start()
            yield process
        finally:
            process.stop()


@pytest.fixture
def server(server_process):
    """The address HOST:PORT of a fresh ckpt-server, stopped by PID after
    the test."""
    return server_process.address


@pytest.fixture
def client(server):
    import ckpt
    return ckpt.Client(server, connect_timeout=10.0)
