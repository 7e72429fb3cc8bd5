"""Graceful shutdown of a real ckpt-server (SIGTERM): health turns
NOT_SERVING and new calls are refused at once, an upload in flight may
finish within --shutdown-grace-seconds, a stalled one is cancelled when the
grace ends, and the process exits promptly either way. Raw gRPC calls
(raw_api) drive the upload stream message by message."""

import hashlib
import os
import queue
import signal
import subprocess
import tempfile
import time

import grpc
import pytest

import raw_api
from conftest import _server_binary

JOB = "py/shutdown"


class Server:
    """A ckpt-server with its stderr kept, stopped by PID."""

    def __init__(self, data_dir, grace):
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            [_server_binary(), "--data-dir", data_dir, "--listen",
             "127.0.0.1:0", "--shutdown-grace-seconds", str(grace)],
            stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        line = self.process.stdout.readline()
        assert line.startswith("ckpt-server listening on "), line
        self.address = line.split()[-1]

    def terminate(self):
        """SIGTERM; returns the time it was sent."""
        self.process.send_signal(signal.SIGTERM)
        return time.monotonic()

    def log(self):
        self.stderr.seek(0)
        return self.stderr.read()

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.process.stdout.close()
        self.stderr.close()


@pytest.fixture
def data_dir():
    with tempfile.TemporaryDirectory(prefix="ckpt-shutdown-") as directory:
        yield os.path.join(directory, "db")


def stub(address):
    _, pb_grpc = raw_api.stubs()
    return pb_grpc.CheckpointServiceStub(grpc.insecure_channel(address))


def chunk(seed):
    pb, _ = raw_api.stubs()
    data = os.urandom(1 << 20) + seed.to_bytes(4, "little")
    return pb.ChunkData(sha256=hashlib.sha256(data).digest(), data=data)


def probe(address):
    """(exit code, output) of ckpt-server --health-probe."""
    result = subprocess.run(
        [_server_binary(), "--health-probe", "--listen", address],
        capture_output=True, text=True, timeout=30)
    return result.returncode, result.stdout.strip()


def missing(address, chunks):
    pb, _ = raw_api.stubs()
    response = stub(address).FindMissingChunks(pb.FindMissingChunksRequest(
        job=JOB, sha256=[c.sha256 for c in chunks]), timeout=30)
    return list(response.missing_sha256)


class Upload:
    """A PutChunks stream whose messages the test sends one at a time."""

    def __init__(self, address):
        pb, _ = raw_api.stubs()
        self._pb = pb
        self._queue = queue.Queue()
        self._first = True

        def requests():
            while (item := self._queue.get()) is not None:
                yield item
        self.future = stub(address).PutChunks.future(requests(), timeout=120)

    def send(self, data_chunk):
        request = self._pb.PutChunksRequest(chunks=[data_chunk])
        if self._first:
            request.job = JOB
            self._first = False
        self._queue.put(request)

    def end(self):
        self._queue.put(None)


def start_upload_in_flight(server):
    """An upload whose first chunk the server has stored, so that the call
    is known to be running there."""
    upload = Upload(server.address)
    first = chunk(0)
    upload.send(first)
    deadline = time.monotonic() + 30
    while missing(server.address, [first]):
        assert time.monotonic() < deadline, "the first chunk never arrived"
        time.sleep(0.02)
    return upload


def wait_for_not_serving(address):
    deadline = time.monotonic() + 10
    while True:
        code, output = probe(address)
        if code != 0:
            return output
        assert time.monotonic() < deadline, "health stayed SERVING"
        time.sleep(0.05)


def test_an_upload_in_flight_finishes_within_the_grace(data_dir):
    server = Server(data_dir, grace=20)
    try:
        assert probe(server.address) == (0, "")
        upload = start_upload_in_flight(server)
        sent_at = server.terminate()

        # Draining: health says so, and new calls are refused.
        assert "is NOT_SERVING" in wait_for_not_serving(server.address)
        pb, _ = raw_api.stubs()
        with pytest.raises(grpc.RpcError) as refused:
            stub(server.address).ListJobs(pb.ListJobsRequest(), timeout=30)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "shutting down" in refused.value.details()

        # The upload in flight goes on and completes.
        second = chunk(1)
        upload.send(second)
        upload.end()
        response = upload.future.result(timeout=30)
        assert response.chunks_received == 2
        assert response.chunks_stored == 2

        # Then the process exits at once, not at the end of the grace.
        assert server.process.wait(timeout=15) == 0
        assert time.monotonic() - sent_at < 15
        assert "event=shutdown result=clean" in server.log()
    finally:
        server.close()

    # What the drained upload stored is there after a restart.
    server = Server(data_dir, grace=1)
    try:
        never_uploaded = chunk(2)
        assert missing(server.address, [never_uploaded, second]) == [
            never_uploaded.sha256]
    finally:
        server.close()


def test_a_stalled_upload_is_cancelled_when_the_grace_ends(data_dir):
    grace = 2
    server = Server(data_dir, grace=grace)
    try:
        upload = start_upload_in_flight(server)
        sent_at = server.terminate()
        # The client never sends another message.
        with pytest.raises(grpc.RpcError) as cancelled:
            upload.future.result(timeout=30)
        ended_after = time.monotonic() - sent_at
        assert cancelled.value.code() in (grpc.StatusCode.CANCELLED,
                                          grpc.StatusCode.UNAVAILABLE)
        assert grace - 0.2 <= ended_after < grace + 5
        assert server.process.wait(timeout=15) == 0
        assert time.monotonic() - sent_at < grace + 5
        assert "event=shutdown result=clean" in server.log()
        upload.end()
    finally:
        server.close()


def test_an_idle_server_exits_promptly(data_dir):
    server = Server(data_dir, grace=10)
    try:
        sent_at = server.terminate()
        assert server.process.wait(timeout=15) == 0
        assert time.monotonic() - sent_at < 2
        log = server.log()
        assert "event=draining step=draining_calls grace=10s" in log
        assert "event=shutdown result=clean" in log
        assert "shutdown_stuck" not in log
    finally:
        server.close()
