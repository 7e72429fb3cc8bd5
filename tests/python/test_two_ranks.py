"""Two processes as rank 0 and rank 1 of one job, each saving and restoring
its own shard through ckpt.CheckpointManager."""

import subprocess
import sys

import ckpt

# argv: server job rank. Saves this rank's shard of step 7, prints "saved",
# then on a "restore" line from stdin restores its shard, checks it and
# prints "restored ok".
RANK_PROCESS = r"""
import sys
import torch
import ckpt

server, job, rank = sys.argv[1], sys.argv[2], int(sys.argv[3])


def shard():
    generator = torch.Generator().manual_seed(100 + rank)
    return {"weights": torch.randn(4 + rank, 3, generator=generator),
            "counts": torch.arange(5, dtype=torch.int64) * (rank + 1),
            "rank": rank, "note": f"shard of rank {rank}"}


manager = ckpt.CheckpointManager(server, job, rank=rank, world_size=2)
assert manager.save(shard(), 7)
print("saved", flush=True)
assert sys.stdin.readline().strip() == "restore"
restored = manager.restore(7)
expected = shard()
assert sorted(restored) == sorted(expected), restored.keys()
for key in ("weights", "counts"):
    assert restored[key].dtype == expected[key].dtype, key
    assert torch.equal(restored[key], expected[key]), key
assert restored["rank"] == rank and restored["note"] == expected["note"]
manager.close()
print("restored ok", flush=True)
"""


def start_rank(server, job, rank):
    process = subprocess.Popen(
        [sys.executable, "-c", RANK_PROCESS, server, job, str(rank)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "saved"
    return process


def finish(process):
    out, _ = process.communicate("restore\n", timeout=60)
    assert process.returncode == 0
    assert out.strip() == "restored ok"


def test_two_processes_save_and_restore_their_own_shards(server):
    client = ckpt.Client(server, connect_timeout=10.0)
    job = "t/two-ranks"
    rank0 = start_rank(server, job, 0)
    rank1 = None
    try:
        # Rank 0's shard alone does not commit the step.
        assert client.latest_step(job) is None
        assert [c["step"] for c in
                client.list_checkpoints(job, include_uncommitted=True)] == [7]
        rank1 = start_rank(server, job, 1)
        [checkpoint] = client.list_checkpoints(job)
        assert checkpoint["step"] == 7 and checkpoint["world_size"] == 2
        finish(rank0)
        finish(rank1)
    finally:
        for process in (rank0, rank1):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
