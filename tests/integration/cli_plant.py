"""Plants checkpoints the `ckpt put` CLI cannot make (nested tensor names,
sharded boxes, per-rank tensors, hostile names) through the server's raw
gRPC API (tests/python/raw_api.py), for the CLI end-to-end scripts.

  cli_plant.py ADDRESS JOB STEP model EXPECTED_DIR
      A 2-rank checkpoint: `model/0.weight` float32 [6, 4] split by rows
      (3 + 3), `model/0.bias` float32 [4] split 1 + 3, `layer.0.attn`
      int64 [2, 6] split by columns, `config` replicated (the same bytes in
      both ranks), `loader/state` per-rank (other bytes, other lengths) and
      a scalar `step`. Writes what `ckpt get` should write to
      EXPECTED_DIR/full/ (--full) and EXPECTED_DIR/rank0/, rank1/ (--rank).
  cli_plant.py ADDRESS JOB STEP names NAME...
      A 1-rank checkpoint of one small uint8 tensor per NAME.
  cli_plant.py ADDRESS JOB STEP copy SERVER SOURCE_JOB SOURCE_STEP
      A 1-rank checkpoint of one small uint8 tensor `w`, begun as a pinned
      copy of SOURCE_JOB@SOURCE_STEP from SERVER (as `ckpt copy` begins
      one: BeginCheckpoint's copied_from and pin).
"""

import hashlib
import os
import sys

import grpc
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
import raw_api  # noqa: E402


def commit(address, job, step, world_size, shards, **begin_fields):
    """shards: per rank, a list of (name, numpy dtype name, global shape,
    offsets, numpy array of the box). begin_fields: further fields of the
    BeginCheckpointRequest."""
    pb, pb_grpc = raw_api.stubs()
    with grpc.insecure_channel(address) as channel:
        service = pb_grpc.CheckpointServiceStub(channel)
        service.BeginCheckpoint(pb.BeginCheckpointRequest(
            job=job, step=step, world_size=world_size, **begin_fields),
            timeout=30)
        for rank, tensors in enumerate(shards):
            entries, chunks = [], []
            for name, dtype, shape, offsets, box in tensors:
                data = np.ascontiguousarray(box).tobytes()
                digest = hashlib.sha256(data).digest()
                pieces = []
                if data:
                    chunks.append(pb.ChunkData(sha256=digest, data=data))
                    pieces = [pb.Piece(chunk=pb.ChunkRef(sha256=digest,
                                                         size=len(data)))]
                entries.append(pb.TensorEntry(
                    name=name, dtype=pb.DType.Value(f"DTYPE_{dtype.upper()}"),
                    global_shape=shape,
                    box=pb.Box(offsets=offsets, lengths=list(box.shape)),
                    pieces=pieces))
            if chunks:
                service.PutChunks(iter([pb.PutChunksRequest(
                    job=job, step=step, chunks=chunks)]), timeout=30)
            service.CommitShard(pb.CommitShardRequest(
                job=job, step=step, world_size=world_size,
                shard=pb.ShardManifest(format_version=1, rank=rank,
                                       tensors=entries)), timeout=30)


def write(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as out:
        out.write(np.ascontiguousarray(array).tobytes())


def model(address, job, step, expected):
    rng = np.random.default_rng(14)
    weight = rng.standard_normal((6, 4)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    attn = rng.integers(-2**40, 2**40, (2, 6), dtype=np.int64)
    config = np.frombuffer(b"lr=0.1\n", dtype=np.uint8)
    loaders = [np.frombuffer(b"rank 0 at batch 17", dtype=np.uint8),
               np.frombuffer(b"rank 1 at batch 170", dtype=np.uint8)]
    step_value = np.array(step, dtype=np.int64)
    shards = []
    for rank in range(2):
        rows = slice(3 * rank, 3 * rank + 3)
        cols = slice(3 * rank, 3 * rank + 3)
        bias_part = slice(0, 1) if rank == 0 else slice(1, 4)
        tensors = [
            ("model/0.weight", "float32", [6, 4], [3 * rank, 0],
             weight[rows]),
            ("model/0.bias", "float32", [4], [bias_part.start],
             bias[bias_part]),
            ("layer.0.attn", "int64", [2, 6], [0, 3 * rank], attn[:, cols]),
            ("config", "uint8", [len(config)], [0], config),
            ("loader/state", "uint8", [len(loaders[rank])], [0],
             loaders[rank]),
            ("step", "int64", [], [], step_value),
        ]
        shards.append(tensors)
        for name, _, _, _, box in tensors:
            write(os.path.join(expected, f"rank{rank}", name), box)
        write(os.path.join(expected, "full", "rank-%d" % rank,
                           "loader", "state"), loaders[rank])
    for name, array in (("model/0.weight", weight), ("model/0.bias", bias),
                        ("layer.0.attn", attn), ("config", config),
                        ("step", step_value)):
        write(os.path.join(expected, "full", name), array)
    commit(address, job, step, 2, shards)


def names(address, job, step, tensor_names):
    tensors = [(name, "uint8", [3], [0],
                np.frombuffer(b"abc", dtype=np.uint8))
               for name in tensor_names]
    commit(address, job, step, 1, [tensors])


def copy(address, job, step, server, source_job, source_step):
    pb, _ = raw_api.stubs()
    tensors = [("w", "uint8", [4], [0],
                np.frombuffer(b"copy", dtype=np.uint8))]
    commit(address, job, step, 1, [tensors],
           copied_from=pb.CopyPeer(server=server, job=source_job,
                                   step=source_step),
           pin=True)


def main(argv):
    address, job, step, scenario = argv[1], argv[2], int(argv[3]), argv[4]
    if scenario == "model":
        model(address, job, step, argv[5])
    elif scenario == "names":
        names(address, job, step, argv[5:])
    elif scenario == "copy":
        copy(address, job, step, argv[5], argv[6], int(argv[7]))
    else:
        sys.exit(f"unknown scenario {scenario}")


if __name__ == "__main__":
    main(sys.argv)
