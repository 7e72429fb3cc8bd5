"""Worker processes of test_multiprocess_reshard.py: one rank of a
torch.distributed (gloo) job that saves or restores an FSDP-style sharded
model, its Adam moments, a row-sharded embedding table saved incrementally,
and per-rank data loader positions. Rank and world size come from
torch.distributed. The global tensors are functions of a seed, so every
process knows what each region must hold."""

import os

import torch
import torch.distributed as dist

import ckpt

PARAMS = {"fc.weight": (48, 20), "fc.bias": (50,), "proj.weight": (337,)}
EMBEDDING_SHAPE = (1000, 16)
CHANGED_ROWS = (3, 250, 251, 600, 999)  # rows changed between steps 10, 20


def global_tensors(version):
    """The job's global tensors at `version` (0: step 10, 1: step 20)."""
    generator = torch.Generator().manual_seed(1234)
    out = {}
    for name, shape in PARAMS.items():
        out[f"model/{name}"] = torch.randn(shape, generator=generator)
        out[f"optim/{name}/exp_avg"] = torch.randn(shape, generator=generator)
        out[f"optim/{name}/exp_avg_sq"] = torch.rand(
            shape, generator=generator).to(torch.bfloat16)
    embedding = torch.randn(EMBEDDING_SHAPE, generator=generator).to(
        torch.float16)
    if version >= 1:
        for row in CHANGED_ROWS:
            embedding[row] += 1.0
    out["embedding"] = embedding
    return out


def flat_range(numel, rank, world):
    """FSDP's split of a flat parameter: ceil-sized, the last rank short."""
    per = -(-numel // world)
    start = min(rank * per, numel)
    return start, min(start + per, numel)


def row_range(rows, rank, world):
    per = -(-rows // world)
    start = min(rank * per, rows)
    return start, min(start + per, rows)


def local_state(tensors, rank, world, empty=False):
    """This rank's state: ckpt.Shard values over its regions (zeros when
    `empty`, as restore targets)."""
    state = {"model": {}, "optim": {}}
    for name, value in tensors.items():
        if name == "embedding":
            start, end = row_range(value.shape[0], rank, world)
            local = value[start:end].clone()
            state["embedding"] = ckpt.Shard(
                torch.zeros_like(local) if empty else local,
                list(value.shape), [start, 0])
            continue
        flat = value.reshape(-1)
        start, end = flat_range(flat.numel(), rank, world)
        local = flat[start:end].clone()
        group, key = name.split("/", 1)
        state[group][key] = ckpt.Shard(
            torch.zeros_like(local) if empty else local, [flat.numel()],
            [start])
    return state


def init(address, rank, world, port):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)


def save_run(rank, address, job, world, port):
    """Steps 10 (full) and 20 (embedding rows changed: a row delta)."""
    init(address, rank, world, port)
    with ckpt.CheckpointManager(address, job, incremental=True) as manager:
        assert (manager.rank, manager.world_size) == (rank, world)
        for step, version in ((10, 0), (20, 1)):
            state = local_state(global_tensors(version), rank, world)
            state["optim"]["step"] = step
            state["loader"] = {"position": 1000 * step + rank}
            assert manager.save(state, step)
            dist.barrier()
        plan = {name: kind for name, kind, *_ in manager.last_plan}
        assert plan["embedding"] == "delta", manager.last_plan
    dist.destroy_process_group()


def restore_run(rank, address, job, world, port, saved_world):
    """Restores step 20 into this rank's regions of a `world`-rank layout,
    checks every region byte for byte, trains one step and saves it as
    step 100 + world."""
    init(address, rank, world, port)
    expected = global_tensors(1)
    with ckpt.CheckpointManager(address, job) as manager:
        targets = local_state(expected, rank, world, empty=True)
        targets["optim"]["step"] = 0
        targets["loader"] = {"position": -1}
        if world != saved_world:
            try:
                manager.restore(20, into=targets)
            except Exception as error:  # noqa: BLE001 (its text is checked)
                assert "loader" in str(error), error
            else:
                raise AssertionError("a resharded restore mapped per-rank "
                                     "loader positions silently")
        restored = manager.restore(20, into=targets,
                                   allow_partial_ranks=world != saved_world)
        report = manager.last_restore
        for name, value in expected.items():
            if name == "embedding":
                start, end = row_range(value.shape[0], rank, world)
                want = value[start:end]
                shard = targets["embedding"]
            else:
                start, end = flat_range(value.numel(), rank, world)
                want = value.reshape(-1)[start:end]
                group, key = name.split("/", 1)
                shard = targets[group][key]
            got = shard.tensor if isinstance(shard, ckpt.Shard) else shard
            assert got.dtype == want.dtype, name
            assert torch.equal(got.view(torch.uint8) if got.dtype ==
                               torch.bfloat16 else got, want.view(torch.uint8)
                               if want.dtype == torch.bfloat16 else want), name
        assert restored["optim"]["step"] == 20
        if rank < min(world, saved_world):
            assert restored["loader"]["position"] == 20000 + rank, restored
        else:  # a new rank has no position: absent, the target untouched
            assert "position" not in restored.get("loader", {}), restored
            assert targets["loader"]["position"] == -1
        if world != saved_world:  # every rank lists the same entries
            assert sorted(report["unmapped"]) == sorted(
                [(old, "loader/position") for old in range(world, saved_world)]
                + [(new, "loader/position")
                   for new in range(saved_world, world)]), report["unmapped"]
        # A rank fetches only what overlaps its regions: within one chunk
        # per region edge (the chunks here are the default 4 MiB, so every
        # tensor is one chunk and fetched bytes are bounded by the saved
        # entries overlapping).
        assert report["bytes_used"] > 0
        # Training continues: one update on this rank's regions, saved by
        # the new world size.
        state = local_state(expected, rank, world)
        for group in ("model", "optim"):
            for key, shard in state[group].items():
                shard.tensor.add_(0.5)
        state["embedding"].tensor.add_(0.5)
        state["optim"]["step"] = 100 + world
        state["loader"] = {"position": rank}
        assert manager.save(state, 100 + world)
    dist.barrier()
    dist.destroy_process_group()
