"""Several ckpt-servers on one Ceph cluster (issue 18), as real processes on
loopback ports, started and stopped by PID: every server is given the same
pool (`--chunk-store rados:POOL`), so any of them serves any job.

- Two ranks of a job save through two servers, commit atomically, and a
  third server restores every step byte for byte, also into other world
  sizes.
- kill -9 of a server in the middle of a save loses no acknowledged
  checkpoint and lists nothing partial; the job finishes through another
  server; a server killed while it holds a job's lock or the collection
  lock blocks the others for about one lock lease, not more.
- Garbage collection on two servers at once while a job saves through both
  deletes garbage, never runs twice at once, and loses nothing.
- A careless or hostile Ceph configuration makes ckpt-server exit quickly
  with a message naming the problem.

ctest runs this file under tests/ceph/ceph_cluster.py --run (one throwaway
cluster for the file; CKPT_CEPH_CONF, _KEYRING, _POOL, _USER name it). The
locks are short here (--rados-lock-lease-seconds 2, --rados-min-hold-seconds
4) so that expiries and deletions happen within the test."""

import calendar
import json
import os
import pathlib
import random
import re
import selectors
import shlex
import signal
import subprocess
import threading
import time

import pytest
import torch

import ckpt
from conftest import _server_binary

LEASE_SECONDS = 2
MIN_HOLD_SECONDS = 4
# Where RadosMetadataStore keeps what a test inspects (the layout comment
# of server/storage/rados_metadata_store.h): the RADOS namespace, a job's
# object and the cls_lock names.
META_NAMESPACE = "meta"
JOB_LOCK = "ckpt.job"
COLLECTION_OBJECT = "lock/gc"
COLLECTION_LOCK = "ckpt.gc"
ROWS = 96  # divisible by 1, 2, 3 and 4: every world size gets a row block


# --- the cluster and the servers -----------------------------------------

@pytest.fixture(scope="module")
def ceph():
    """The cluster ceph_cluster.py --run started for this file."""
    names = ("CKPT_CEPH_CONF", "CKPT_CEPH_KEYRING", "CKPT_CEPH_POOL",
             "CKPT_CEPH_USER")
    missing = [name for name in names if not os.environ.get(name)]
    if missing:
        pytest.fail(f"{', '.join(missing)} not set: run this file through "
                    "ctest (-L ceph) or /usr/bin/python3 "
                    "tests/ceph/ceph_cluster.py --run -- /usr/bin/python3 -m "
                    "pytest tests/python/test_ceph_scale_out.py")
    return {"conf": os.environ["CKPT_CEPH_CONF"],
            "keyring": os.environ["CKPT_CEPH_KEYRING"],
            "pool": os.environ["CKPT_CEPH_POOL"],
            "user": os.environ["CKPT_CEPH_USER"]}


def ceph_flags(ceph, **overrides):
    """The flags that put a server on the test pool, with short locks."""
    values = {"chunk-store": f"rados:{ceph['pool']}",
              "ceph-conf": ceph["conf"], "ceph-user": ceph["user"],
              "ceph-keyring": ceph["keyring"],
              "rados-lock-lease-seconds": str(LEASE_SECONDS),
              "rados-min-hold-seconds": str(MIN_HOLD_SECONDS)}
    values.update({k.replace("_", "-"): v for k, v in overrides.items()})
    flags = []
    for name, value in values.items():
        if value is not None:
            flags += [f"--{name}", value]
    return flags


def read_line(stream, timeout):
    """One line of `stream`, or None after `timeout` seconds or at EOF."""
    selector = selectors.DefaultSelector()
    selector.register(stream, selectors.EVENT_READ)
    try:
        if not selector.select(timeout):
            return None
        return stream.readline() or None
    finally:
        selector.close()


class CephServer:
    """A ckpt-server on the test pool; its log is kept in `log_path`."""

    def __init__(self, name, args, log_dir):
        self.name = name
        self.args = list(args)
        self.log_path = pathlib.Path(log_dir) / f"server-{name}.log"
        self.process = None
        self.address = None

    @property
    def pid(self):
        return self.process.pid

    def start(self, timeout=60):
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(
                [_server_binary(), "--listen", "127.0.0.1:0", *self.args],
                stdout=subprocess.PIPE, stderr=log, text=True)
        line = read_line(self.process.stdout, timeout)
        prefix = "ckpt-server listening on "
        if line is None or not line.startswith(prefix):
            self.kill()
            pytest.fail(f"server {self.name} did not start: {line!r}\n"
                        f"{self.log()[-3000:]}")
        self.address = line[len(prefix):].strip()
        return self

    def log(self):
        return self.log_path.read_text(errors="replace")

    def kill(self):
        """SIGKILL by PID, as a crash (also ends a stopped process)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process.stdout.close()

    def stop(self):
        """SIGTERM (resuming it if a test left it stopped), SIGKILL after
        30 s."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            os.kill(self.process.pid, signal.SIGCONT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()


@pytest.fixture
def servers(ceph, tmp_path):
    """start(name, **flag_overrides) -> a started CephServer on the pool;
    every server is stopped by PID after the test."""
    started = []

    def start(name, **overrides):
        server = CephServer(name, ceph_flags(ceph, **overrides), tmp_path)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


def client_of(server):
    return ckpt.Client(server.address, connect_timeout=10.0)


def committed_steps(server, job):
    try:
        return [c["step"] for c in client_of(server).list_checkpoints(job)]
    except KeyError:
        return []


def all_steps(server, job):
    """{step: committed?} of every checkpoint the server lists."""
    try:
        listed = client_of(server).list_checkpoints(
            job, include_uncommitted=True)
    except KeyError:
        return {}
    committed = set(committed_steps(server, job))
    return {c["step"]: c["step"] in committed for c in listed}


# --- RADOS, read directly ------------------------------------------------

class Pool:
    """A librados connection (python3-rados, shipped with ceph-common) to
    the test pool, to watch what the servers store."""

    def __init__(self, ceph):
        import rados
        self._rados = rados
        self.ceph = ceph
        self.cluster = rados.Rados(conffile=ceph["conf"],
                                   name=f"client.{ceph['user']}",
                                   conf={"keyring": ceph["keyring"]})
        self.cluster.connect(timeout=15)
        self.io = self.cluster.open_ioctx(ceph["pool"])

    def close(self):
        self.io.close()
        self.cluster.shutdown()

    def object_count(self):
        self.io.set_namespace(self._rados.LIBRADOS_ALL_NSPACES)
        return sum(1 for _ in self.io.list_objects())

    def lockers(self, oid, lock, namespace=META_NAMESPACE):
        """The live holders of cls_lock `lock` on `oid`: [{"name":
        "client.N", "cookie", "expiration", "addr"}]."""
        result = subprocess.run(
            ["rados", "-c", self.ceph["conf"], "--id", self.ceph["user"],
             "--keyring", self.ceph["keyring"], "-p", self.ceph["pool"],
             "--namespace", namespace, "lock", "info", oid, lock,
             "--format", "json"],
            capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            if "No such file or directory" in result.stderr:
                return []
            pytest.fail(f"rados lock info {oid} {lock}: {result.stderr}")
        return json.loads(result.stdout)["lockers"]


@pytest.fixture
def pool(ceph):
    connection = Pool(ceph)
    yield connection
    connection.close()


# --- tensors -------------------------------------------------------------

def global_tensors(seed, width=1024):
    """The job's global tensors for `seed`: several dtypes and shapes, each
    row-sharded over the ranks."""
    generator = torch.Generator().manual_seed(seed)
    return {
        "w": torch.randn(ROWS, width, generator=generator),
        "emb": torch.randn(ROWS, 64, generator=generator).to(torch.float16),
        "scale": torch.rand(ROWS, 8, generator=generator).to(torch.bfloat16),
        "ids": torch.randint(-2**40, 2**40, (ROWS, 3), generator=generator,
                             dtype=torch.int64),
        "bias": torch.randn(ROWS, generator=generator).double(),
    }


def rows_of(rank, world, rows=ROWS):
    per = -(-rows // world)
    start = min(rank * per, rows)
    return start, min(start + per, rows)


def shard_of(tensor, rank, world, empty=False):
    start, end = rows_of(rank, world, tensor.shape[0])
    local = tensor[start:end].clone()
    if empty:
        local = torch.zeros_like(local)
    return ckpt.Shard(local, tuple(tensor.shape),
                      (start,) + (0,) * (tensor.dim() - 1))


def own_tensor(step, rank):
    """A per-rank (not sharded) tensor: rank r's own optimizer counters."""
    return torch.arange(17, dtype=torch.int32) * (step + 1) + 1000 * rank


def rank_state(tensors, step, rank, world):
    return {"model": {name: shard_of(value, rank, world)
                      for name, value in tensors.items()},
            "own": own_tensor(step, rank), "step": step}


def assert_same(got, want, what):
    """dtype, shape and every byte."""
    assert isinstance(got, torch.Tensor), (what, type(got))
    assert got.dtype == want.dtype, (what, got.dtype, want.dtype)
    assert tuple(got.shape) == tuple(want.shape), (what, got.shape,
                                                   want.shape)
    assert torch.equal(got.contiguous().view(torch.uint8),
                       want.contiguous().view(torch.uint8)), what


def check_restore(server, job, step, tensors, worlds=(2, 1, 3)):
    """Restores `step` through `server` with every world size in `worlds`
    and checks every tensor byte for byte: the saved layout (2 ranks) gets
    each rank's own tensor and the whole sharded tensors; 1 rank gets the
    whole sharded tensors; 3 and 4 ranks read their own row blocks in
    place."""
    for world in worlds:
        for rank in range(world):
            with ckpt.CheckpointManager(server.address, job, rank=rank,
                                        world_size=world) as manager:
                what = f"{job}@{step} via {server.name}, rank {rank}/{world}"
                if world == 2:
                    restored = manager.restore(step)
                    assert restored["step"] == step, what
                    assert_same(restored["own"], own_tensor(step, rank),
                                f"{what}: own")
                    for name, want in tensors.items():
                        assert_same(restored["model"][name], want,
                                    f"{what}: {name}")
                elif world == 1:
                    restored = manager.restore(step, keys=["model"])
                    assert sorted(restored["model"]) == sorted(tensors), what
                    for name, want in tensors.items():
                        assert_same(restored["model"][name], want,
                                    f"{what}: {name}")
                else:
                    targets = {"model": {
                        name: shard_of(value, rank, world, empty=True)
                        for name, value in tensors.items()}}
                    manager.restore(step, into=targets, keys=["model"])
                    for name, value in tensors.items():
                        start, end = rows_of(rank, world, value.shape[0])
                        assert_same(targets["model"][name].tensor,
                                    value[start:end], f"{what}: {name}")


def save_both(managers, tensors, step):
    """Both ranks save `step` at once, each through its own server."""
    errors = []

    def save(rank):
        try:
            assert managers[rank].save(
                rank_state(tensors, step, rank, len(managers)), step)
        except BaseException as error:  # noqa: BLE001 (re-raised below)
            errors.append((rank, error))

    threads = [threading.Thread(target=save, args=(rank,))
               for rank in range(len(managers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors


# --- 1. two ranks, two servers, a third restores --------------------------

def test_two_ranks_through_two_servers_commit_atomically_and_a_third_restores(
        servers):
    a, b, c = servers("A"), servers("B"), servers("C")
    job = "scale/two-servers"
    rank0 = ckpt.CheckpointManager(a.address, job, rank=0, world_size=2)
    rank1 = ckpt.CheckpointManager(b.address, job, rank=1, world_size=2)
    saved = {}
    try:
        # One rank after the other: while only rank 0 has committed its
        # shard (through A), every server sees the step pending, none
        # committed.
        for step in (10, 20, 30):
            tensors = global_tensors(step)
            assert rank0.save(rank_state(tensors, step, 0, 2), step)
            for server in (a, b, c):
                assert all_steps(server, job).get(step) is False, (
                    server.name, step, all_steps(server, job))
                assert client_of(server).latest_step(job) != step
            assert rank1.save(rank_state(tensors, step, 1, 2), step)
            saved[step] = tensors
            for server in (a, b, c):
                assert committed_steps(server, job) == sorted(saved), (
                    server.name, committed_steps(server, job))
        # Both ranks at once, through their two servers.
        for step in (40, 50):
            saved[step] = global_tensors(step)
            save_both([rank0, rank1], saved[step], step)
        for server in (a, b, c):
            assert all_steps(server, job) == {s: True for s in saved}
        records = client_of(c).list_checkpoints(job)
        assert [r["world_size"] for r in records] == [2] * len(saved)
    finally:
        rank0.close()
        rank1.close()
    # C never took part in a save: what it restores comes from the pool.
    for step, tensors in saved.items():
        check_restore(c, job, step, tensors, worlds=(2, 1, 3, 4))


# --- 2. kill -9 in the middle of a save -----------------------------------

def test_kill_9_of_a_server_mid_save_loses_no_acknowledged_checkpoint(
        servers, pool):
    a, b, c = servers("A"), servers("B"), servers("C")
    job = "scale/kill-mid-save"
    rank0 = ckpt.CheckpointManager(a.address, job, rank=0, world_size=2)
    rank1 = ckpt.CheckpointManager(b.address, job, rank=1, world_size=2)
    acknowledged = {}
    for step in (1, 2):
        tensors = global_tensors(step)
        save_both([rank0, rank1], tensors, step)
        acknowledged[step] = tensors
    # Step 3 carries a big tensor: 192 MiB, 48 chunks, per rank. Rank 1
    # has saved its shard through B; rank 0 is uploading through A when A
    # is killed.
    step = 3
    tensors = dict(global_tensors(step), big=torch.randn(
        2 * 96, 1 << 19, generator=torch.Generator().manual_seed(3)))
    assert rank1.save(rank_state(tensors, step, 1, 2), step)
    objects_before = pool.object_count()
    outcome = {}

    def save_rank0():
        try:
            outcome["result"] = rank0.save(rank_state(tensors, step, 0, 2),
                                           step)
        except BaseException as error:  # noqa: BLE001 (checked below)
            outcome["error"] = error

    uploader = threading.Thread(target=save_rank0)
    uploader.start()
    # Kill once a few of rank 0's 48 new chunks are in the pool.
    deadline = time.monotonic() + 120
    while pool.object_count() < objects_before + 4:
        assert uploader.is_alive(), ("rank 0's save ended before the kill",
                                     outcome)
        assert time.monotonic() < deadline, "rank 0's upload never started"
        time.sleep(0.01)
    a.kill()
    # A is dead: the pool holds what it had written, not all 48 chunks, so
    # rank 0's shard cannot have been committed.
    assert pool.object_count() < objects_before + 48, \
        "the kill came after the upload"
    uploader.join(timeout=180)
    assert not uploader.is_alive(), "rank 0's save hangs on a dead server"
    assert "error" in outcome, ("the save through the killed server "
                                "completed", outcome)
    rank0.close()

    # Nothing acknowledged is lost, nothing partial is committed, from B
    # and from C alike.
    for server in (b, c):
        assert all_steps(server, job) == {1: True, 2: True, 3: False}, (
            server.name, all_steps(server, job))
    for acknowledged_step, acknowledged_tensors in acknowledged.items():
        check_restore(b, job, acknowledged_step, acknowledged_tensors,
                      worlds=(2, 1))

    # The job finishes through B: rank 0, restarted, saves step 3 again.
    with ckpt.CheckpointManager(b.address, job, rank=0,
                                world_size=2) as restarted:
        assert restarted.latest_step == 2
        assert restarted.save(rank_state(tensors, step, 0, 2), step)
    rank1.close()
    for server in (b, c):
        assert all_steps(server, job) == {1: True, 2: True, 3: True}
    check_restore(c, job, step, tensors, worlds=(2, 1))
    report = run_ckpt(b, "verify", "--read-data", job)
    assert report["ok"] and report["checkpoints_checked"] == 3, report


def kill_while_holding(server, pool, oid, lock, deadline_seconds=90):
    """Stops `server` (SIGSTOP) at random moments until it is caught
    holding cls_lock `lock` on `oid`, then kills it (SIGKILL). Returns the
    holder seen and the monotonic time of the kill."""
    deadline = time.monotonic() + deadline_seconds
    attempts = 0
    while time.monotonic() < deadline:
        time.sleep(random.uniform(0, 0.05))
        attempts += 1
        os.kill(server.pid, signal.SIGSTOP)
        holders = pool.lockers(oid, lock)
        if holders:
            server.kill()
            return holders, time.monotonic()
        os.kill(server.pid, signal.SIGCONT)
    pytest.fail(f"server {server.name} was never caught holding {lock} on "
                f"{oid} ({attempts} tries in {deadline_seconds} s)")


def test_a_server_killed_holding_a_job_lock_blocks_others_about_a_lease(
        servers, pool):
    a, b = servers("A"), servers("B")
    job = "scale/killed-lock-holder"
    stop = threading.Event()
    failures = []

    def hammer():
        # Small saves through A, each a job change under the job's lock
        # (begin, commit, retention) until A dies.
        with ckpt.CheckpointManager(a.address, job, max_to_keep=3) as writer:
            step = 0
            while not stop.is_set():
                step += 1
                try:
                    writer.save({"x": torch.full((64,), float(step))}, step)
                except Exception as error:  # noqa: BLE001 (A was killed)
                    failures.append(error)
                    return

    writer = threading.Thread(target=hammer)
    writer.start()
    try:
        deadline = time.monotonic() + 60
        while not committed_steps(b, job):
            assert time.monotonic() < deadline, "no save through A"
            time.sleep(0.05)
        holders, killed_at = kill_while_holding(a, pool, f"job/{job}",
                                                JOB_LOCK)
        # B changes the job: it waits for the dead holder's lease at most.
        latest = client_of(b).latest_step(job)
        with ckpt.CheckpointManager(b.address, job) as other:
            assert other.save({"x": torch.zeros(64)}, latest + 1000)
        waited = time.monotonic() - killed_at
    finally:
        stop.set()
        writer.join(timeout=120)
    assert failures, "A's writer did not notice A's death"
    assert latest + 1000 in committed_steps(b, job)
    # The lease runs from A's lock request, before the kill; B's retries
    # are jittered. Far below the 15 s default lease.
    assert waited < LEASE_SECONDS + 3, (waited, holders)
    print(f"job lock held by killed {holders[0]['name']}: B's save took "
          f"{waited:.2f} s after the kill (lease {LEASE_SECONDS} s)")


def test_a_server_killed_mid_collection_blocks_other_collections_a_lease(
        servers, pool):
    a, b = servers("A"), servers("B")
    job = "scale/killed-collector"
    with ckpt.CheckpointManager(a.address, job) as writer:
        for step in range(1, 4):
            writer.save(rank_state(global_tensors(100 + step), step, 0, 1),
                        step)
    stop = threading.Event()

    def collect_on_a():
        while not stop.is_set():
            result = run_ckpt_raw(a, "gc", "--hold-seconds", "0")
            if result.returncode != 0 and a.process.poll() is not None:
                return

    collector = threading.Thread(target=collect_on_a)
    collector.start()
    try:
        holders, killed_at = kill_while_holding(a, pool, COLLECTION_OBJECT,
                                                COLLECTION_LOCK)
    finally:
        stop.set()
        collector.join(timeout=120)
    # B's collection is refused naming the dead holder until its lease
    # ends, then runs.
    refusals = []
    while True:
        result = run_ckpt_raw(b, "gc", "--hold-seconds", "0")
        if result.returncode == 0:
            break
        error = json.loads(result.stderr.strip().splitlines()[-1])
        assert error["code"] == "FAILED_PRECONDITION", error
        refusals.append(error["message"])
        assert time.monotonic() - killed_at < LEASE_SECONDS + 5, refusals
        time.sleep(0.1)
    waited = time.monotonic() - killed_at
    report = json.loads(result.stdout)
    assert report["chunks_scanned"] > 0, report
    # Within the lease B asks at once: it is refused, naming the holder.
    assert refusals, "B collected while the killed holder's lease ran"
    assert holders[0]["name"] in refusals[0], (refusals, holders)
    assert waited < LEASE_SECONDS + 3, (waited, refusals)
    print(f"collection lock held by killed {holders[0]['name']}: "
          f"{len(refusals)} refusal(s), B collected {waited:.2f} s after "
          f"the kill (lease {LEASE_SECONDS} s)")


# --- 3. two collectors racing two writers ---------------------------------

def ckpt_binary():
    return os.path.join(os.environ["CKPT_BUILD_DIR"], "client", "ckpt")


def run_ckpt_raw(server, *args, timeout=300):
    return subprocess.run(
        [ckpt_binary(), "--server", server.address, "--json", *args],
        capture_output=True, text=True, timeout=timeout)


def run_ckpt(server, *args):
    """`ckpt --json ARGS` against `server`: its JSON report (exit 0)."""
    result = run_ckpt_raw(server, *args)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return json.loads(result.stdout)


def gc_intervals(server):
    """(start, end) in seconds of every collection `server` finished,
    from its gc_finished log lines (ts is the end, millis the length)."""
    intervals = []
    for line in server.log().splitlines():
        if "event=gc_finished" not in line:
            continue
        stamp = re.search(r"ts=(\S+)", line).group(1)
        millis = int(re.search(r"\bmillis=(\d+)", line).group(1))
        end = calendar.timegm(time.strptime(stamp[:19],
                                            "%Y-%m-%dT%H:%M:%S")) \
            + float("0" + stamp[19:-1])
        intervals.append((end - millis / 1000, end))
    return intervals


def gc_content(step):
    """The global tensors saved at `step`: a tensor that never
    changes (its chunks always referenced), one that cycles through 3
    versions (a pruned checkpoint's chunks come back 3 steps later, as the
    collectors may be deleting them) and a fresh one (garbage 2 commits
    later)."""
    generator = torch.Generator().manual_seed(7)
    constant = torch.randn(2 * 32, 32768, generator=generator)
    cycling = torch.randn(2 * 32, 32768, generator=torch.Generator()
                          .manual_seed(100 + step % 3))
    fresh = torch.randn(2 * 32, 32768, generator=torch.Generator()
                        .manual_seed(1000 + step))
    return {"constant": constant, "cycling": cycling, "fresh": fresh}


def test_two_collectors_and_two_writers_at_once_lose_nothing(servers):
    a, b = servers("A"), servers("B")
    job = "scale/gc-race"
    steps = 18
    barrier = threading.Barrier(2, timeout=300)
    save_errors = []
    saving = threading.Event()
    saving.set()

    def write(rank, server):
        with ckpt.CheckpointManager(server.address, job, rank=rank,
                                    world_size=2, max_to_keep=2) as manager:
            try:
                for step in range(1, steps + 1):
                    state = {name: shard_of(value, rank, 2) for name, value
                             in gc_content(step).items()}
                    assert manager.save(state, step)
                    barrier.wait()
            except BaseException as error:  # noqa: BLE001 (asserted below)
                save_errors.append((rank, step, error))
                barrier.abort()

    runs = {"A": [], "B": []}

    def collect(server):
        while saving.is_set():
            started = time.monotonic()
            result = run_ckpt_raw(server, "gc", "--hold-seconds", "0")
            runs[server.name].append((started, time.monotonic(), result))

    writers = [threading.Thread(target=write, args=(rank, server))
               for rank, server in ((0, a), (1, b))]
    collectors = [threading.Thread(target=collect, args=(server,))
                  for server in (a, b)]
    for thread in writers + collectors:
        thread.start()
    for thread in writers:
        thread.join(timeout=600)
    saving.clear()
    for thread in collectors:
        thread.join(timeout=600)
    assert not save_errors, save_errors

    # Once the hold has passed, one more collection takes what is left.
    time.sleep(MIN_HOLD_SECONDS + 1)
    final = run_ckpt(a, "gc", "--hold-seconds", "0")
    reports, refusals = [final], []
    for name, results in runs.items():
        for _, _, result in results:
            if result.returncode == 0:
                reports.append(json.loads(result.stdout))
                continue
            error = json.loads(result.stderr.strip().splitlines()[-1])
            # The one refusal allowed: another server is collecting.
            assert error["code"] == "FAILED_PRECONDITION", (name, error)
            assert re.search(r"client\.\d+", error["message"]), error
            refusals.append(error["message"])
    deleted = sum(report["chunks_deleted"] for report in reports)
    assert deleted > 0, reports
    assert all(not report.get("damaged") for report in reports), reports
    assert refusals, "the two collectors never met"
    # Never two at once: the collections each server logged do not
    # overlap (the logs' clock is the same host's; 50 ms for rounding).
    for start_a, end_a in gc_intervals(a):
        for start_b, end_b in gc_intervals(b):
            overlap = min(end_a, end_b) - max(start_a, start_b)
            assert overlap < 0.05, ((start_a, end_a), (start_b, end_b))

    # What max_to_keep kept is whole, from either server.
    assert committed_steps(a, job) == [steps - 1, steps]
    for step in (steps - 1, steps):
        content = gc_content(step)
        with ckpt.CheckpointManager(b.address, job, rank=0,
                                    world_size=1) as reader:
            restored = reader.restore(step)
        for name, want in content.items():
            assert_same(restored[name], want, f"{job}@{step}: {name}")
    for server in (a, b):
        report = run_ckpt(server, "verify", "--read-data")
        assert report["ok"], report
        assert report["damaged_chunk_count"] == 0, report
    print(f"{len(reports)} collections deleted {deleted} chunks; "
          f"{len(refusals)} refused while the other server collected; "
          f"A ran {len(runs['A'])}, B {len(runs['B'])}")


# --- 4. careless and hostile configurations -------------------------------

def start_failure(ceph, tmp_path, timeout, extra=(), **overrides):
    """Runs ckpt-server with `overrides` of the Ceph flags and returns
    (exit code, seconds, log); fails the test when it serves or does not
    exit within `timeout` seconds."""
    argv = [_server_binary(), "--listen", "127.0.0.1:0",
            *ceph_flags(ceph, **overrides), *extra]
    started = time.monotonic()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"ckpt-server hung {timeout} s: {argv}\n{out}\n{err}")
    seconds = time.monotonic() - started
    assert "listening" not in out, (argv, out, err)
    assert process.returncode != 0, (argv, out, err)
    return process.returncode, seconds, err


def dead_mon_conf(ceph, tmp_path):
    """The test conf with its monitor moved to a port nobody listens on."""
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    text = re.sub(r"v2:127\.0\.0\.1:\d+", f"v2:127.0.0.1:{port}",
                  pathlib.Path(ceph["conf"]).read_text())
    path = tmp_path / "dead-mon.conf"
    path.write_text(text)
    return str(path)


def add_user(ceph, tmp_path, name, osd_caps):
    keyring = tmp_path / f"ceph.client.{name}.keyring"
    subprocess.run(
        ["ceph", "-c", ceph["conf"], "--id", ceph["user"], "--keyring",
         ceph["keyring"], "auth", "get-or-create", f"client.{name}", "mon",
         "allow r", "osd", osd_caps, "-o", str(keyring)],
        check=True, capture_output=True, timeout=60)
    return str(keyring)


def test_an_empty_pool_name_is_refused(ceph, tmp_path):
    _, seconds, err = start_failure(ceph, tmp_path, 30, chunk_store="rados:")
    assert "pool" in err.lower() and "chunk" in err, err
    assert seconds < 10, seconds


def test_a_missing_pool_is_refused_by_name(ceph, tmp_path):
    _, seconds, err = start_failure(ceph, tmp_path, 60,
                                    chunk_store="rados:nosuchpool")
    assert "nosuchpool" in err, err
    assert re.search(r"No such file|does not exist|not found", err), err
    assert seconds < 20, seconds


def test_a_missing_ceph_conf_is_refused_by_name(ceph, tmp_path):
    missing = str(tmp_path / "no-such-ceph.conf")
    _, seconds, err = start_failure(ceph, tmp_path, 30, ceph_conf=missing)
    assert missing in err, err
    assert seconds < 10, seconds


def test_a_ceph_conf_naming_no_live_monitor_fails_instead_of_hanging(
        ceph, tmp_path):
    conf = dead_mon_conf(ceph, tmp_path)
    _, seconds, err = start_failure(ceph, tmp_path, 90, ceph_conf=conf)
    assert conf in err and "monitor" in err, err
    print(f"no monitor: exit after {seconds:.1f} s")


def test_rados_without_ceph_conf_is_refused(ceph, tmp_path):
    _, seconds, err = start_failure(ceph, tmp_path, 30, ceph_conf=None)
    assert "--ceph-conf" in err, err
    assert seconds < 10, seconds


def test_a_cephx_user_without_rights_on_the_pool_is_refused(ceph, tmp_path):
    keyring = add_user(ceph, tmp_path, "ckpt-norights",
                       "allow rwx pool=some-other-pool")
    _, seconds, err = start_failure(ceph, tmp_path, 60,
                                    ceph_user="ckpt-norights",
                                    ceph_keyring=keyring)
    assert "client.ckpt-norights" in err and ceph["pool"] in err, err
    assert "Operation not permitted" in err or "ermission" in err, err
    assert seconds < 30, seconds


def test_a_user_the_cluster_does_not_know_is_refused(ceph, tmp_path):
    # A keyring of its own for a name the cluster never created.
    keyring = tmp_path / "stranger.keyring"
    subprocess.run(["ceph-authtool", "--create-keyring", str(keyring),
                    "--gen-key", "-n", "client.stranger"], check=True,
                   capture_output=True, timeout=30)
    _, seconds, err = start_failure(ceph, tmp_path, 60,
                                    ceph_user="stranger",
                                    ceph_keyring=str(keyring))
    assert "client.stranger" in err, err
    assert seconds < 30, seconds


def test_a_hold_shorter_than_two_leases_is_refused(ceph, tmp_path):
    _, seconds, err = start_failure(ceph, tmp_path, 30,
                                    rados_lock_lease_seconds="10",
                                    rados_min_hold_seconds="19")
    assert "--rados-min-hold-seconds" in err, err
    assert seconds < 10, seconds


# --- 5. deploy/ceph, as written --------------------------------------------

DEPLOY_CEPH = pathlib.Path(__file__).resolve().parents[2] / "deploy" / "ceph"


def readme_commands():
    """The ```sh block of deploy/ceph/README.md's "The pool and the user"."""
    text = (DEPLOY_CEPH / "README.md").read_text()
    section = text.split("## The pool and the user", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "deploy/ceph/README.md lost its commands"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_the_deploy_example_runs_three_servers_on_one_pool(ceph, tmp_path):
    # The README's commands, on a pool and user of their own (the test
    # cluster's pool is also called ckpt).
    pool, user = "deploy-example", "deploy-example"
    keyring = tmp_path / f"ceph.client.{user}.keyring"
    for line in readme_commands():
        line = (line.replace("pool=ckpt", f"pool={pool}")
                .replace("create ckpt", f"create {pool}")
                .replace("enable ckpt", f"enable {pool}")
                .replace("client.ckpt", f"client.{user}")
                .replace(f"-o ceph.client.{user}.keyring", f"-o {keyring}"))
        argv = shlex.split(line)
        assert argv[0] == "ceph", line
        result = subprocess.run(
            ["ceph", "-c", ceph["conf"], "--id", ceph["user"], "--keyring",
             ceph["keyring"], *argv[1:]], capture_output=True, text=True,
            timeout=120)
        assert result.returncode == 0, (line, result.stderr)
    assert keyring.exists()

    # The example config, with this cluster's conf and the new keyring, on
    # loopback without tokens (the token file and metrics port are the
    # host's business); its pool and user renamed as above.
    config = (DEPLOY_CEPH / "ckpt-server-ceph.yaml").read_text()
    replacements = {
        r"(?m)^chunk_store: rados:ckpt$": f"chunk_store: rados:{pool}",
        r"(?m)^ceph_conf: .*$": f"ceph_conf: {ceph['conf']}",
        r"(?m)^ceph_user: ckpt$": f"ceph_user: {user}",
        r"(?m)^ceph_keyring: .*$": f"ceph_keyring: {keyring}",
        r"(?m)^listen: .*$": "listen: 127.0.0.1:0",
        r"(?m)^(auth_tokens|metrics_listen): .*$": "",
    }
    for pattern, replacement in replacements.items():
        config, count = re.subn(pattern, replacement, config)
        assert count == 1, pattern
    path = tmp_path / "ckpt-server-ceph.yaml"
    path.write_text(config)
    trio = []
    for name in ("1", "2", "3"):
        server = CephServer(name, ["--config", str(path)], tmp_path)
        trio.append(server)
    try:
        for server in trio:
            server.start()
        one, two, three = trio
        job = "deploy/example"
        tensors = global_tensors(77)
        managers = [ckpt.CheckpointManager(s.address, job, rank=r,
                                           world_size=2)
                    for r, s in ((0, one), (1, two))]
        try:
            save_both(managers, tensors, 5)
        finally:
            for manager in managers:
                manager.close()
        check_restore(three, job, 5, tensors, worlds=(2, 1))
    finally:
        for server in trio:
            server.stop()
    # The example's objects went to the example's pool, none to the test's.
    listing = subprocess.run(
        ["rados", "-c", ceph["conf"], "--id", ceph["user"], "--keyring",
         ceph["keyring"], "-p", pool, "ls", "--all"],
        capture_output=True, text=True, timeout=60, check=True).stdout
    assert listing.strip(), "nothing stored in the example's pool"
