"""Async save when the server dies during the upload: the error surfaces as
ckpt.Error, and after a restart on the same data no partial checkpoint is
visible. And a failure no call raised is printed at interpreter exit, with
exit status 1 (run in child interpreters).

Deterministic, not timing-lucky: the server is frozen (SIGSTOP) before
save() and killed (SIGKILL, by PID) once save() has returned, so the
background upload can never finish however fast it is. Where the upload is
when the kill lands (hashing, or requests sitting unread in the frozen
server's socket buffers) varies; that it cannot have committed does not."""

import functools
import os
import signal
import subprocess
import sys

import pytest
import torch

import ckpt

# Tens of MiB: enough that the upload is real work, small enough to be quick.
MIB = 1 << 20


@functools.lru_cache(maxsize=None)
def big_state(seed):
    """32 MiB of tensors; callers must not modify it."""
    generator = torch.Generator().manual_seed(seed)
    return {"model": {"w": torch.randn(16 * MIB // 4, generator=generator),
                      "b": torch.randn(1024, generator=generator)},
            "optimizer": {"exp_avg": torch.randn(
                16 * MIB // 4, generator=generator)},
            "step": seed}


def freeze(server_process):
    os.kill(server_process.pid, signal.SIGSTOP)


@pytest.mark.parametrize("surfaces_on", ["wait", "save", "close"])
def test_server_killed_during_async_upload_raises_and_leaves_no_checkpoint(
        server_process, surfaces_on):
    job = "t/async-kill"
    manager = ckpt.CheckpointManager(server_process.address, job,
                                     async_save=True)
    assert manager.save(big_state(1), 1)
    manager.wait()

    freeze(server_process)
    assert manager.save(big_state(2), 2)  # returns: the state is copied
    server_process.kill()  # the upload of step 2 is under way
    with pytest.raises(ckpt.Error) as error:
        if surfaces_on == "wait":
            manager.wait()
        elif surfaces_on == "save":
            manager.save(big_state(3), 3)
        else:
            manager.close()
    assert not isinstance(error.value, (KeyError, ValueError))
    assert error.value.code == "UNAVAILABLE", error.value
    manager.close()  # the error was raised once

    address = server_process.start()  # same data dir
    with ckpt.CheckpointManager(address, job) as restarted:
        assert restarted.latest_step == 1
        assert restarted.all_steps() == [1]
        restored = restarted.restore()
    assert torch.equal(restored["model"]["w"], big_state(1)["model"]["w"])


def test_rank_killed_mid_save_leaves_the_step_invisible_until_resaved(
        server_process):
    """Rank 0's shard is durable on the server, rank 1's async upload dies
    with the server: after the restart the step is still not visible (only
    a pending checkpoint), and rank 1 saving it again commits it."""
    job = "t/async-kill-ranks"
    rank0 = ckpt.CheckpointManager(server_process.address, job, rank=0,
                                   world_size=2)
    rank1 = ckpt.CheckpointManager(server_process.address, job, rank=1,
                                   world_size=2, async_save=True)
    assert rank0.save(big_state(10), 5)  # sync: durable before it returns

    freeze(server_process)
    assert rank1.save(big_state(11), 5)
    server_process.kill()
    with pytest.raises(ckpt.Error):
        rank1.wait()
    rank0.close()
    rank1.close()

    address = server_process.start()
    client = ckpt.Client(address, connect_timeout=10.0)
    assert client.latest_step(job) is None
    assert client.list_checkpoints(job) == []
    # The partial checkpoint is there, pending (rank 0's shard), unseen.
    assert [c["step"] for c in
            client.list_checkpoints(job, include_uncommitted=True)] == [5]

    with ckpt.CheckpointManager(address, job, rank=1, world_size=2,
                                async_save=True) as rank1:
        assert rank1.save(big_state(11), 5)
        rank1.wait()
        assert rank1.all_steps() == [5]
        assert torch.equal(rank1.restore(5)["optimizer"]["exp_avg"],
                           big_state(11)["optimizer"]["exp_avg"])
    with ckpt.CheckpointManager(address, job, rank=0,
                                world_size=2) as rank0:
        assert torch.equal(rank0.restore(5)["model"]["w"],
                           big_state(10)["model"]["w"])


# A script run in its own interpreter: a sync save of step 5, then an async
# save whose upload fails in the background, then whatever `ending` says.
EXIT_SCRIPT = """
import os, signal, sys
import torch
import ckpt
address, ending, server_pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
with ckpt.CheckpointManager(address, "t/exit") as manager:
    manager.save({"w": torch.ones(3)}, 5)
manager = ckpt.CheckpointManager(address, "t/exit", async_save=True)
if ending == "server-killed":
    os.kill(server_pid, signal.SIGSTOP)
    manager.save({"w": torch.zeros(4 << 20)}, 6)
    os.kill(server_pid, signal.SIGKILL)
elif ending == "succeeds":
    manager.save({"w": torch.zeros(3)}, 6)
else:
    manager.save({"w": torch.zeros(3)}, 5)  # step 5 exists: ALREADY_EXISTS
if ending == "wait-caught":
    try:
        manager.wait()
    except ckpt.Error as error:
        print("caught", error.code)
elif ending == "sys-exit-0":
    sys.exit(0)
elif ending == "exception":
    raise RuntimeError("the script's own error")
print("script ends")
"""


def run_exit_script(server_process, ending):
    child = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, server_process.address, ending,
         str(server_process.pid)], capture_output=True, text=True,
        timeout=120)
    return child.returncode, child.stdout, child.stderr


@pytest.mark.parametrize("ending", ["falls-off-the-end", "sys-exit-0",
                                    "server-killed"])
def test_an_unreported_async_failure_is_printed_at_exit_with_status_1(
        server_process, ending):
    """The script never calls wait() or close(): at interpreter exit the
    failure is printed to stderr and the exit status is 1."""
    status, stdout, stderr = run_exit_script(server_process, ending)
    assert status == 1, (stdout, stderr)
    assert "ckpt: the async save of step" in stderr, stderr
    assert "of job 't/exit' (rank 0) failed, and no wait(), close() or " \
        "later save() raised it: ckpt.Error: " in stderr, stderr
    code = "UNAVAILABLE" if ending == "server-killed" else "ALREADY_EXISTS"
    assert code in stderr, stderr
    assert "exiting with status 1" in stderr, stderr
    if ending != "sys-exit-0":
        assert stdout.endswith("script ends\n"), stdout  # stdout flushed


def test_an_unreported_failure_is_printed_after_the_scripts_own_error(
        server_process):
    status, _, stderr = run_exit_script(server_process, "exception")
    assert status == 1
    assert "RuntimeError: the script's own error" in stderr, stderr
    assert "ALREADY_EXISTS" in stderr.split("RuntimeError")[-1], stderr


def test_a_failure_raised_by_wait_is_not_reported_again(server_process):
    status, stdout, stderr = run_exit_script(server_process, "wait-caught")
    assert (status, stdout) == (0, "caught ALREADY_EXISTS\nscript ends\n")
    assert "ckpt:" not in stderr, stderr


def test_a_successful_async_save_without_close_commits_silently(
        server_process):
    status, stdout, stderr = run_exit_script(server_process, "succeeds")
    assert (status, stdout) == (0, "script ends\n"), stderr
    assert "ckpt:" not in stderr, stderr
    client = ckpt.Client(server_process.address, connect_timeout=10.0)
    assert [c["step"] for c in client.list_checkpoints("t/exit")] == [5, 6]
