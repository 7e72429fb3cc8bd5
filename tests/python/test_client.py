"""ckpt.Client: the thin binding of the C++ client library."""

import numpy as np
import pytest

import ckpt


def whole(name, array):
    """A tensor entry holding all of `array`."""
    shape = list(array.shape)
    return (name, str(array.dtype), shape, [0] * len(shape), shape, array)


def test_save_and_restore_round_trip_dtypes_and_shapes(client):
    arrays = {
        "f32": np.arange(12, dtype=np.float32).reshape(3, 4),
        "i64": np.array([-1, 2**40], dtype=np.int64),
        "f16": np.linspace(0, 1, 5).astype(np.float16),
        "bool": np.array([True, False, True]),
        "scalar": np.array(3.5, dtype=np.float64),
        "c64": np.array([1 + 2j], dtype=np.complex64),
        "empty": np.zeros((0, 3), dtype=np.int32),
    }
    result = client.save_shard("t/job", 7, [whole(n, a) for n, a in
                                            arrays.items()],
                               metrics={"val_loss": 0.5}, tags={"k": "v"})
    assert result["checkpoint_committed"]
    restored = {t[0]: t for t in client.restore_shard("t/job", 7, rank=0)}
    assert set(restored) == set(arrays)
    for name, array in arrays.items():
        _, dtype, global_shape, offsets, lengths, out = restored[name]
        assert dtype == str(array.dtype)
        assert global_shape == list(array.shape) == lengths
        assert offsets == [0] * array.ndim
        assert out.dtype == array.dtype and out.shape == array.shape
        np.testing.assert_array_equal(out, array)
        assert out.flags.writeable and out.flags.owndata is False

    [record] = client.list_checkpoints("t/job")
    assert record["step"] == 7 and record["state"] == "committed"
    assert record["metrics"] == {"val_loss": 0.5}
    assert record["tags"] == {"k": "v"}
    assert record["kind"] == "full" and record["base_steps"] == []
    assert 0 < record["bytes_added"] <= sum(
        a.nbytes for a in arrays.values())
    assert client.latest_step("t/job") == 7


def test_restore_into_caller_buffers(client):
    array = np.arange(1000, dtype=np.float32)
    client.save_shard("t/into", 1, [whole("a", array)])
    destination = np.empty_like(array)
    [(name, _, _, _, _, out)] = client.restore_shard_into(
        "t/into", 1, rank=0, into={"a": destination})
    assert name == "a" and out is destination
    np.testing.assert_array_equal(destination, array)
    with pytest.raises(ValueError, match="bytes"):
        client.restore_shard_into("t/into", 1, rank=0,
                                  into={"a": np.empty(10, np.float32)})
    with pytest.raises(ValueError, match="writable"):
        client.restore_shard_into("t/into", 1, rank=0, into={"a": b"x" * 4000})


def test_sharded_save_becomes_visible_when_all_ranks_commit(client):
    full = np.arange(8, dtype=np.int32)
    first = client.save_shard(
        "t/two", 3, [("x", "int32", [8], [0], [4], full[:4])],
        rank=0, world_size=2)
    assert not first["checkpoint_committed"]
    assert client.latest_step("t/two") is None
    second = client.save_shard(
        "t/two", 3, [("x", "int32", [8], [4], [4], full[4:])],
        rank=1, world_size=2)
    assert second["checkpoint_committed"]
    [(_, _, shape, offsets, lengths, out)] = client.restore_shard(
        "t/two", 3, rank=1)
    assert (shape, offsets, lengths) == ([8], [4], [4])
    np.testing.assert_array_equal(out, full[4:])


def test_retention_policy_set_and_get(client):
    for step in (1, 2, 3):
        client.save_shard("t/ret", step, [whole("a", np.zeros(1))])
    deleted = client.set_retention_policy("t/ret", {"max_to_keep": 1})
    assert deleted == [1, 2]
    assert client.get_retention_policy("t/ret") == {
        "max_to_keep": 1, "keep_checkpoint_every_n_hours": None,
        "keep_best": None, "keep_within": None, "keep_hourly": None,
        "keep_daily": None, "keep_weekly": None, "keep_monthly": None,
        "keep_tags": []}
    client.set_retention_policy(
        "t/ret", {"keep_best": (2, "val_loss", "min")})
    assert client.get_retention_policy("t/ret")["keep_best"] == (
        2, "val_loss", "min")


def test_errors_map_to_python_exceptions(client):
    # INVALID_ARGUMENT -> ValueError, with the status code attached.
    with pytest.raises(ValueError) as error:
        client.save_shard("no-slash", 1, [whole("a", np.zeros(2))])
    assert error.value.code == "INVALID_ARGUMENT"
    with pytest.raises(ValueError):  # bytes do not match the box
        client.save_shard("t/e", 1, [("a", "float32", [4], [0], [4],
                                      np.zeros(3, np.float32))])
    with pytest.raises(ValueError, match="unknown dtype"):
        client.save_shard("t/e", 1, [("a", "float128", [1], [0], [1],
                                      np.zeros(2, np.float64))])
    with pytest.raises(ValueError, match="buffer"):
        client.save_shard("t/e", 1, [("a", "uint8", [1], [0], [1], 42)])

    # A policy set before the job's first save creates the job (issue 17).
    assert client.set_retention_policy("t/e", {"max_to_keep": 1}) == []
    assert client.get_retention_policy("t/e")["max_to_keep"] == 1
    client.save_shard("t/e", 1, [whole("a", np.zeros(2))])
    with pytest.raises(ValueError, match="max_to_keep"):
        client.set_retention_policy("t/e", {"max_to_keep": 0})
    with pytest.raises(ValueError, match="mode"):
        client.set_retention_policy("t/e", {"keep_best": (1, "loss", "up")})
    with pytest.raises(KeyError) as error:
        client.restore_shard("t/e", 99)
    assert error.value.code == "NOT_FOUND"
    with pytest.raises(KeyError):
        client.list_checkpoints("t/unknown")
    assert client.latest_step("t/unknown") is None

    # Anything else -> ckpt.Error with the code's name and the message.
    with pytest.raises(ckpt.Error) as error:
        client.save_shard("t/e", 1, [whole("a", np.zeros(2))])
    assert error.value.code == "ALREADY_EXISTS"
    assert error.value.message and "ALREADY_EXISTS" in str(error.value)
    assert not isinstance(error.value, (ValueError, KeyError))

    unreachable = ckpt.Client("127.0.0.1:1")
    with pytest.raises(ckpt.Error) as error:
        unreachable.list_checkpoints("t/e")
    assert error.value.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED")


def test_save_releases_the_gil(client):
    # Another Python thread keeps running while a save is in flight.
    import threading
    big = np.random.default_rng(0).random(1 << 22)  # 32 MiB
    ticks = []
    stop = threading.Event()

    def tick():
        while not stop.is_set():
            ticks.append(1)
            stop.wait(0.001)

    thread = threading.Thread(target=tick)
    thread.start()
    try:
        before = len(ticks)
        client.save_shard("t/gil", 1, [whole("a", big)])
        during = len(ticks) - before
    finally:
        stop.set()
        thread.join()
    assert during > 0


def test_shared_memory_and_streamed_restores_are_identical(server):
    """A client on the server's host restores through shared memory by
    default; streaming (shared_memory_restore=False) gives the same arrays.
    The arrays live in the restore's memfd, and dropping them frees it."""
    import gc
    import os

    shared = ckpt.Client(server, connect_timeout=10.0)
    streamed = ckpt.Client(server, connect_timeout=10.0,
                           shared_memory_restore=False)
    rng = np.random.default_rng(5)
    arrays = {f"t{i}": rng.standard_normal((64 + i, 300)).astype(np.float32)
              for i in range(6)}
    arrays["again"] = arrays["t2"].copy()  # the same chunks in two places
    shared.save_shard("t/shm", 1, [whole(n, a) for n, a in arrays.items()])

    def memfd_maps():
        with open(f"/proc/{os.getpid()}/maps") as maps:
            return sum("memfd:ckpt-restore" in line for line in maps)

    gc.collect()  # an earlier test's restore awaiting collection
    before = memfd_maps()
    via_shm = {t[0]: t[5] for t in shared.restore_shard("t/shm", 1)}
    assert memfd_maps() == before + 1
    via_stream = {t[0]: t[5] for t in streamed.restore_shard("t/shm", 1)}
    assert memfd_maps() == before + 1  # streaming uses private memory
    for name, array in arrays.items():
        np.testing.assert_array_equal(via_shm[name], array)
        np.testing.assert_array_equal(via_stream[name], array)
        assert via_shm[name].flags.writeable
    via_shm["t0"][0, 0] = 42.0  # each tensor is its own memory
    assert via_shm["t1"][0, 0] == arrays["t1"][0, 0]
    del via_shm
    gc.collect()
    assert memfd_maps() == before
