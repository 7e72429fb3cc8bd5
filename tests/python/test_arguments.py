"""Arguments of ckpt.CheckpointManager and ckpt.Client: CKPT_SERVER as the
address by default, save(tags=...), and wrong types or values refused with
a TypeError or ValueError naming the argument (never a pybind11 conversion
error, never a bool taken for a number), before anything is stored."""

import numpy as np
import pytest
import torch

import ckpt


def test_server_defaults_to_ckpt_server_as_the_cli(server, monkeypatch):
    monkeypatch.setenv("CKPT_SERVER", server)
    with ckpt.CheckpointManager(job="t/env") as manager:
        assert manager.save({"w": torch.ones(2)}, 1)
    assert ckpt.Client().latest_step("t/env") == 1
    assert ckpt.Client(None, 10.0).latest_step("t/env") == 1
    # An explicit address wins over the variable.
    monkeypatch.setenv("CKPT_SERVER", "127.0.0.1:1")
    with ckpt.CheckpointManager(server, "t/env") as manager:
        assert manager.latest_step == 1


@pytest.mark.parametrize("value", [None, ""])
def test_no_server_and_no_ckpt_server_is_a_clear_error(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("CKPT_SERVER", raising=False)
    else:
        monkeypatch.setenv("CKPT_SERVER", value)
    for make in (lambda: ckpt.CheckpointManager(job="t/x"),
                 lambda: ckpt.Client()):
        with pytest.raises(ValueError, match=r"server: .*CKPT_SERVER"):
            make()


# (constructor keyword arguments, exception type, text the message starts
# with: it names the argument).
MANAGER_ERRORS = [
    (dict(keep_checkpoint_every_n_hours="6h", max_to_keep=2), TypeError,
     "keep_checkpoint_every_n_hours must be a number, not str '6h'"),
    (dict(keep_checkpoint_every_n_hours=0, max_to_keep=2), ValueError,
     "keep_checkpoint_every_n_hours must be > 0"),
    (dict(keep_checkpoint_every_n_hours=float("inf"), max_to_keep=2),
     ValueError, "keep_checkpoint_every_n_hours must be finite"),
    (dict(keep_checkpoint_every_n_hours=6), ValueError,
     "keep_checkpoint_every_n_hours needs max_to_keep"),
    (dict(max_to_keep=2.5), TypeError, "max_to_keep must be an integer"),
    (dict(max_to_keep=True), TypeError, "max_to_keep must be an integer, "
     "not the bool True"),
    (dict(max_to_keep="3"), TypeError, "max_to_keep must be an integer"),
    (dict(max_to_keep=0), ValueError, "max_to_keep must be >= 1"),
    (dict(max_to_keep=2**31), ValueError, "max_to_keep must be <="),
    (dict(keep_best=("x",)), ValueError, "keep_best must be (k, metric)"),
    (dict(keep_best="val_loss"), TypeError, "keep_best must be"),
    (dict(keep_best=(1.5, "val_loss")), TypeError,
     "keep_best k must be an integer"),
    (dict(keep_best=(0, "val_loss")), ValueError, "keep_best k must be >= 1"),
    (dict(keep_best=(1, 3)), TypeError, "keep_best metric must be a str"),
    (dict(keep_best=(1, "")), ValueError, "keep_best metric must not be "
     "empty"),
    (dict(keep_best=(1, "perplexity")), ValueError,
     "keep_best mode: cannot tell whether metric 'perplexity'"),
    (dict(keep_best=(1, "val_loss", "down")), ValueError,
     "keep_best mode must be one of 'min', 'max', 'auto'"),
    (dict(keep_best={"k": 1, "metrik": "loss"}), ValueError,
     'keep_best as a dict needs "k" and "metric"'),
    (dict(checkpoint_interval=2.5), TypeError,
     "checkpoint_interval must be an integer"),
    (dict(checkpoint_interval=-1), ValueError,
     "checkpoint_interval must be >= 0"),
    (dict(rank=-1, world_size=2), ValueError, "rank must be >= 0"),
    (dict(rank="0", world_size=2), TypeError, "rank must be an integer"),
    (dict(rank=0, world_size=0), ValueError, "world_size must be >= 1"),
    (dict(rank=2, world_size=2), ValueError,
     "rank must be < world_size (2), not 2"),
    (dict(rank=True, world_size=2), TypeError, "rank must be an integer, "
     "not the bool"),
    (dict(rank=0, world_size=1.0), TypeError,
     "world_size must be an integer"),
    (dict(async_save="yes"), TypeError, "async_save must be True or False"),
    (dict(incremental=1), TypeError, "incremental must be True or False"),
    (dict(allow_pickle="False"), TypeError,
     "allow_pickle must be True or False"),
    (dict(delta_mode="sometimes"), ValueError, "delta_mode must be one of"),
    (dict(max_delta_fraction=0), ValueError, "max_delta_fraction must be > 0"),
    (dict(max_delta_fraction=1.5), ValueError,
     "max_delta_fraction must be in (0, 1]"),
    (dict(max_delta_fraction="half"), TypeError,
     "max_delta_fraction must be a number"),
    (dict(max_chain_length=0), ValueError, "max_chain_length must be >= 1"),
    (dict(save_best_only="yes", monitor="val_loss"), TypeError,
     "save_best_only must be True or False"),
    (dict(save_best_only=True), ValueError,
     "save_best_only=True needs monitor"),
    (dict(save_best_only=True, monitor=""), ValueError,
     "monitor must not be empty"),
    (dict(save_best_only=True, monitor="x" * 257), ValueError,
     "monitor 'xxx"),
    (dict(save_best_only=True, monitor="bleu"), ValueError,
     "mode: cannot tell whether metric 'bleu'"),
    (dict(save_best_only=True, monitor="val_loss", mode="lowest"),
     ValueError, "mode must be one of"),
    (dict(monitor="val_loss"), ValueError,
     "monitor and mode go with save_best_only=True"),
    (dict(mode="min"), ValueError,
     "monitor and mode go with save_best_only=True"),
    (dict(tls_ca=3), TypeError, "tls_ca must be a file name"),
    (dict(token=b"secret"), TypeError, "token must be a str"),
]


@pytest.mark.parametrize("kwargs,error,message", MANAGER_ERRORS,
                         ids=[str(i) for i in range(len(MANAGER_ERRORS))])
def test_manager_arguments_are_checked_naming_the_argument(server, kwargs,
                                                           error, message):
    with pytest.raises(error) as raised:
        ckpt.CheckpointManager(server, "t/args", **kwargs)
    assert str(raised.value).startswith(message), str(raised.value)


def test_manager_server_and_job_are_checked(server):
    with pytest.raises(TypeError, match="^job is required"):
        ckpt.CheckpointManager(server, None)
    with pytest.raises(TypeError, match="^job is required"):
        ckpt.CheckpointManager(server)  # "t/x" forgotten
    with pytest.raises(TypeError, match="^job is required; 't/x' was passed "
                       "as the server"):
        ckpt.CheckpointManager("t/x")
    with pytest.raises(ValueError, match="^job 't/\\\\ud800' is not valid "
                       "Unicode"):
        ckpt.CheckpointManager(server, "t/\ud800")
    with pytest.raises(TypeError, match="^job must be a str"):
        ckpt.CheckpointManager(server, b"t/x")
    with pytest.raises(TypeError, match="^server must be a str"):
        ckpt.CheckpointManager(7070, "t/x")
    with pytest.raises(ValueError, match="^INVALID_ARGUMENT: .*job name"):
        ckpt.CheckpointManager(server, "no-tenant")


def test_save_arguments_are_checked_and_nothing_is_stored(server):
    job = "t/save-args"
    with ckpt.CheckpointManager(server, job, incremental=False) as manager:
        cases = [
            (dict(step="10"), TypeError, "step must be an integer, not str"),
            (dict(step=10.0), TypeError, "step must be an integer, not float"),
            (dict(step=True), TypeError, "step must be an integer, not the "
             "bool True"),
            (dict(step=-1), ValueError, "step must be >= 0"),
            (dict(step=2**63), ValueError, "step must be <="),
            (dict(metrics={"a": "x"}), TypeError,
             "metrics['a'] must be a number, not str 'x'"),
            (dict(metrics={"a": True}), TypeError,
             "metrics['a'] must be a number, not the bool True"),
            (dict(metrics={"a": 10**400}), ValueError,
             "metrics['a'] 1000"),
            (dict(metrics={"a": np.array([1.0, 2.0])}), TypeError,
             "metrics['a'] must be a number"),
            (dict(metrics={"a": 1j}), TypeError,
             "metrics['a'] must be a number"),
            (dict(metrics={"a": torch.ones(2)}), TypeError,
             "metrics['a'] must be a number"),
            (dict(metrics={3: 1.0}), TypeError,
             "metrics: a metric name must be a str"),
            (dict(metrics={"": 1.0}), ValueError,
             "metrics: a metric name must not be empty"),
            (dict(metrics=[("a", 1.0)]), TypeError, "metrics must be a dict"),
            (dict(tags="a=b"), TypeError, "tags must be a list"),
            (dict(tags=["a"]), ValueError, 'tags: each tag must be '
             '"NAME=VALUE"'),
            (dict(tags=["=b"]), ValueError, 'tags: each tag must be '
             '"NAME=VALUE"'),
            (dict(tags=[1]), TypeError, "tags: each tag must be"),
            (dict(tags=["a=1", "a=2"]), ValueError,
             "tags: tag 'a' is given twice"),
            (dict(tags={"a": 1}), TypeError, "tags['a'] must be a str"),
            (dict(tags={"a=b": "c"}), ValueError,
             "tags: tag name 'a=b' contains '='"),
            (dict(tags={"k" * 257: "v"}), ValueError,
             "tags: a tag name 'kkk"),
            (dict(tags={"k": "v" * 4097}), ValueError, "tags['k'] 'vvv"),
            (dict(dirty_rows={"w": [0]}), ValueError,
             "dirty_rows needs CheckpointManager(..., incremental=True)"),
        ]
        for kwargs, error, message in cases:
            arguments = {"step": 1, **kwargs}
            with pytest.raises(error) as raised:
                manager.save({"w": torch.ones(2)}, **arguments)
            assert str(raised.value).startswith(message), (kwargs,
                                                           raised.value)
        assert manager.all_steps() == []
        # numpy and torch integers are integers; numpy and torch scalars
        # are numbers.
        assert manager.save({"w": torch.ones(2)}, np.int64(3),
                            metrics={"a": np.float32(0.5),
                                     "b": torch.tensor(2),
                                     "c": torch.tensor([0.25]),
                                     "d": np.array(0.75),
                                     "e": np.array([[1]], np.int8)})
        assert manager.save({"w": torch.ones(2)}, torch.tensor(4))
        assert manager.all_steps() == [3, 4]
        assert manager.checkpoints()[0]["metrics"] == {
            "a": 0.5, "b": 2.0, "c": 0.25, "d": 0.75, "e": 1.0}


def test_save_tags_as_the_cli_stores_them(server):
    with ckpt.CheckpointManager(server, "t/tags") as manager:
        assert manager.save({"w": torch.ones(2)}, 1,
                            tags=["release=v1", "note=a=b", "empty="])
        assert manager.save({"w": torch.ones(2)}, 2,
                            tags={"release": "v2", "é": "ü"})
        assert manager.save({"w": torch.ones(2)}, 3)
        records = manager.checkpoints()
    assert [r["tags"] for r in records] == [
        {"release": "v1", "note": "a=b", "empty": ""},
        {"release": "v2", "é": "ü"}, {}]
    # The same metadata as `ckpt put --tag`: ckpt.Client takes both forms.
    client = ckpt.Client(server)
    client.save_shard("t/tags", 4, [("x", "uint8", [1], [0], [1], b"x")],
                      tags=["k=v"])
    assert client.list_checkpoints("t/tags")[-1]["tags"] == {"k": "v"}


def test_tags_of_several_ranks_merge_first_value_first(server):
    rank0 = ckpt.CheckpointManager(server, "t/tags2", rank=0, world_size=2)
    rank1 = ckpt.CheckpointManager(server, "t/tags2", rank=1, world_size=2)
    rank0.save({"w": torch.ones(1)}, 1, tags=["by=rank0"])
    rank1.save({"w": torch.ones(1)}, 1, tags=["by=rank1", "only=rank1"])
    assert rank0.checkpoints()[0]["tags"] == {"by": "rank0", "only": "rank1"}


CLIENT_ERRORS = [
    (lambda c: c.delete_checkpoint("t/c", True), TypeError,
     "step must be an integer, not the bool True"),
    (lambda c: c.delete_checkpoint("t/c", "1"), TypeError,
     "step must be an integer"),
    (lambda c: c.latest_step(None), TypeError, "job is required"),
    (lambda c: c.list_checkpoints("t/c", include_uncommitted="yes"),
     TypeError, "include_uncommitted must be True or False"),
    (lambda c: c.restore_shard("t/c", 1.0), TypeError,
     "step must be an integer"),
    (lambda c: c.restore_shard("t/c", 1, rank=-1), ValueError,
     "rank must be >= 0"),
    (lambda c: c.set_retention_policy("t/c", {"max_to_keep": 2.5}),
     TypeError, "max_to_keep must be an integer"),
    (lambda c: c.set_retention_policy(
        "t/c", {"keep_checkpoint_every_n_hours": "6h", "max_to_keep": 1}),
     TypeError, "keep_checkpoint_every_n_hours must be a number"),
    (lambda c: c.set_retention_policy("t/c", {"keep_last": 2}), ValueError,
     "policy: unknown key(s) ['keep_last']"),
    (lambda c: c.set_retention_policy("t/c", [("max_to_keep", 2)]),
     TypeError, "policy must be a dict"),
    (lambda c: c.abort_checkpoint("t/c", 1, reason=3), TypeError,
     "reason must be a str"),
    (lambda c: c.save_shard("t/c", True, []), TypeError,
     "step must be an integer, not the bool True"),
    (lambda c: c.save_shard("t/c", 1, [], rank=1, world_size=1), ValueError,
     "rank must be < world_size (1), not 1"),
    (lambda c: c.save_shard("t/c", 1, [], metrics={"a": "x"}), TypeError,
     "metrics['a'] must be a number"),
    (lambda c: c.save_shard("t/c", 1, [], chunk_bytes=0), ValueError,
     "chunk_bytes must be >= 1"),
    (lambda c: c.save_shard("t/c", 1, [], writer_time="now"), TypeError,
     "writer_time must be a number"),
    (lambda c: c.save_shard("t/c", 1, [],
                            retention_policy={"keep_best": (1, "bleu")}),
     ValueError, "keep_best mode: cannot tell"),
]


@pytest.mark.parametrize("call,error,message", CLIENT_ERRORS,
                         ids=[str(i) for i in range(len(CLIENT_ERRORS))])
def test_client_arguments_are_checked_naming_the_argument(client, call,
                                                          error, message):
    client.save_shard("t/c", 1, [("x", "uint8", [1], [0], [1], b"x")])
    with pytest.raises(error) as raised:
        call(client)
    assert str(raised.value).startswith(message), str(raised.value)
    # Nothing was deleted, aborted or added.
    assert [r["step"] for r in client.list_checkpoints(
        "t/c", include_uncommitted=True)] == [1]
    assert client.get_retention_policy("t/c") is None


def test_client_constructor_arguments_are_checked():
    cases = [
        (lambda: ckpt.Client(7070), TypeError, "server must be a str"),
        (lambda: ckpt.Client("127.0.0.1:1", "10"), TypeError,
         "connect_timeout must be a number"),
        (lambda: ckpt.Client("127.0.0.1:1", -1), ValueError,
         "connect_timeout must be >= 0"),
        (lambda: ckpt.Client("127.0.0.1:1", shared_memory_restore="no"),
         TypeError, "shared_memory_restore must be True or False"),
        (lambda: ckpt.Client("127.0.0.1:1", tls_cert=1), TypeError,
         "tls_cert must be a file name"),
        (lambda: ckpt.Client("127.0.0.1:1", tls_server_name=1), TypeError,
         "tls_server_name must be a str"),
    ]
    for make, error, message in cases:
        with pytest.raises(error) as raised:
            make()
        assert str(raised.value).startswith(message), str(raised.value)


def test_a_manager_accepts_the_bindings_own_client(server):
    raw = ckpt._ckpt.Client(server)
    with ckpt.CheckpointManager(raw, "t/raw") as manager:
        assert manager.save({"w": torch.ones(1)}, 1)
        assert manager.client is raw
