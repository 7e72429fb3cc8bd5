"""Hostile checkpoints for resharded restores, planted through the raw gRPC
API (tests/python/raw_api.py) as any client that can reach the port could:
shard references whose entries do not match, ranks that disagree, boxes
out of range. Each is refused with a clear error; nothing is written into
any target and no restore is recorded."""

import hashlib

import grpc
import numpy as np
import pytest
import torch

import ckpt
import raw_api
from ckpt.state_layout import STATE_TENSOR
from tree_bytes import (NUMPY, REPLICATED, SHARDED, encoded, mapping, ref)


def state(blob):
    return (STATE_TENSOR, "uint8", [len(blob)], [0], [len(blob)], blob)


def rows(name, dtype, global_shape, start, count, fill):
    """A tensor entry holding rows [start, start + count) of a 2-D tensor,
    every element `fill`."""
    lengths = [count] + list(global_shape[1:])
    data = np.full(lengths, fill, dtype=dtype).tobytes()
    return (name, dtype, list(global_shape), [start, 0], lengths, data)


SHARDED_W = encoded(mapping(w=ref("w", "float32", [4, 2], SHARDED)))


def refused(server, job, world_size, rank, words, **kwargs):
    """Restoring `job` as `rank` of `world_size` raises ValueError with
    `words`; the target stays as it was and no restore is recorded."""
    target = torch.full((4, 2), 7.0)
    manager = ckpt.CheckpointManager(server, job, rank=rank,
                                     world_size=world_size)
    with pytest.raises(ValueError) as error:
        manager.restore(into={"w": target}, **kwargs)
    assert words in str(error.value), str(error.value)
    assert len(str(error.value)) < 2000
    assert torch.equal(target, torch.full((4, 2), 7.0))
    assert raw_api.restored_events(server, job) == []
    return error.value


def test_a_sharded_reference_of_another_shape_than_its_entries(server):
    raw_api.plant_checkpoint(server, "hostile/shape", 1, {0: [
        state(encoded(mapping(w=ref("w", "float32", [2, 2], SHARDED)))),
        rows("w", "float32", [4, 2], 0, 4, 1.0)]})
    refused(server, "hostile/shape", 1, 0,
            "of shape [2, 2] (sharded), but it is stored with shape [4, 2]")


def test_a_replicated_reference_to_a_part_of_a_tensor(server):
    raw_api.plant_checkpoint(server, "hostile/replicated-box", 1, {
        0: [state(encoded(mapping(w=ref("w", "float32", [4, 2],
                                        REPLICATED)))),
            rows("w", "float32", [4, 2], 0, 2, 1.0)],
        1: [state(SHARDED_W), rows("w", "float32", [4, 2], 2, 2, 2.0)]})
    refused(server, "hostile/replicated-box", 2, 0,
            "stored with shape [4, 2], box [0, 0] + [2, 2]")


def test_ranks_that_disagree_about_a_sharded_tensor(server):
    job = "hostile/disagree"
    raw_api.plant_checkpoint(server, job, 1, {
        0: [state(SHARDED_W), rows("w", "float32", [4, 2], 0, 2, 1.0)],
        1: [state(encoded(mapping())), rows("w", "float32", [4, 2], 2, 2,
                                            2.0)]})
    refused(server, job, 1, 0, "rank 0 saved a sharded torch float32 tensor "
            "'w' of shape [4, 2], rank 1 nothing there")
    # As a numpy tensor on one rank and a torch one on the other.
    job = "hostile/kinds"
    raw_api.plant_checkpoint(server, job, 1, {
        0: [state(SHARDED_W), rows("w", "float32", [4, 2], 0, 2, 1.0)],
        1: [state(encoded(mapping(w=ref("w", "float32", [4, 2],
                                        bytes([SHARDED[0] | NUMPY[0]]))))),
            rows("w", "float32", [4, 2], 2, 2, 2.0)]})
    refused(server, job, 3, 2, "rank 1 a sharded numpy float32 tensor 'w'")


def commit_refused(server, job, shards, words):
    with pytest.raises(grpc.RpcError) as error:
        raw_api.plant_checkpoint(server, job, 1, shards)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in error.value.details(), error.value.details()
    assert raw_api.restored_events(server, job) == []
    with pytest.raises(KeyError):  # nothing committed
        ckpt.CheckpointManager(server, job).restore()


def test_entries_of_one_tensor_with_other_dtypes_or_shapes(server):
    """Rank 1's tree agrees with its own entry, which does not agree with
    rank 0's: the commit refuses the checkpoint (the region planner and
    the comparison of the ranks' trees would refuse it too)."""
    for job, other in [
            ("hostile/dtype", rows("w", "int32", [4, 2], 2, 2, 2)),
            ("hostile/global", rows("w", "float32", [6, 2], 2, 4, 2.0))]:
        tree1 = encoded(mapping(w=ref("w", other[1], other[2], SHARDED)))
        commit_refused(server, job, {
            0: [state(SHARDED_W), rows("w", "float32", [4, 2], 0, 2, 1.0)],
            1: [state(tree1), other]}, "tensor 'w' is sharded")


def test_boxes_out_of_range_or_leaving_gaps_are_refused_at_commit(server):
    commit_refused(server, "hostile/range", {0: [
        state(SHARDED_W), rows("w", "float32", [4, 2], 3, 2, 1.0)]}, "'w'")
    commit_refused(server, "hostile/gap", {
        0: [state(SHARDED_W), rows("w", "float32", [4, 2], 0, 1, 1.0)],
        1: [state(SHARDED_W), rows("w", "float32", [4, 2], 2, 2, 1.0)]},
        "leave 2 of its 8 elements uncovered")
    # A tree and entry claiming a 2**40-row tensor of which one row is
    # saved (restoring it whole would allocate 8 TiB).
    huge = [1 << 40, 2]
    commit_refused(server, "hostile/huge", {0: [
        state(encoded(mapping(w=ref("w", "float32", huge, SHARDED)))),
        rows("w", "float32", huge, 0, 1, 1.0)]}, "uncovered")


def test_shard_targets_out_of_range_name_the_key(server):
    job = "hostile/target"
    with ckpt.CheckpointManager(server, job) as manager:
        manager.save({"w": ckpt.Shard(torch.ones(4, 2), (4, 2), (0, 0))}, 1)
        for shard, words in [
                (ckpt.Shard(torch.zeros(2, 2), (4, 2), (3, 0)),
                 "does not fit in the global shape [4, 2]"),
                (ckpt.Shard(torch.zeros(2, 2), (8, 2), (0, 0)),
                 "global shape: the checkpoint has [4, 2], the target "
                 "ckpt.Shard [8, 2]"),
                (ckpt.Shard(torch.zeros(2), (4, 2), (0, 0)),
                 "the local tensor has 1 dimensions")]:
            with pytest.raises(ckpt.StateMismatchError) as error:
                manager.restore(into={"w": shard})
            assert "'w'" in str(error.value) and words in str(error.value)
            assert not shard.tensor.any()
    assert raw_api.restored_events(server, job) == []


def _plant_damaged_encoding(server, job, kind):
    """Commits step 2 of `job` as a copy of step 1 whose 'emb' entry is a
    row delta (on step 1) or a quantized matrix of the right size whose
    bytes do not decode: only the restore finds that out."""
    pb, pb_grpc = raw_api.stubs()
    with grpc.insecure_channel(server) as channel:
        service = pb_grpc.CheckpointServiceStub(channel)
        shard = service.GetManifest(pb.GetManifestRequest(job=job, step=1),
                                    timeout=30).shards[0]
        [emb] = [entry for entry in shard.tensors if entry.name == "emb"]
        # One row of 64 x 8 float32 as a delta; 64 x 8 at 4 bits quantized.
        data = b"\x07" * (68 if kind == "delta" else 808)
        digest = hashlib.sha256(data).digest()
        del emb.pieces[:]
        emb.pieces.append(pb.Piece(chunk=pb.ChunkRef(sha256=digest,
                                                     size=len(data))))
        if kind == "delta":
            emb.delta_base_step = 1
        else:
            emb.quantization.bits = 4
            emb.quantization.max_abs_error = 0.1
        service.BeginCheckpoint(pb.BeginCheckpointRequest(
            job=job, step=2, world_size=1), timeout=30)
        service.PutChunks(iter([pb.PutChunksRequest(
            job=job, step=2,
            chunks=[pb.ChunkData(sha256=digest, data=data)])]), timeout=30)
        service.CommitShard(pb.CommitShardRequest(
            job=job, step=2, world_size=1, shard=shard), timeout=30)


@pytest.mark.parametrize("kind", ["delta", "quantized"])
def test_an_encoding_that_does_not_decode_leaves_every_target_unwritten(
        server, kind):
    """Before: 'a' was fetched straight into its target while 'emb' was
    fetched, and the decode failed afterwards: DATA_LOSS with 'a' already
    overwritten. Now what is decoded is fetched and decoded first."""
    job = f"hostile/encoding-{kind}"
    with ckpt.CheckpointManager(server, job) as manager:
        manager.save({"a": torch.arange(1000.0), "emb": torch.ones(64, 8)},
                     1)
    _plant_damaged_encoding(server, job, kind)
    a, emb = torch.zeros(1000), torch.zeros(64, 8)
    with ckpt.CheckpointManager(server, job) as manager:
        with pytest.raises(ckpt.Error) as error:
            manager.restore(2, into={"a": a, "emb": emb})
    assert "DATA_LOSS" in str(error.value) and "'emb'" in str(error.value)
    assert not a.any() and not emb.any()
    assert raw_api.restored_events(server, job) == []


def test_a_chunk_shared_by_a_delta_base_and_a_target_restores_both(server):
    """A chunk that is both a delta chain's base (fetched into scratch and
    patched with the delta's rows) and the whole of another tensor (read
    into its target, a 1-D tensor saved whole): the target gets the chunk
    as stored, not patched."""
    job = "hostile/shared-base"
    with ckpt.CheckpointManager(server, job, incremental=True) as manager:
        manager.save({"emb": torch.zeros(64, 8), "z": torch.zeros(512)}, 1)
        table = torch.zeros(64, 8)
        table[5] = 1.0
        manager.save({"emb": table, "z": torch.zeros(512)}, 2)
        assert dict((name, kind) for name, kind, *_ in
                    manager.last_plan)["emb"] == "delta"
        emb, z = torch.full((64, 8), 7.0), torch.full((512,), 7.0)
        manager.restore(2, into={"emb": emb, "z": z})
        assert torch.equal(emb, table) and not z.any()
