"""Hostile row fingerprints (TensorEntry.fingerprint_pieces) committed
through the raw gRPC API (tests/python/raw_api.py) as any client that can
reach the port could. CommitShard refuses pieces of the wrong total size,
on a quantized or rowless entry, of 0 bytes or over the chunk size, with
INVALID_ARGUMENT naming the tensor, and nothing is committed. A record of
the right size the server accepts but that does not decode, or does not
fit its entry, makes `ckpt put --delta-against` fail with DATA_LOSS naming
the tensor, never a delta; and a well-formed record that lies is trusted
(verify --read-data checks chunks, not fingerprints)."""

import hashlib
import os
import struct
import subprocess

import grpc
import pytest

import raw_api

ROWS, ROW_BYTES = 16, 8
MAX_CHUNK = 16 << 20


def ckpt_cli(server, *args):
    return subprocess.run(
        [os.path.join(os.environ["CKPT_BUILD_DIR"], "client", "ckpt"),
         "--server", server, *args],
        capture_output=True, text=True, timeout=120)


def dense_record(row_bytes, fingerprints):
    """A CKFP dense record (common/fingerprint_record.h) of 16-byte
    `fingerprints`, one a row."""
    return (b"CKFP" + struct.pack("<HBBQQQ", 1, 0, 1, row_bytes,
                                  len(fingerprints), len(fingerprints))
            + b"".join(fingerprints))


def ref(pb, data, size=None):
    return pb.Piece(chunk=pb.ChunkRef(sha256=hashlib.sha256(data).digest(),
                                      size=len(data) if size is None
                                      else size))


def commit(server, job, step, entries, chunks):
    """Begins (job, step), uploads `chunks` and commits rank 0's shard of
    `entries`; raises grpc.RpcError if refused."""
    pb, pb_grpc = raw_api.stubs()
    with grpc.insecure_channel(server) as channel:
        service = pb_grpc.CheckpointServiceStub(channel)
        service.BeginCheckpoint(pb.BeginCheckpointRequest(
            job=job, step=step, world_size=1), timeout=30)
        if chunks:
            service.PutChunks(iter([pb.PutChunksRequest(
                job=job, step=step, chunks=[
                    pb.ChunkData(sha256=hashlib.sha256(c).digest(), data=c)
                    for c in chunks])]), timeout=30)
        return service.CommitShard(pb.CommitShardRequest(
            job=job, step=step, world_size=1,
            shard=pb.ShardManifest(format_version=1, rank=0,
                                   tensors=entries)), timeout=30)


def table_entry(pb, name, data, fingerprint_pieces, shape=(ROWS, ROW_BYTES)):
    return pb.TensorEntry(
        name=name, dtype=pb.DType.Value("DTYPE_UINT8"),
        global_shape=list(shape),
        box=pb.Box(offsets=[0] * len(shape), lengths=list(shape)),
        pieces=[ref(pb, data)], fingerprint_pieces=fingerprint_pieces)


def nothing_committed(server, job, step):
    """No committed checkpoint `step` of `job` and no event of it (the
    refused commit leaves the step pending, as begun)."""
    pb, pb_grpc = raw_api.stubs()
    with grpc.insecure_channel(server) as channel:
        service = pb_grpc.CheckpointServiceStub(channel)
        listed = service.ListCheckpoints(pb.ListCheckpointsRequest(
            job=job, include_uncommitted=True), timeout=30).checkpoints
        events = service.ListEvents(pb.ListEventsRequest(job=job),
                                    timeout=30).events
    committed = pb.CheckpointState.Value("CHECKPOINT_STATE_COMMITTED")
    assert [c.step for c in listed
            if c.step == step and c.state == committed] == []
    assert [(e.kind, e.step) for e in events if e.step == step] == []


def quantized_entry(server, pb, pb_grpc):
    """The manifest entry of a float32 file `ckpt put --quantize-bits 8`
    saved (its chunks stored in tenant "hostile")."""
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"),
                        f"hostile-q-{os.getpid()}.f32")
    with open(path, "wb") as f:
        f.write(struct.pack(f"<{ROWS * 2}f", *range(ROWS * 2)))
    try:
        put = ckpt_cli(server, "put", "hostile/quantized-source", "1", path,
                       "--row-bytes", "8", "--quantize-bits", "8")
    finally:
        os.unlink(path)
    assert put.returncode == 0, put.stderr
    with grpc.insecure_channel(server) as channel:
        manifest = pb_grpc.CheckpointServiceStub(channel).GetManifest(
            pb.GetManifestRequest(job="hostile/quantized-source", step=1),
            timeout=30)
    entry = manifest.shards[0].tensors[0]
    assert entry.quantization.bits == 8
    return entry


CASES = ["wrong total", "wrong total in two pieces", "quantized", "scalar",
         "zero rows", "0-byte piece", "piece over the chunk size",
         "dense size for a delta"]


@pytest.mark.parametrize("case", CASES)
def test_commit_refuses_hostile_fingerprint_pieces(server, case):
    pb, pb_grpc = raw_api.stubs()
    data = bytes(range(ROWS * ROW_BYTES))
    record = dense_record(ROW_BYTES, [bytes(16)] * ROWS)  # 288 bytes
    job = "hostile/fp-" + case.replace(" ", "-")
    chunks = [data]
    if case == "wrong total":
        short = record[:-1]
        entry = table_entry(pb, "tbl", data, [ref(pb, short)])
        chunks.append(short)
        words = "fingerprint pieces hold 287 bytes but its rows need a " \
                "record of 288"
    elif case == "wrong total in two pieces":
        first, second = record[:200], record[200:] + b"x"
        entry = table_entry(pb, "tbl", data,
                            [ref(pb, first), ref(pb, second)])
        chunks += [first, second]
        words = "fingerprint pieces hold 289 bytes"
    elif case == "quantized":
        entry = quantized_entry(server, pb, pb_grpc)
        entry.name = "tbl"
        entry.fingerprint_pieces.append(ref(pb, record))
        chunks = [record]
        words = "quantized, but with row fingerprints"
    elif case == "scalar":
        scalar = b"\x01\x02\x03\x04"
        entry = pb.TensorEntry(
            name="tbl", dtype=pb.DType.Value("DTYPE_FLOAT32"),
            global_shape=[], box=pb.Box(), pieces=[ref(pb, scalar)],
            fingerprint_pieces=[ref(pb, dense_record(4, [bytes(16)]))])
        chunks = [scalar, dense_record(4, [bytes(16)])]
        words = "row fingerprints for a tensor without rows"
    elif case == "zero rows":
        entry = table_entry(pb, "tbl", data, [ref(pb, record)],
                            shape=(0, ROW_BYTES))
        entry.ClearField("pieces")
        chunks = [record]
        words = "row fingerprints for a tensor without rows"
    elif case == "0-byte piece":
        entry = table_entry(pb, "tbl", data,
                            [ref(pb, b""), ref(pb, record)])
        chunks.append(record)
        words = "fingerprint piece of 0 bytes"
    elif case == "piece over the chunk size":
        entry = table_entry(pb, "tbl", data,
                            [ref(pb, record, size=MAX_CHUNK + 1)])
        words = f"fingerprint piece of {MAX_CHUNK + 1} bytes"
    else:  # a delta of one row with a dense record (a sparse one is due)
        commit(server, job, 1, [table_entry(pb, "tbl", data, [])], [data])
        delta = row_delta(1, data[:ROW_BYTES])
        entry = pb.TensorEntry(
            name="tbl", dtype=pb.DType.Value("DTYPE_UINT8"),
            global_shape=[ROWS, ROW_BYTES],
            box=pb.Box(offsets=[0, 0], lengths=[ROWS, ROW_BYTES]),
            pieces=[ref(pb, delta)], delta_base_step=1,
            fingerprint_pieces=[ref(pb, record)])
        chunks = [delta, record]
        words = "fingerprint pieces hold 288 bytes but the delta's rows " \
                "need a record of 52"
    step = 2
    with pytest.raises(grpc.RpcError) as error:
        commit(server, job, step, [entry], chunks)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, \
        error.value.details()
    assert "tensor 'tbl'" in error.value.details(), error.value.details()
    assert words in error.value.details(), error.value.details()
    nothing_committed(server, job, step)


def row_delta(row, row_bytes):
    """A row delta (common/row_delta.h) of one row of the table: a 32-byte
    header, the row's 4-byte index, its bytes. The header's fields are the
    server's business only by size; restores would decode them."""
    return b"\0" * 32 + struct.pack("<I", row) + row_bytes


def cli_table(pb, data, record):
    """The entry `ckpt put FILE --row-bytes 8` makes of table.bin, with
    `record` as its stored fingerprints."""
    return table_entry(pb, "table.bin", data, [ref(pb, record)])


def put_delta(server, tmp_path, job, step, base, data):
    path = tmp_path / "table.bin"
    path.write_bytes(data)
    return ckpt_cli(server, "put", job, str(step), str(path), "--row-bytes",
                    str(ROW_BYTES), "--delta-against", str(base), "--json")


@pytest.mark.parametrize("case", ["bad magic", "wrong row size",
                                  "unknown algorithm"])
def test_a_record_that_does_not_fit_fails_put_with_data_loss(
        server, tmp_path, case):
    """Records of the right size, which the server cannot tell from good
    ones: put --delta-against refuses them, naming the tensor and the
    checkpoint, and makes no delta; the checkpoint still restores."""
    pb, _ = raw_api.stubs()
    data = bytes(range(ROWS * ROW_BYTES))
    record = dense_record(ROW_BYTES, [bytes(16)] * ROWS)
    if case == "bad magic":
        record = b"XXXX" + record[4:]
        words = "magic"
    elif case == "wrong row size":
        record = dense_record(ROW_BYTES // 2, [bytes(16)] * ROWS)
        words = "do not fit it"
    else:
        record = record[:7] + b"\x09" + record[8:]
        words = "algorithm"
    job = "hostile/record-" + case.replace(" ", "-")
    commit(server, job, 1, [cli_table(pb, data, record)], [data, record])

    put = put_delta(server, tmp_path, job, 2, 1, data[::-1])
    assert put.returncode != 0, put.stdout
    assert "DATA_LOSS" in put.stderr, put.stderr
    assert "tensor 'table.bin' of checkpoint 1" in put.stderr, put.stderr
    assert words in put.stderr, put.stderr
    nothing_committed(server, job, 2)
    got = ckpt_cli(server, "get", job, "1", str(tmp_path / "got"))
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "got" / "table.bin").read_bytes() == data


def test_a_well_formed_record_that_lies_is_trusted(server, tmp_path):
    """Stored fingerprints are the writer's word (fingerprint_record.h,
    Trust): a record of other rows than the entry's, well formed, makes a
    delta against it miss changed rows, and verify --read-data, which
    checks each chunk against its SHA-256, does not see it. What this
    pins down: a client takes fingerprints only from its own job's
    checkpoints."""
    pb, pb_grpc = raw_api.stubs()
    job = "hostile/lie"
    honest = bytes(range(ROWS * ROW_BYTES))
    path = tmp_path / "table.bin"
    path.write_bytes(honest)
    put = ckpt_cli(server, "put", job, "1", str(path), "--row-bytes",
                   str(ROW_BYTES))
    assert put.returncode == 0, put.stderr
    with grpc.insecure_channel(server) as channel:
        service = pb_grpc.CheckpointServiceStub(channel)
        manifest = service.GetManifest(pb.GetManifestRequest(job=job,
                                                             step=1),
                                       timeout=30)
        piece = manifest.shards[0].tensors[0].fingerprint_pieces[0].chunk
        record = b"".join(r.chunk.data for r in service.ReadChunks(
            pb.ReadChunksRequest(job=job, sha256=[piece.sha256]),
            timeout=30))
    assert len(record) == 32 + 16 * ROWS
    # Step 2 holds other rows but says they are step 1's.
    other = bytes(255 - b for b in honest)
    commit(server, job, 2, [cli_table(pb, other, record)], [other, record])

    delta = put_delta(server, tmp_path, job, 3, 2, honest)
    assert delta.returncode == 0, delta.stderr
    assert '"rows_from": "stored fingerprints"' in delta.stdout, delta.stdout
    assert '"rows": 0' in delta.stdout, delta.stdout
    got = ckpt_cli(server, "get", job, "3", str(tmp_path / "got"))
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "got" / "table.bin").read_bytes() == other
    verify = ckpt_cli(server, "verify", job, "--read-data")
    assert verify.returncode == 0, verify.stdout + verify.stderr
