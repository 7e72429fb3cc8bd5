"""SetCheckpointTags attacked over the raw gRPC API of a real ckpt-server:
hostile names and values, too many tags or bytes (also from ranks that
join a checkpoint), names both set and removed,
pending, aborted and absent checkpoints are refused with INVALID_ARGUMENT,
FAILED_PRECONDITION or NOT_FOUND and leave nothing behind (no tag, no
event); a writer may add tags but neither remove one nor change a value
(PERMISSION_DENIED), an admin may; BeginCheckpoint applies the same tag
rules."""

import hashlib
import os
import tempfile

import grpc
import pytest

import raw_api
from conftest import ServerProcess

JOB = "tags/rpc"


def _history(service, pb, job=JOB):
    return [(pb.EventKind.Name(e.kind), e.step, e.detail)
            for e in service.ListEvents(pb.ListEventsRequest(job=job),
                                        timeout=30).events]


def _tags(service, pb, step, job=JOB):
    listed = service.ListCheckpoints(pb.ListCheckpointsRequest(
        job=job, include_uncommitted=True), timeout=30).checkpoints
    return {c.step: dict(c.metadata.tags) for c in listed}.get(step)


def _code(call):
    with pytest.raises(grpc.RpcError) as error:
        call()
    return error.value.code(), error.value.details()


def test_hostile_tag_requests_are_refused_and_leave_nothing(server):
    pb, pb_grpc = raw_api.stubs()
    raw_api.plant_shard(server, JOB, 1, [("w", "uint8", [3], b"abc")])
    with grpc.insecure_channel(server) as channel:
        service = pb_grpc.CheckpointServiceStub(channel)
        # A pending checkpoint (begun, never committed) and an aborted one.
        service.BeginCheckpoint(pb.BeginCheckpointRequest(
            job=JOB, step=2, world_size=1), timeout=30)
        service.BeginCheckpoint(pb.BeginCheckpointRequest(
            job=JOB, step=3, world_size=1), timeout=30)
        service.AbortCheckpoint(pb.AbortCheckpointRequest(
            job=JOB, step=3, reason="test"), timeout=30)
        before = _history(service, pb)

        def tags(step=1, set=None, remove=()):
            return service.SetCheckpointTags(pb.SetCheckpointTagsRequest(
                job=JOB, step=step, set=set or {}, remove=list(remove)),
                timeout=30)

        bad = [
            ({"": "v"}, (), "tag name"),
            ({"a=b": ""}, (), "'='"),
            ({"a\nb": ""}, (), "control"),
            ({"\x1b[2J": ""}, (), "control"),
            ({"x" * 257: ""}, (), "1-256 bytes"),
            ({"k": "v" * 4097}, (), "at most 4096"),
            ({"k": "\x1b]0;pwned\x07"}, (), "without control characters"),
            ({"k": "a\nb"}, (), "without control characters"),
            ({f"k{i}": "v" * 4096 for i in range(5)}, (),
             "at most 16384 bytes of names and values together"),
            ({}, [""], "tag name"),
            ({}, ["x" * 257], "1-256 bytes"),
            ({"k": "v"}, ["k"], "both set and removed"),
            ({str(i): "" for i in range(257)}, (), "at most 256"),
        ]
        for set_, remove, fragment in bad:
            code, details = _code(lambda: tags(set=set_, remove=remove))
            assert code == grpc.StatusCode.INVALID_ARGUMENT, (set_, details)
            assert fragment in details, (fragment, details)
        # Too many as a result: 200 + 100 > 256, refused as a whole.
        tags(set={f"a{i}": "" for i in range(200)})
        code, details = _code(
            lambda: tags(set={f"b{i}": "" for i in range(100)}))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, details
        assert len(_tags(service, pb, 1)) == 200
        tags(remove=[f"a{i}" for i in range(200)])
        # A name to remove is only bounded (a tag stored before today's
        # rules stays removable): an absent odd one changes nothing.
        tags(remove=["bad\x00name"])
        before = _history(service, pb)

        for step, expected in [(2, grpc.StatusCode.FAILED_PRECONDITION),
                               (3, grpc.StatusCode.NOT_FOUND),
                               (99, grpc.StatusCode.NOT_FOUND)]:
            code, details = _code(lambda: tags(step=step, set={"k": ""}))
            assert code == expected, (step, details)
        code, _ = _code(lambda: tags(step=-1, set={"k": ""}))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert _history(service, pb) == before
        assert _tags(service, pb, 1) == {}
        assert _tags(service, pb, 2) == {}

        # What works: one event per change, none for a no-op.
        reply = tags(set={"release": "", "run": "a=b"})
        assert dict(reply.checkpoint.metadata.tags) == {
            "release": "", "run": "a=b"}
        tags(set={"release": ""}, remove=["absent"])  # changes nothing
        tags(remove=["run"])
        after = _history(service, pb)[len(before):]
        assert after == [("EVENT_KIND_TAGS_CHANGED", 1, "+release +run=a=b"),
                         ("EVENT_KIND_TAGS_CHANGED", 1, "-run")], after

        # BeginCheckpoint holds tags to the same rules.
        for bad_tags in [{"a=b": ""}, {"a\tb": ""},
                         {str(i): "" for i in range(257)}]:
            code, _ = _code(lambda: service.BeginCheckpoint(
                pb.BeginCheckpointRequest(
                    job=JOB, step=10, world_size=1,
                    metadata=pb.CheckpointMetadata(tags=bad_tags)),
                timeout=30))
            assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert _tags(service, pb, 10) is None

        # Each rank's tags pass alone; joined, they must fit too, or W
        # ranks could store W times the limit.
        service.BeginCheckpoint(pb.BeginCheckpointRequest(
            job=JOB, step=11, world_size=2, metadata=pb.CheckpointMetadata(
                tags={f"a{i}": "" for i in range(200)})), timeout=30)
        code, details = _code(lambda: service.BeginCheckpoint(
            pb.BeginCheckpointRequest(
                job=JOB, step=11, world_size=2,
                metadata=pb.CheckpointMetadata(
                    tags={f"b{i}": "" for i in range(100)})), timeout=30))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, details
        assert "with this rank's added: a checkpoint may carry at most 256" \
            in details, details
        assert len(_tags(service, pb, 11)) == 200


def _token_line(token, principal, role, scope):
    digest = hashlib.sha256(token.encode()).hexdigest()
    return f"{digest} {principal} {role} {scope}\n"


def test_a_writer_may_add_tags_but_not_remove_or_change_them():
    pb, pb_grpc = raw_api.stubs()
    with tempfile.TemporaryDirectory(prefix="ckpt-pytest-") as work:
        tokens = os.path.join(work, "tokens")
        with open(tokens, "w") as f:
            f.write(_token_line("tok-writer", "trainer", "writer", "tags/"))
            f.write(_token_line("tok-admin", "boss", "admin", "tags/"))
        process = ServerProcess(os.path.join(work, "db"),
                                ["--auth-tokens", tokens])
        address = process.start()
        try:
            def meta(token):
                return [("authorization", f"Bearer {token}")]
            with grpc.insecure_channel(address) as channel:
                service = pb_grpc.CheckpointServiceStub(channel)
                service.BeginCheckpoint(pb.BeginCheckpointRequest(
                    job=JOB, step=1, world_size=1), timeout=30,
                    metadata=meta("tok-writer"))
                data = b"abc"
                digest = hashlib.sha256(data).digest()
                service.PutChunks(iter([pb.PutChunksRequest(
                    job=JOB, step=1,
                    chunks=[pb.ChunkData(sha256=digest, data=data)])]),
                    timeout=30, metadata=meta("tok-writer"))
                service.CommitShard(pb.CommitShardRequest(
                    job=JOB, step=1, world_size=1,
                    shard=pb.ShardManifest(format_version=1, rank=0, tensors=[
                        pb.TensorEntry(
                            name="w", dtype=pb.DType.Value("DTYPE_UINT8"),
                            global_shape=[3],
                            box=pb.Box(offsets=[0], lengths=[3]),
                            pieces=[pb.Piece(chunk=pb.ChunkRef(
                                sha256=digest, size=3))])])),
                    timeout=30, metadata=meta("tok-writer"))

                def tags(token, set=None, remove=()):
                    return service.SetCheckpointTags(
                        pb.SetCheckpointTagsRequest(
                            job=JOB, step=1, set=set or {},
                            remove=list(remove)),
                        timeout=30, metadata=meta(token))

                tags("tok-writer", set={"keep": "yes"})
                tags("tok-writer", set={"keep": "yes"})  # the same: fine
                for set_, remove in [({}, ["keep"]), ({"keep": "no"}, ())]:
                    code, details = _code(
                        lambda: tags("tok-writer", set_, remove))
                    assert code == grpc.StatusCode.PERMISSION_DENIED, details
                history = service.ListEvents(pb.ListEventsRequest(job=JOB),
                                             timeout=30,
                                             metadata=meta("tok-admin"))
                changes = [e.detail for e in history.events
                           if e.kind == pb.EventKind.Value(
                               "EVENT_KIND_TAGS_CHANGED")]
                assert changes == ["+keep=yes"], changes
                assert [e.principal for e in history.events][-1] == "trainer"
                tags("tok-admin", set={"keep": "no"})
                reply = tags("tok-admin", remove=["keep"])
                assert dict(reply.checkpoint.metadata.tags) == {}
        finally:
            process.stop()
