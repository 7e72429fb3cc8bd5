"""A job of 2 real processes (torch.multiprocessing, gloo; rank and world
size from torch.distributed) saves an FSDP-style sharded model with its Adam
moments, a row-sharded embedding table as a row delta, and per-rank data
loader positions; jobs of 1, 3, 4 and 2 processes restore it, each rank
reading only its regions, and continue training (reshard_worker.py). The
checkpoints they save with their own world size are then read back whole
by one process."""

import socket

import torch
import torch.multiprocessing as mp

import ckpt
import reshard_worker


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_ranks_save_and_one_to_four_ranks_restore(server):
    job = "t/fsdp-reshard"
    mp.spawn(reshard_worker.save_run, args=(server, job, 2, free_port()),
             nprocs=2, join=True)
    trained = {name: value + 0.5 for name, value in
               reshard_worker.global_tensors(1).items()}
    for world in (1, 3, 4, 2):
        mp.spawn(reshard_worker.restore_run,
                 args=(server, job, world, free_port(), 2), nprocs=world,
                 join=True)
        # One process reads the checkpoint the `world` ranks saved, whole
        # (only the sharded entries: the loader positions are per rank).
        with ckpt.CheckpointManager(server, job, rank=0,
                                    world_size=1) as manager:
            whole = manager.restore(100 + world,
                                    keys=["model", "optim", "embedding"])
            assert "loader" not in whole
            assert whole["optim"]["step"] == 100 + world
            for name, want in trained.items():
                if name == "embedding":
                    got = whole["embedding"]
                else:
                    group, key = name.split("/", 1)
                    got = whole[group][key].reshape(want.shape)
                assert got.dtype == want.dtype, (world, name)
                assert torch.equal(got, want), (world, name)
