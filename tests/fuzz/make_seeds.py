#!/usr/bin/env python3
"""Writes the seed inputs of the T23 fuzz harnesses (tests/fuzz/corpus/).

Seeds are valid inputs: each RPC's request as the client sends it (first
byte: the RPC's index in fuzz_rpc.cc), sequence programs that save, commit,
prune, collect and restore (fuzz_sequence.cc), and well-formed manifests,
row deltas, fingerprint records, safetensors files and the JSON files import
reads (ckpt_checkpoint.json, model.safetensors.index.json). libFuzzer grows the
corpora from them; `fuzz.sh --merge` minimizes what is checked in. The protobuf classes are compiled from proto/ at run
time (protoc, python3-protobuf).

  tests/fuzz/make_seeds.py [--out tests/fuzz/corpus]
"""

import argparse
import hashlib
import importlib
import json
import os
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_proto():
    out = tempfile.mkdtemp(prefix="ckpt-seeds-")
    proto_dir = os.path.join(ROOT, "proto")
    subprocess.run(["protoc", f"-I{proto_dir}", f"--python_out={out}",
                    os.path.join(proto_dir, "ckpt/v1/ckpt.proto")], check=True)
    sys.path.insert(0, out)
    return importlib.import_module("ckpt.v1.ckpt_pb2")


def write(out, target, name, data):
    directory = os.path.join(out, target)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f"seed-{name}"), "wb") as f:
        f.write(data)


def sha(data):
    return hashlib.sha256(data).digest()


# fuzz_rpc.cc's Rpc enum, in order.
RPCS = ["BeginCheckpoint", "FindMissingChunks", "PutChunks", "CommitShard",
        "AbortCheckpoint", "ListJobs", "ListCheckpoints", "GetManifest",
        "ReportRestore", "ReportCopy", "ReadChunks", "GetSharedFileEndpoint",
        "ReadChunksIntoFile", "DeleteCheckpoint", "GetStats",
        "SetRetentionPolicy", "GetRetentionPolicy", "PinCheckpoint",
        "SetCheckpointTags", "PruneCheckpoints", "CollectGarbage",
        "VerifyCheckpoints", "ListEvents"]

SEED_CHUNKS = [b"seed chunk zero", b"seed chunk one"]  # fuzz_rpc.cc's


def shard_manifest(pb, rank=0, chunks=SEED_CHUNKS, name="seed"):
    shard = pb.ShardManifest(format_version=1, rank=rank)
    size = sum(len(c) for c in chunks)
    tensor = shard.tensors.add(name=name, dtype=pb.DTYPE_UINT8,
                               global_shape=[size])
    tensor.box.offsets.append(0)
    tensor.box.lengths.append(size)
    for c in chunks:
        tensor.pieces.add().chunk.CopyFrom(pb.ChunkRef(sha256=sha(c), size=len(c)))
    return shard


def rpc_seeds(pb, out):
    job, new = "seed/job", "seed/other"
    policy = pb.RetentionPolicy(max_to_keep=2)
    requests = {
        "BeginCheckpoint": [pb.BeginCheckpointRequest(job=new, step=2, world_size=1),
                            pb.BeginCheckpointRequest(job=job, step=3, world_size=2,
                                                      lease_seconds=60,
                                                      retention_policy=policy)],
        "FindMissingChunks": [pb.FindMissingChunksRequest(
            job=job, sha256=[sha(c) for c in SEED_CHUNKS] + [sha(b"x")])],
        "PutChunks": [pb.PutChunksRequest(job=new, step=2, chunks=[
            pb.ChunkData(sha256=sha(c), data=c) for c in SEED_CHUNKS])],
        "CommitShard": [pb.CommitShardRequest(job=new, step=2, world_size=1,
                                              shard=shard_manifest(pb))],
        "AbortCheckpoint": [pb.AbortCheckpointRequest(job=new, step=2, reason="seed")],
        "ListJobs": [pb.ListJobsRequest()],
        "ListCheckpoints": [pb.ListCheckpointsRequest(job=job, include_uncommitted=True,
                                                      with_unique_bytes=True)],
        "GetManifest": [pb.GetManifestRequest(job=job, step=1),
                        pb.GetManifestRequest(job=job, latest=True, restoring_rank=0)],
        "ReportRestore": [pb.ReportRestoreRequest(job=job, step=1, rank=0)],
        "ReportCopy": [pb.ReportCopyRequest(job=job, step=1, destination=pb.CopyPeer(
            server="backup:7070", job="other/job", step=1))],
        "ReadChunks": [pb.ReadChunksRequest(job=job, sha256=[sha(c) for c in SEED_CHUNKS])],
        "GetSharedFileEndpoint": [pb.GetSharedFileEndpointRequest()],
        "ReadChunksIntoFile": [pb.ReadChunksIntoFileRequest(job=job, chunks=[
            pb.ChunkPlacement(sha256=sha(SEED_CHUNKS[0]), size=len(SEED_CHUNKS[0]),
                              offsets=[0])], file_handle=b"\x01" * 16)],
        "DeleteCheckpoint": [pb.DeleteCheckpointRequest(job=new, step=2, force=True)],
        "GetStats": [pb.GetStatsRequest(job=job), pb.GetStatsRequest()],
        "SetRetentionPolicy": [pb.SetRetentionPolicyRequest(job=new, policy=policy),
                               pb.SetRetentionPolicyRequest(tenant="seed", policy=policy)],
        "GetRetentionPolicy": [pb.GetRetentionPolicyRequest(job=job)],
        "PinCheckpoint": [pb.PinCheckpointRequest(job=job, step=1, pinned=True)],
        "SetCheckpointTags": [pb.SetCheckpointTagsRequest(job=job, step=1,
                                                          set={"best": "yes"},
                                                          remove=["old"])],
        "PruneCheckpoints": [pb.PruneCheckpointsRequest(job=job, policy=policy,
                                                        dry_run=True)],
        "CollectGarbage": [pb.CollectGarbageRequest(dry_run=True),
                           pb.CollectGarbageRequest(hold_seconds=0)],
        "VerifyCheckpoints": [pb.VerifyRequest(job=job, read_data=True)],
        "ListEvents": [pb.ListEventsRequest(job=job, limit=10)],
    }
    for index, rpc in enumerate(RPCS):
        for i, request in enumerate(requests[rpc]):
            write(out, "rpc", f"{rpc}-{i}", bytes([index]) + request.SerializeToString())


# fuzz_sequence.cc: ops are (code, step byte, arg byte); code % 11 picks the
# operation, bit 7 the job.
BEGIN, PUT, COMMIT, ABORT, DELETE, PRUNE, RESTORE, MAINT, PUT2 = 0, 2, 3, 5, 6, 7, 8, 9, 10


def commit_arg(rank, world, first, second=6):
    return rank | (first << 1) | (second << 4) | ((world - 1) << 6)


def sequence_seeds(out):
    programs = {
        # Begin, upload, commit, restore.
        "save": [(BEGIN, 0, 0), (PUT, 0, 1), (COMMIT, 0, commit_arg(0, 1, 1)),
                 (RESTORE, 0, 0), (RESTORE, 0, 1)],
        # Two ranks, one commit each; a third step pruned away.
        "two-ranks-prune": [(BEGIN, 0, 1), (PUT2, 0, 1 + 6 * 2),
                            (COMMIT, 0, commit_arg(0, 2, 1)),
                            (COMMIT, 0, commit_arg(1, 2, 2)),
                            (BEGIN, 1, 0), (COMMIT, 1, commit_arg(0, 1, 1)),
                            (BEGIN, 2, 0), (COMMIT, 2, commit_arg(0, 1, 2)),
                            (PRUNE, 0, 0), (RESTORE, 0, 1)],
        # Shared chunks between jobs, one deleted, GC without hold, restart.
        "shared-gc": [(BEGIN, 0, 0), (PUT2, 0, 3 + 6 * 4),
                      (COMMIT, 0, commit_arg(0, 1, 3, 4)),
                      (BEGIN | 0x80, 0, 0), (PUT | 0x80, 0, 3),
                      (COMMIT | 0x80, 0, commit_arg(0, 1, 3)),
                      (DELETE, 0, 0), (MAINT, 0, 3), (MAINT, 0, 1),
                      (RESTORE | 0x80, 0, 0)],
        # A pending checkpoint aborted, expired, begun afresh.
        "abort-expire": [(BEGIN, 0, 1), (PUT, 0, 0), (COMMIT, 0, commit_arg(0, 2, 0)),
                         (ABORT, 0, 0), (BEGIN, 0, 1), (MAINT, 0, 0),
                         (BEGIN, 0, 0), (COMMIT, 0, commit_arg(0, 1, 0)),
                         (COMMIT, 0, commit_arg(1, 2, 0)), (MAINT, 0, 2)],
    }
    for name, ops in programs.items():
        write(out, "sequence", name, bytes(b for op in ops for b in op))


def row_delta(total_rows, row_bytes, rows):
    width = 4 if total_rows <= 2**32 else 8
    head = b"CKRD" + struct.pack("<HBBQQQ", 1, width, 0, row_bytes, total_rows, len(rows))
    indices = b"".join(r.to_bytes(width, "little") for r in rows)
    data = b"".join(bytes([r % 256]) * row_bytes for r in rows)
    return head + indices + data


def fingerprint_record(total_rows, rows=None, row_bytes=8):
    dense = rows is None
    width = 0 if dense else (4 if total_rows <= 2**32 else 8)
    count = total_rows if dense else len(rows)
    head = b"CKFP" + struct.pack("<HBBQQQ", 1, width, 1, row_bytes, total_rows, count)
    indices = b"" if dense else b"".join(r.to_bytes(width, "little") for r in rows)
    return head + indices + bytes(range(16)) * count


def safetensors(tensors, metadata=None):
    header, data = {}, b""
    for name, dtype, shape, size in tensors:
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(data), len(data) + size]}
        data += bytes(range(size % 256)) * (size // 256) + bytes(range(size % 256))
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def decoder_seeds(pb, out):
    write(out, "row_delta", "small", row_delta(10, 4, [1, 3, 9]))
    write(out, "row_delta", "empty", row_delta(5, 8, []))
    write(out, "row_delta", "wide", row_delta(2**32 + 1, 1, [0, 2**32]))
    write(out, "fingerprint_record", "dense", fingerprint_record(3))
    write(out, "fingerprint_record", "sparse", fingerprint_record(100, [2, 50, 99]))
    write(out, "fingerprint_record", "wide", fingerprint_record(2**33, [7, 2**33 - 1]))
    write(out, "safetensors", "two", safetensors(
        [("a", "F32", [2, 3], 24), ("b", "I64", [1], 8)], {"format": "pt"}))
    write(out, "safetensors", "complex", safetensors(
        [("z", "F32", [2, 2], 16)], {"ckpt.complex": '["z"]'}))
    write(out, "safetensors", "empty", safetensors([("e", "U8", [0], 0)]))
    shard = shard_manifest(pb, rank=1).SerializeToString()
    write(out, "manifest", "shard", b"\x00" + shard)
    info = pb.CheckpointInfo(format_version=1, job="team/model", step=3,
                             state=pb.CHECKPOINT_STATE_COMMITTED, world_size=2,
                             create_time_micros=1, commit_time_micros=2)
    info.metadata.metrics["loss"] = 0.25
    info.metadata.tags["best"] = "1"
    write(out, "manifest", "record", b"\x01" + info.SerializeToString())
    job = pb.JobInfo(format_version=1, name="team/model", create_time_micros=5,
                     retention_policy=pb.RetentionPolicy(max_to_keep=3))
    write(out, "manifest", "job", b"\x02" + job.SerializeToString())
    tenant = pb.TenantInfo(format_version=1, name="team",
                           default_policy=pb.RetentionPolicy(max_to_keep=1))
    write(out, "manifest", "tenant", b"\x03" + tenant.SerializeToString())
    event = pb.JobEvent(format_version=1, job="team/model", sequence=4,
                        time_micros=9, kind=1, step=3, detail="x", principal="p")
    write(out, "manifest", "event", b"\x04" + event.SerializeToString())
    write(out, "manifest", "wire-shard", b"\x05" + shard)
    # fuzz_chunk_answer.cc: a 2-byte size, then the answer.
    answer_id = sha(b"chunk-answer-fuzz")
    chunk = bytes(range(256)) + b"tail"
    answer = pb.ReadChunksResponse(chunk=pb.ChunkData(sha256=answer_id, data=chunk))
    write(out, "chunk_answer", "chunk",
          struct.pack("<H", len(chunk)) + answer.SerializeToString())
    empty = pb.ReadChunksResponse(chunk=pb.ChunkData(sha256=answer_id))
    write(out, "chunk_answer", "empty", b"\x00\x00" + empty.SerializeToString())
    # Data first, and a field this build does not know (number 9).
    reordered = (b"\x12" + bytes([len(chunk) & 0x7f | 0x80, len(chunk) >> 7])
                 + chunk + b"\x0a\x20" + answer_id + b"\x48\x07")
    write(out, "chunk_answer", "reordered", struct.pack("<H", len(chunk))
          + b"\x0a" + bytes([len(reordered) & 0x7f | 0x80, len(reordered) >> 7])
          + reordered)


def checkpoint_json(full, rank=0, world=1, objects=None, writer_time=None):
    """ckpt_checkpoint.json as WriteCheckpointJson writes it."""
    def saved(r, offsets, lengths, base=None, bits=None):
        quant = None if bits is None else {
            "bits": bits, "max_abs_error": 0.5, "relative_l2_error": 0.01}
        return {"rank": r, "offsets": offsets, "lengths": lengths,
                "delta_base_step": base, "quantization": quant}
    if full:
        emb = {"file": "model.safetensors", "dtype": "float32", "shape": [10, 4],
               "tensor": "emb", "layout": "sharded", "ranks": [0, 1],
               "global_shape": [10, 4], "box": {"offsets": [0, 0], "lengths": [10, 4]},
               "dequantized": True,
               "saved": [saved(0, [0, 0], [5, 4], 3, 8), saved(1, [5, 0], [5, 4])]}
    else:
        emb = {"file": "model.safetensors", "dtype": "float32", "shape": [5, 4],
               "tensor": "emb", "layout": "sharded", "ranks": [rank],
               "global_shape": [10, 4], "box": {"offsets": [5 * rank, 0], "lengths": [5, 4]},
               "dequantized": False, "saved": [saved(rank, [5 * rank, 0], [5, 4])]}
    bias = {"file": "model.safetensors", "dtype": "bfloat16", "shape": [3],
            "tensor": "bias", "layout": "whole", "ranks": [0], "global_shape": [3],
            "box": {"offsets": [0], "lengths": [3]}, "dequantized": False,
            "saved": [saved(0, [0], [3])]}
    root = {"format": "ckpt-checkpoint", "version": 1, "job": "team/model",
            "step": 7, "world_size": 2, "create_time": "2026-01-02T03:04:05.5Z",
            "commit_time": "2026-01-02T03:04:06.123456Z",
            "metadata": {"metrics": {"loss": 0.30000000000000004, "nan": "NaN",
                                     "inf": "-Infinity"},
                         "tags": {"best": "1", "k": "v \"quoted\""},
                         "writer_time": writer_time},
            "delta_base_steps": [3],
            "export": {"full": full, "rank": None if full else rank,
                       "world_size": None if full else world,
                       "format": "safetensors"},
            "files": ["model.safetensors"],
            "tensors": {"emb": emb, "bias": bias},
            "objects": objects}
    return (json.dumps(root, indent=2) + "\n").encode()


def import_json_seeds(out):
    write(out, "import_json", "full", checkpoint_json(True))
    write(out, "import_json", "rank", checkpoint_json(
        False, 1, 2, objects={"encoding": "e", "ranks": {"1": {"$dict": [["lr", 0.1]]}}},
        writer_time="1970-01-01T00:00:01.234567+02:00"))
    write(out, "import_json", "index", json.dumps({
        "metadata": {"total_size": 64},
        "weight_map": {"a": "model-00001-of-00002.safetensors",
                       "b.weight": "model-00002-of-00002.safetensors"}}).encode())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "tests/fuzz/corpus"))
    args = parser.parse_args()
    pb = load_proto()
    rpc_seeds(pb, args.out)
    sequence_seeds(args.out)
    decoder_seeds(pb, args.out)
    import_json_seeds(args.out)


if __name__ == "__main__":
    main()
