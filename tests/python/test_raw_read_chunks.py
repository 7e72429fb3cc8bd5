"""ReadChunks through the raw gRPC API, as any client that can reach the
port could call it. The server serves this method raw (its answers encoded
by hand, server/rpc/chunk_answer_encoding.h, and its request parsed by
hand): request bytes that are no ReadChunksRequest are refused with
INVALID_ARGUMENT, and the answers parse as the ReadChunksResponse messages
they stand for, each the requested chunk whose bytes hash to its id."""

import hashlib

import grpc
import pytest

import raw_api

METHOD = "/ckpt.v1.CheckpointService/ReadChunks"


def raw_read(server, request_bytes):
    """The raw answers of one ReadChunks call (a list of bytes)."""
    with grpc.insecure_channel(server) as channel:
        call = channel.unary_stream(METHOD, request_serializer=None,
                                    response_deserializer=None)
        return list(call(request_bytes, timeout=30))


def test_request_bytes_that_do_not_parse_are_invalid_argument(server):
    for garbage in (b"\xff\xff\xff", b"\x0a\x05ab", b"\x12\x80\x80\x80\x80\x10"):
        with pytest.raises(grpc.RpcError) as refused:
            raw_read(server, garbage)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a ReadChunksRequest" in refused.value.details()


def test_answers_are_the_requested_chunks_as_protobuf_messages(server):
    pb, _ = raw_api.stubs()
    chunks = [b"", b"x", bytes(range(256)) * 700, b"\x00" * (1 << 20)]
    raw_api.plant_shard(server, "raw/read", 1, [
        (f"t{i}", "uint8", [len(data)], data)
        for i, data in enumerate(chunks) if data])
    wanted = [hashlib.sha256(data).digest() for data in chunks if data]
    # In reverse, and one twice: answers follow the request's order.
    wanted = wanted[::-1] + wanted[:1]
    request = pb.ReadChunksRequest(job="raw/read", sha256=wanted)
    answers = raw_read(server, request.SerializeToString())
    assert len(answers) == len(wanted)
    for digest, raw in zip(wanted, answers):
        answer = pb.ReadChunksResponse.FromString(raw)
        assert answer.chunk.sha256 == digest
        assert hashlib.sha256(answer.chunk.data).digest() == digest
        # Byte for byte what protobuf itself writes for that message.
        assert answer.SerializeToString() == raw


def test_an_absent_chunk_ends_the_stream_not_found(server):
    pb, _ = raw_api.stubs()
    request = pb.ReadChunksRequest(job="raw/absent",
                                   sha256=[hashlib.sha256(b"none").digest()])
    with pytest.raises(grpc.RpcError) as refused:
        raw_read(server, request.SerializeToString())
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
