"""Helpers for the tests of several ckpt-servers on one Ceph cluster
(test_ceph_*.py, issue 18): the cluster ceph_cluster.py --run started (the
`ceph` fixture), ckpt-servers on its pool started and stopped by PID
(`servers`), a librados connection to watch the pool (`pool`), the ckpt
CLI, and row-sharded torch state with a byte-for-byte restore check.

A test file gets the fixtures with pytest_plugins = ["ceph_servers"]."""

import json
import os
import pathlib
import selectors
import subprocess
import threading

import pytest
import torch

import ckpt
from conftest import ServerProcess, _server_binary

# Short, so that lock expiries and chunk deletions happen within a test.
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


class CephServer(ServerProcess):
    """A ckpt-server on the test pool (conftest's ServerProcess: kill() and
    stop() by PID), started with `args` and no data directory; its log is
    kept in `log_path`."""

    def __init__(self, name, args, log_dir):
        super().__init__(None, args)
        self.name = name
        self.log_path = pathlib.Path(log_dir) / f"server-{name}.log"

    def start(self, timeout=60):
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(
                [_server_binary(), "--listen", "127.0.0.1:0",
                 *self.extra_args],
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


# --- the ckpt CLI ----------------------------------------------------------

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
