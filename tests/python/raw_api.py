"""The server's raw gRPC API for attack tests: Python stubs generated from
proto/ckpt/v1/ckpt.proto with protoc into a temporary directory
at test time (nothing generated is kept in the tree); `plant_shard` and
`plant_checkpoint`, which commit a checkpoint of arbitrary tensor entries
and bytes the way any client that can reach the port could, without the
ckpt client library; `restored_events`, a job's restore history."""

import atexit
import functools
import hashlib
import importlib
import os
import shutil
import subprocess
import sys
import tempfile

import grpc

_PROTO_ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "proto")


@functools.lru_cache(maxsize=None)
def stubs():
    """(ckpt_pb2, ckpt_pb2_grpc), generated once per test process with
    Debian's protoc and grpc_python_plugin (python3-grpc-tools bundles
    protoc 3.5, too old for the proto's `optional` fields), into a
    temporary directory removed at exit."""
    out = tempfile.mkdtemp(prefix="ckpt-stubs-")
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    # Under a package name of its own: the modules protoc names after the
    # proto's path (ckpt/v1/) would collide with the ckpt package itself.
    package = os.path.join(out, "ckpt_raw_v1")
    os.mkdir(package)
    shutil.copy(os.path.join(_PROTO_ROOT, "ckpt", "v1", "ckpt.proto"),
                package)
    plugin = shutil.which("grpc_python_plugin") or \
        "/usr/bin/grpc_python_plugin"
    subprocess.run(
        ["protoc", f"-I{out}", f"--python_out={out}",
         f"--grpc_python_out={out}",
         f"--plugin=protoc-gen-grpc_python={plugin}",
         os.path.join(package, "ckpt.proto")], check=True)
    sys.path.insert(0, out)
    return (importlib.import_module("ckpt_raw_v1.ckpt_pb2"),
            importlib.import_module("ckpt_raw_v1.ckpt_pb2_grpc"))


def plant_shard(address, job, step, tensors):
    """Commits checkpoint `step` of `job` (world size 1, rank 0) whose
    shard holds `tensors`: (name, dtype name such as "uint8", shape, bytes)
    each, one chunk per tensor. Returns the CommitShard response."""
    return plant_checkpoint(address, job, step, {0: [
        (name, dtype, shape, [0] * len(shape), shape, data)
        for name, dtype, shape, data in tensors]})[-1]


def plant_checkpoint(address, job, step, shards):
    """Commits checkpoint `step` of `job` whose world size is len(shards):
    shards maps each rank to its tensors, (name, dtype name, global_shape,
    offsets, lengths, bytes) each, one chunk per tensor. Returns the
    CommitShard responses, by rank; a refused commit raises grpc.RpcError
    (the earlier ranks' shards stay pending)."""
    pb, pb_grpc = stubs()
    world_size = len(shards)
    responses = []
    with grpc.insecure_channel(address) as channel:
        service = pb_grpc.CheckpointServiceStub(channel)
        service.BeginCheckpoint(pb.BeginCheckpointRequest(
            job=job, step=step, world_size=world_size), timeout=30)
        for rank in sorted(shards):
            entries, chunks = [], []
            for name, dtype, shape, offsets, lengths, data in shards[rank]:
                digest = hashlib.sha256(data).digest()
                chunks.append(pb.ChunkData(sha256=digest, data=data))
                entries.append(pb.TensorEntry(
                    name=name,
                    dtype=pb.DType.Value(f"DTYPE_{dtype.upper()}"),
                    global_shape=shape,
                    box=pb.Box(offsets=offsets, lengths=lengths),
                    pieces=[pb.Piece(chunk=pb.ChunkRef(sha256=digest,
                                                       size=len(data)))]))
            service.PutChunks(iter([pb.PutChunksRequest(
                job=job, step=step, chunks=chunks)]), timeout=30)
            responses.append(service.CommitShard(pb.CommitShardRequest(
                job=job, step=step, world_size=world_size,
                shard=pb.ShardManifest(format_version=1, rank=rank,
                                       tensors=entries)), timeout=30))
    return responses


def restored_events(address, job):
    """[(step, detail)] of the job's `restored` events, oldest first."""
    pb, pb_grpc = stubs()
    with grpc.insecure_channel(address) as channel:
        service = pb_grpc.CheckpointServiceStub(channel)
        events = service.ListEvents(pb.ListEventsRequest(job=job),
                                    timeout=30).events
    return [(event.step, event.detail) for event in events
            if event.kind == pb.EventKind.Value("EVENT_KIND_RESTORED")]
