"""CheckpointManager(incremental=True) across a restart: a training job
(restart_trainee.py, its own process) saves a baseline and deltas and is
SIGKILLed, after a save or in the middle of an async one; a new process
restores (restore_or_initialize) and its next save is a delta on the
restored checkpoint (on its baseline when that is a delta, as the
intermittent policy says), seeded from the stored fingerprints, adding
about the changed rows only; every step restores byte-identical to what
was saved."""

import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

import ckpt
from restart_trainee import DIM, ROWS
from test_incremental import assert_identical, kinds, snapshot

TABLE = "model/embedding.weight"
ROW_BYTES = DIM * 4
INDEX_BYTES = 4  # a row delta's index per row, for tables of <= 2^32 rows
FINGERPRINT_HEADER, FINGERPRINT_BYTES = 32, 16  # common/fingerprint_record.h
TRAINEE = os.path.join(os.path.dirname(__file__), "restart_trainee.py")


class Trainee:
    """One run of restart_trainee.py; `ready` is its first answer."""

    def __init__(self, server, job, snapshots, seed, **options):
        command = [sys.executable, TRAINEE, "--server", server, "--job", job,
                   "--snapshots", snapshots, "--seed", str(seed)]
        for name, value in options.items():
            flag = "--" + name.replace("_", "-")
            command += [flag] if value is True else [flag, str(value)]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                [os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")])))
        self.ready = self._answer()

    def command(self, line):
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        return self._answer()

    def _answer(self):
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait()
            pytest.fail(f"the training process ended (exit {code}) "
                        "without answering; its stderr is above")
        return json.loads(line)

    def kill(self):
        """SIGKILL by PID, as a crash: nothing flushed or closed."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process.stdin.close()
        self.process.stdout.close()

    def exit(self):
        assert self.command("exit") == {"closed": True}
        assert self.process.wait(timeout=60) == 0


@pytest.fixture
def trainees():
    """Starts Trainee processes; kills any left running after the test."""
    started = []

    def start(*args, **options):
        trainee = Trainee(*args, **options)
        started.append(trainee)
        return trainee

    yield start
    for trainee in started:
        if trainee.process.poll() is None:
            trainee.kill()


class Throttle:
    """A loopback TCP proxy to a server whose client-to-server direction can
    be cut after a given number of further bytes: the client's writes then
    stall (its socket buffers fill) as if the network stopped mid-upload.
    close() drops every connection, as the kernel does when a process
    dies."""

    def __init__(self, target):
        host, port = target.rsplit(":", 1)
        self._target = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._cond = threading.Condition()
        self._forwarded = 0  # client-to-server bytes, all connections
        self._limit = None
        self._closed = False
        self._sockets = []
        threading.Thread(target=self._accept, daemon=True).start()

    def cut_after(self, more_bytes):
        with self._cond:
            self._limit = self._forwarded + more_bytes

    def _accept(self):
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            with self._cond:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True),
                             daemon=True).start()
            threading.Thread(target=self._pump,
                             args=(upstream, client, False),
                             daemon=True).start()

    def _allowance(self):
        with self._cond:
            self._cond.wait_for(lambda: self._closed or self._limit is None
                                or self._forwarded < self._limit)
            if self._closed:
                return 0
            if self._limit is None:
                return 1 << 16
            return min(1 << 16, self._limit - self._forwarded)

    def _pump(self, source, sink, upload):
        try:
            while True:
                size = self._allowance() if upload else 1 << 16
                if size == 0:
                    return
                data = source.recv(size)
                if not data:
                    return
                sink.sendall(data)
                if upload:
                    with self._cond:
                        self._forwarded += len(data)
        except OSError:
            return

    def close(self):
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            sockets, self._sockets = self._sockets, []
        self._listener.close()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


def snapshots_of(directory):
    return {int(name[:-3]): torch.load(os.path.join(directory, name))
            for name in os.listdir(directory) if name.endswith(".pt")}


def changed_rows(snapshots, step, base):
    table, base_table = (snapshots[s]["/" + TABLE] for s in (step, base))
    return int((table != base_table).any(dim=1).sum())


def delta_allowance(manifest, changed):
    """The most a save of the table as a delta of `changed` rows may add:
    1.1x those rows with their indices (the delta's header and its
    fingerprint record, 20 bytes a row, fit in the tenth) plus every other
    tensor of the checkpoint in full (the dense head, its Adam state, the
    state tree), with the dense fingerprint record a 2-D one stores."""
    allowance = math.floor(1.1 * changed * (ROW_BYTES + INDEX_BYTES))
    for name, dtype, _, _, lengths, _ in manifest.entries(0):
        if name == TABLE:
            continue
        allowance += math.prod(lengths) * np.dtype(dtype).itemsize
        if len(lengths) >= 2:
            allowance += FINGERPRINT_HEADER + FINGERPRINT_BYTES * lengths[0]
    return allowance


def records_by_step(client, job, include_uncommitted=False):
    return {record["step"]: record for record in client.list_checkpoints(
        job, include_uncommitted=include_uncommitted)}


def assert_seeded_from_stored_fingerprints(ready, restored_step):
    assert ready["restored_step"] == restored_step
    seed = ready["seed"]
    assert seed["step"] == restored_step
    how = {name: [seeded, reason] for name, seeded, reason in seed["tensors"]}
    assert how[TABLE] == [True, "stored fingerprints"]
    # 16 bytes a row of the baseline (and of each delta's rows), never the
    # rows themselves.
    assert 0 < seed["fingerprint_bytes_read"] < ROWS * ROW_BYTES / 8


def assert_delta_adds_changed_rows(client, job, step, base, snapshots):
    record = records_by_step(client, job)[step]
    assert record["kind"] == "delta"
    assert record["base_steps"] == [base]
    changed = changed_rows(snapshots, step, base)
    # Scattered: about 1% of the rows a step.
    assert 0 < changed < ROWS // 10
    allowance = delta_allowance(client.get_manifest(job, step), changed)
    assert changed * (ROW_BYTES + INDEX_BYTES) <= record["bytes_added"] \
        <= allowance, (changed, allowance)
    return changed


def assert_every_step_restores(server, job, snapshots):
    with ckpt.CheckpointManager(server, job) as reader:
        assert reader.all_steps() == sorted(snapshots)
        for step, expected in snapshots.items():
            restored = reader.restore(step)
            assert_identical(restored, expected)
            # Byte for byte (torch.equal takes -0.0 for 0.0).
            for path, tensor in snapshot(restored).items():
                assert tensor.numpy().tobytes() == \
                    expected[path].numpy().tobytes(), (step, path)


# Killed after step 1 (the restored checkpoint is full: the next delta is
# on it) or after step 3 (a delta on 1: the next delta is on 1 too).
@pytest.mark.parametrize("saved_before_kill", [1, 3])
def test_killed_job_resumes_with_a_delta_on_the_restored_baseline(
        server, trainees, tmp_path, saved_before_kill):
    job = f"py/restart-{saved_before_kill}"
    first = trainees(server, job, str(tmp_path), seed=1)
    assert first.ready["restored_step"] is None
    for step in range(1, saved_before_kill + 1):
        answer = first.command(f"save {step}")
        assert answer["saved"] == step
        expected = "full" if step == 1 else "delta"
        assert kinds(answer["plan"])[TABLE] == expected
    first.kill()

    second = trainees(server, job, str(tmp_path), seed=2)
    assert_seeded_from_stored_fingerprints(second.ready, saved_before_kill)
    step = saved_before_kill + 1
    plan = second.command(f"save {step}")["plan"]
    table = next(p for p in plan if p[0] == TABLE)
    assert table[1:3] == ["delta", 1]
    second.exit()

    snapshots = snapshots_of(tmp_path)
    client = ckpt.Client(server)
    changed = assert_delta_adds_changed_rows(client, job, step, 1, snapshots)
    # The delta holds exactly the rows changed since the baseline.
    assert table[3] == changed
    assert_every_step_restores(server, job, snapshots)


def test_consecutive_chain_goes_on_after_a_restart(server, trainees,
                                                   tmp_path):
    job = "py/restart-consecutive"
    options = dict(delta_mode="consecutive", max_chain_length=3)
    first = trainees(server, job, str(tmp_path), seed=3, **options)
    first.command("save 1")
    assert kinds(first.command("save 2")["plan"])[TABLE] == "delta"
    first.kill()

    second = trainees(server, job, str(tmp_path), seed=4, **options)
    assert_seeded_from_stored_fingerprints(second.ready, 2)
    # Against the restored step itself, the chain's length counted: 2 is
    # its first delta, so 3 and 4 are deltas and 5 (a fourth) is full.
    bases = {}
    for step in (3, 4, 5):
        plan = second.command(f"save {step}")["plan"]
        bases[step] = next(p for p in plan if p[0] == TABLE)[1:3]
    second.exit()
    assert bases == {3: ["delta", 2], 4: ["delta", 3], 5: ["full", None]}

    snapshots = snapshots_of(tmp_path)
    client = ckpt.Client(server)
    for step in (3, 4):
        assert_delta_adds_changed_rows(client, job, step, step - 1, snapshots)
    assert records_by_step(client, job)[5]["kind"] == "full"
    assert_every_step_restores(server, job, snapshots)


def test_killed_in_the_middle_of_an_async_save(server, trainees, tmp_path):
    job = "py/restart-async"
    throttle = Throttle(server)
    try:
        first = trainees(throttle.address, job, str(tmp_path), seed=5,
                         async_save=True)
        first.command("save 1")
        first.command("save 2")
        assert kinds(first.command("wait")["plan"])[TABLE] == "delta"
        # Step 3's upload gets 32 KiB through, less than its table delta
        # alone (about 657 rows of 260 bytes), then the network stalls.
        cut = 32 << 10
        throttle.cut_after(cut)
        assert first.command("save 3") == {"started": 3}
        client = ckpt.Client(server)
        deadline = time.monotonic() + 60
        while 3 not in records_by_step(client, job, True):
            assert time.monotonic() < deadline, "step 3 never began"
            time.sleep(0.01)
        first.kill()
    finally:
        throttle.close()
    os.remove(os.path.join(tmp_path, "3.pt"))  # never committed
    pending = records_by_step(client, job, include_uncommitted=True)[3]
    assert pending["state"] == "pending"
    assert sorted(records_by_step(client, job)) == [1, 2]

    second = trainees(server, job, str(tmp_path), seed=6)
    assert_seeded_from_stored_fingerprints(second.ready, 2)
    plan = second.command("save 3")["plan"]
    assert next(p for p in plan if p[0] == TABLE)[1:3] == ["delta", 1]
    second.exit()

    snapshots = snapshots_of(tmp_path)
    record = records_by_step(client, job)[3]
    assert record["kind"] == "delta" and record["base_steps"] == [1]
    # The save joined the pending step 3, whose dead upload may have
    # stored chunks too: at most the bytes that got through.
    changed = changed_rows(snapshots, 3, 1)
    allowance = delta_allowance(client.get_manifest(job, 3), changed)
    assert record["bytes_added"] <= allowance + cut
    assert_every_step_restores(server, job, snapshots)


def test_per_rank_tables_of_two_ranks_resume_with_their_own_deltas(server):
    """Two ranks each hold their own table under one name (per-rank state,
    the same whole box): each rank's deltas are on its own rows, before and
    after a restart (new managers, seeded by restore)."""
    job = "py/restart-per-rank"
    generator = torch.Generator().manual_seed(7)
    tables = [torch.randn(4096, DIM, generator=generator) for _ in range(2)]
    saved = {}  # (rank, step) -> the table saved

    def train(rank):
        rows = torch.randperm(4096, generator=generator)[:40]
        tables[rank][rows] += 1.0

    def save_both(managers, step):
        for rank, manager in enumerate(managers):
            if step > 1:
                train(rank)
            manager.save({"table": tables[rank]}, step)
            saved[rank, step] = tables[rank].clone()
            if step > 1:
                assert kinds(manager.last_plan)["table"] == "delta", (rank,
                                                                      step)

    def managers():
        return [ckpt.CheckpointManager(server, job, incremental=True,
                                       rank=rank, world_size=2)
                for rank in range(2)]

    first = managers()
    save_both(first, 1)
    save_both(first, 2)
    for manager in first:
        manager.close()
    second = managers()
    for rank, manager in enumerate(second):
        assert torch.equal(manager.restore()["table"], saved[rank, 2])
        how = {name: seeded for name, seeded, _ in
               manager.last_restore["incremental_seed"]["tensors"]}
        assert how["table"] is True
    save_both(second, 3)
    # The low-level read into given arrays follows rank 1's bases too.
    client = ckpt.Client(server)
    into = {name: np.empty(lengths, dtype) for name, dtype, _, _, lengths, _
            in client.get_manifest(job, 3).entries(1)}
    client.restore_shard_into(job, 3, rank=1, into=into)
    assert np.array_equal(into["table"], saved[1, 3].numpy())
    for rank, manager in enumerate(second):
        for step in (1, 2, 3):
            assert torch.equal(manager.restore(step)["table"],
                               saved[rank, step]), (rank, step)
        manager.close()
