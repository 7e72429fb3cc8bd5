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

ctest runs this file under tests/ceph/ceph_cluster.py --run (one throwaway
cluster for the file). The locks are short here (--rados-lock-lease-seconds
2, --rados-min-hold-seconds 4) so that expiries and deletions happen within
the test. Helpers and fixtures: ceph_servers.py."""

import calendar
import json
import os
import random
import re
import signal
import threading
import time

import pytest
import torch

import ckpt
from ceph_servers import (COLLECTION_LOCK, COLLECTION_OBJECT, JOB_LOCK,
                          LEASE_SECONDS, MIN_HOLD_SECONDS, all_steps,
                          assert_same, check_restore, client_of,
                          committed_steps, global_tensors, rank_state,
                          run_ckpt, run_ckpt_raw, save_both, shard_of)

# The fixtures ceph, servers and pool.
pytest_plugins = ["ceph_servers"]


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
    stored = pool.object_count() - objects_before
    assert stored < 48, "the kill came after the upload"
    uploader.join(timeout=180)
    assert not uploader.is_alive(), "rank 0's save hangs on a dead server"
    assert "error" in outcome, ("the save through the killed server "
                                "completed", outcome)
    print(f"A killed with {stored} of rank 0's 48 chunks stored; the save "
          f"failed with {outcome['error']}")
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


class Hammer:
    """Small saves of `job` through `server` on a thread, step 1, 2, ...
    (each a job change under the job's lock: begin, commit, retention),
    until stop(); `acknowledged` the steps saved, `refused` (step, error)
    the others. wait_for(n): until n more steps are acknowledged."""

    def __init__(self, server, job, **manager_args):
        self.acknowledged, self.refused = [], []
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(server.address, job, manager_args))
        self._thread.start()

    def _run(self, address, job, manager_args):
        with ckpt.CheckpointManager(address, job, **manager_args) as writer:
            step = 0
            while not self._stop.is_set():
                step += 1
                try:
                    writer.save({"x": torch.full((64,), float(step))}, step)
                    self.acknowledged.append(step)
                except Exception as error:  # noqa: BLE001 (counted)
                    self.refused.append((step, str(error)))
                    time.sleep(0.05)  # a dead server refuses at once

    def wait_for(self, more, timeout=60):
        target = len(self.acknowledged) + more
        deadline = time.monotonic() + timeout
        while len(self.acknowledged) < target:
            assert time.monotonic() < deadline, ("saves stopped",
                                                 self.refused[-3:])
            time.sleep(0.05)

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=120)


def stop_while_holding(server, pool, oid, lock, deadline_seconds=90):
    """Stops `server` (SIGSTOP) at random moments until it is caught
    holding cls_lock `lock` on `oid`, and leaves it stopped. Returns the
    holders seen and the monotonic time they were."""
    deadline = time.monotonic() + deadline_seconds
    attempts = 0
    while time.monotonic() < deadline:
        time.sleep(random.uniform(0, 0.05))
        attempts += 1
        os.kill(server.pid, signal.SIGSTOP)
        holders = pool.lockers(oid, lock)
        if holders:
            return holders, time.monotonic()
        os.kill(server.pid, signal.SIGCONT)
    pytest.fail(f"server {server.name} was never caught holding {lock} on "
                f"{oid} ({attempts} tries in {deadline_seconds} s)")


def kill_while_holding(server, pool, oid, lock):
    """stop_while_holding, then SIGKILL: (holders, time of the kill)."""
    holders, _ = stop_while_holding(server, pool, oid, lock)
    server.kill()
    return holders, time.monotonic()


def test_a_lock_holder_stalled_past_its_lease_cannot_overwrite_the_next(
        servers, pool):
    """Fencing: A stops while it changes a job (holding its lock) for
    longer than the lease; B takes the lock and commits; A resumes. A's
    late write must be refused, so B's checkpoint and every checkpoint a
    client was told is saved stay committed and whole."""
    a, b = servers("A"), servers("B")
    job = "scale/stalled-holder"
    hammer = Hammer(a, job)
    try:
        hammer.wait_for(3)
        holders, stopped_at = stop_while_holding(a, pool, f"job/{job}",
                                                 JOB_LOCK)
        with ckpt.CheckpointManager(b.address, job) as other:
            assert other.save({"x": torch.full((64,), -1.0)}, 100000)
        taken_over = time.monotonic() - stopped_at
        time.sleep(0.5)  # B's lock released; A's lease long over
        os.kill(a.pid, signal.SIGCONT)
        hammer.wait_for(3)  # A goes on saving
    finally:
        os.kill(a.pid, signal.SIGCONT)
        hammer.stop()
    acknowledged, refused = hammer.acknowledged, hammer.refused
    assert taken_over < LEASE_SECONDS + 3, (taken_over, holders)
    committed = committed_steps(b, job)
    assert 100000 in committed, committed
    assert set(acknowledged) <= set(committed), (acknowledged, committed)
    with ckpt.CheckpointManager(b.address, job) as reader:
        for step in committed:
            want = -1.0 if step == 100000 else float(step)
            assert_same(reader.restore(step)["x"],
                        torch.full((64,), want), f"{job}@{step}")
    print(f"A stalled holding the job lock: B committed "
          f"{taken_over:.2f} s later; A's saves refused after it resumed: "
          f"{refused[:2]}; {len(acknowledged)} acknowledged, all committed")


def test_a_server_killed_holding_a_job_lock_blocks_others_about_a_lease(
        servers, pool):
    a, b = servers("A"), servers("B")
    job = "scale/killed-lock-holder"
    hammer = Hammer(a, job, max_to_keep=3)
    try:
        hammer.wait_for(3)
        holders, killed_at = kill_while_holding(a, pool, f"job/{job}",
                                                JOB_LOCK)
        # B changes the job: it waits for the dead holder's lease at most.
        # Meanwhile B saves another job too, which must not wait at all.
        other_job = {}

        def save_other_job():
            with ckpt.CheckpointManager(b.address, "scale/bystander") as m:
                assert m.save({"y": torch.ones(8)}, 1)
            other_job["seconds"] = time.monotonic() - killed_at

        bystander = threading.Thread(target=save_other_job)
        bystander.start()
        latest = client_of(b).latest_step(job)
        with ckpt.CheckpointManager(b.address, job) as other:
            assert other.save({"x": torch.zeros(64)}, latest + 1000)
        waited = time.monotonic() - killed_at
        bystander.join(timeout=120)
    finally:
        hammer.stop()
    assert hammer.refused, "A's writer did not notice A's death"
    assert latest + 1000 in committed_steps(b, job)
    assert committed_steps(b, "scale/bystander") == [1]
    # The lease runs from A's lock request, before the kill; B's retries
    # are jittered. Far below the 15 s default lease.
    assert waited < LEASE_SECONDS + 3, (waited, holders)
    # Another job's changes never wait for this job's lock: the job lease
    # is taken before the server-wide mutex.
    assert other_job["seconds"] < waited - 0.5, (other_job, waited)
    print(f"job lock held by killed {holders[0]['name']}: B's save of the "
          f"job took {waited:.2f} s after the kill, of another job "
          f"{other_job['seconds']:.2f} s (lease {LEASE_SECONDS} s)")


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
            run_ckpt_raw(a, "gc", "--hold-seconds", "0")

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
    """The global tensors saved at `step` (4 MiB, one chunk, per rank
    each): one that never changes (always referenced), one that cycles
    through 3 versions (back while still held), one that comes back 10
    steps later (about when a collection may delete it: the race between
    a save finding a chunk present and a sweep deleting it), and a fresh
    one (garbage 2 commits later)."""
    def tensor(seed):
        return torch.randn(2 * 32, 32768,
                           generator=torch.Generator().manual_seed(seed))

    return {"constant": tensor(7), "cycling": tensor(100 + step % 3),
            "returning": tensor(200 + step % 10),
            "fresh": tensor(1000 + step)}


def test_two_collectors_and_two_writers_at_once_lose_nothing(servers):
    a, b = servers("A"), servers("B")
    job = "scale/gc-race"
    steps = 24
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

    def collect(name, server):
        while saving.is_set():
            started = time.monotonic()
            result = run_ckpt_raw(server, "gc", "--hold-seconds", "0")
            runs[name].append((started, time.monotonic(), result))

    writers = [threading.Thread(target=write, args=(rank, server))
               for rank, server in ((0, a), (1, b))]
    collectors = [threading.Thread(target=collect, args=(name, server))
                  for name, server in (("A", a), ("B", b))]
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
            # It names the holder, or says it let go as it was asked.
            assert re.search(r"locked by (client\.\d+|nobody now)",
                             error["message"]), error
            refusals.append(error["message"])
    deleted = sum(report["chunks_deleted"] for report in reports)
    assert deleted > 0, reports
    assert all(not report.get("damaged") for report in reports), reports
    assert any(re.search(r"client\.\d+", r) for r in refusals), \
        ("the two collectors never met", refusals)
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


def test_a_collector_stalled_past_its_lease_spares_what_a_save_uses(
        servers, pool):
    """A stops in the middle of a collection (holding the collection lock)
    whose garbage is a deleted checkpoint's 512 small chunks; while it is
    stopped, past its lease, B saves the same bytes again (finding the
    chunks A has not deleted yet present). Resumed, A's stale sweep must
    not delete what B's checkpoint now uses."""
    a, b = servers("A"), servers("B")
    job = "scale/stalled-collector"
    data = os.urandom(2 << 20)
    blob = [("blob", "uint8", [len(data)], [0], [len(data)], data)]
    through_a, through_b = client_of(a), client_of(b)
    through_a.save_shard(job, 1, blob, chunk_bytes=4096)  # 512 chunks
    through_a.save_shard(job, 2, [("k", "uint8", [4], [0], [4], b"keep")])
    through_a.delete_checkpoint(job, 1)
    time.sleep(MIN_HOLD_SECONDS + 1)  # unused for longer than the hold
    outcome = {}
    collector = threading.Thread(target=lambda: outcome.update(
        gc=run_ckpt_raw(a, "gc", "--hold-seconds", "0")))
    collector.start()
    try:
        stop_while_holding(a, pool, COLLECTION_OBJECT, COLLECTION_LOCK)
        time.sleep(LEASE_SECONDS + 0.5)  # A's collection lease is over
        through_b.save_shard(job, 3, blob, chunk_bytes=4096)
    finally:
        os.kill(a.pid, signal.SIGCONT)
        collector.join(timeout=120)
    gc = outcome["gc"]
    if gc.returncode == 0:
        report = json.loads(gc.stdout)
        assert not report.get("damaged"), report
        summary = (f"finished: {report['chunks_deleted']} deleted, "
                   f"{report['chunks_held']} held")
    else:  # it noticed the lost lease and stopped
        error = json.loads(gc.stderr.strip().splitlines()[-1])
        assert error["code"] == "UNAVAILABLE", error
        assert "garbage collection stopped" in error["message"], error
        summary = error["message"]
    # Step 3 is whole, now and after a collection once its hold has passed.
    for collect_again in (False, True):
        if collect_again:
            time.sleep(MIN_HOLD_SECONDS + 1)
            run_ckpt(b, "gc", "--hold-seconds", "0")
        report = run_ckpt(b, "verify", "--read-data", job)
        assert report["ok"] and report["checkpoints_checked"] == 2, report
        [(_, _, _, _, _, restored)] = through_b.restore_shard(job, 3)
        assert restored.tobytes() == data
    print(f"collector stalled past its lease: {summary}")
