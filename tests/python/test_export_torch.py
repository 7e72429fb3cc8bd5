"""CheckpointManager.export(format="torch") and `python3 -m ckpt export
--format torch` against a real server: the .pt file torch.load opens as
the saved state (weights_only=True where the state allows), views of
multi-rank checkpoints, and errors that leave no file behind. Also the
flat restore of checkpoints without a state tree."""

import collections
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import ckpt
from ckpt import staged_files, weights_only
from ckpt.state_layout import STATE_TENSOR
from same_state import assert_same_state


def reads_floats_weights_only():
    """Whether this torch's torch.load(weights_only=True) reads a float
    (torch 1.13 does not; 2.x does)."""
    return weights_only.loads([0.5], torch) is None


def models():
    """Linear+LayerNorm models in float32 and bfloat16 (both run on the
    CPU), and one in float16 (whose CPU matmul torch 1.13 lacks: its
    parameters are compared instead)."""
    torch.manual_seed(0)

    def model(dtype):
        return torch.nn.Sequential(
            torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.ReLU(),
            torch.nn.Linear(16, 4)).to(dtype)
    return {"f32": model(torch.float32), "bf16": model(torch.bfloat16),
            "f16": model(torch.float16)}


def files_in(directory):
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def events(server, job):
    """The job's event history, from `ckpt events --json`."""
    done = subprocess.run(
        [os.path.join(os.environ["CKPT_BUILD_DIR"], "client", "ckpt"),
         "--server", server, "--json", "events", job],
        capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_exported_model_loads_weights_only_into_a_fresh_model(
        server, client, tmp_path):
    saved = models()
    manager = ckpt.CheckpointManager(client, "exp/model")
    manager.save({name: m.state_dict() for name, m in saved.items()}, 3,
                 metrics={"loss": 0.25}, tags=["run=a"])
    report = manager.export(3, tmp_path / "out", format="torch")
    assert report["files"] == ["checkpoint.pt", "ckpt_checkpoint.json"]
    assert files_in(tmp_path / "out") == ["checkpoint.pt",
                                          "ckpt_checkpoint.json"]
    loaded = torch.load(tmp_path / "out" / "checkpoint.pt",
                        weights_only=True)
    fresh = models()
    for name, model in fresh.items():
        for parameter in model.parameters():
            parameter.data.zero_()
        model.load_state_dict(loaded[name])
        for key, value in saved[name].state_dict().items():
            assert value.dtype == loaded[name][key].dtype
            assert torch.equal(value, model.state_dict()[key]), (name, key)
    x = torch.randn(5, 8)
    for name in ("f32", "bf16"):
        dtype = saved[name][0].weight.dtype
        assert torch.equal(saved[name](x.to(dtype)), fresh[name](x.to(dtype)))
    # The state_dict's _metadata (load_state_dict's version hooks) is kept.
    assert loaded["f32"]._metadata == saved["f32"].state_dict()._metadata
    document = json.loads((tmp_path / "out" /
                           "ckpt_checkpoint.json").read_text())
    assert document["job"] == "exp/model" and document["step"] == 3
    assert document["format"] == "ckpt-checkpoint"
    assert document["metadata"]["metrics"] == {"loss": 0.25}
    assert document["metadata"]["tags"] == {"run": "a"}
    assert document["export"] == {"full": True, "rank": None,
                                  "world_size": None, "format": "torch"}
    assert document["files"] == ["checkpoint.pt"]
    # As a safetensors export, it is recorded as rank 0's restore.
    assert [event["detail"] for event in events(server, "exp/model")
            if event["kind"] == "restored"] == ["rank 0"]


def nested_state(model, optimizer):
    state_dict = collections.OrderedDict(epoch=4)
    state_dict._metadata = {"": {"version": 2}}
    return {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "epoch": 7, "big": 2**70, "name": "run \u2603", "flags": (True, None),
        "history": [1, [2, (3,)]], "meta": state_dict,
        "counts": np.arange(6, dtype=np.int32).reshape(2, 3),
        "scale": np.float32(0.5), "ids": torch.arange(4),
        "mask": torch.tensor([True, False]),
        "z": torch.tensor([1 + 2j], dtype=torch.complex64),
    }


def trained():
    model = models()["f32"]
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(3, 8)).sum().backward()
    optimizer.step()
    return model, optimizer


def test_nested_state_round_trips_through_torch_export(client, tmp_path):
    model, optimizer = trained()
    state = nested_state(model, optimizer)
    manager = ckpt.CheckpointManager(client, "exp/nested")
    manager.save(state, 1)
    restored = manager.restore(1)
    # weights_only=False: exactly what restore() gives, numpy included.
    manager.export(1, tmp_path / "exact", format="torch", weights_only=False)
    exact = torch.load(tmp_path / "exact" / "checkpoint.pt",
                       weights_only=False)
    assert_same_state(restored, exact)
    assert exact["counts"].dtype == np.int32
    # weights_only=True: numpy values become tensors of the same dtype;
    # the optimizer's float hyperparameters need a torch that reads floats.
    target = tmp_path / "weights"
    if not reads_floats_weights_only():
        with pytest.raises(TypeError) as refused:
            manager.export(1, target, format="torch")
        assert "state['optimizer']['param_groups'][0]" in str(refused.value)
        assert "weights_only=False" in str(refused.value)
        assert files_in(target) == []
        return
    manager.export(1, target, format="torch")
    loaded = torch.load(target / "checkpoint.pt", weights_only=True)
    assert loaded["counts"].dtype == torch.int32
    assert torch.equal(loaded["counts"], torch.from_numpy(state["counts"]))
    assert loaded["scale"].dtype == torch.float32 and loaded["scale"].dim() == 0
    assert_same_state(loaded["optimizer"], restored["optimizer"])


def test_weights_only_converts_numpy_and_refuses_dtypes_torch_lacks(
        client, tmp_path):
    manager = ckpt.CheckpointManager(client, "exp/numpy")
    manager.save({"a": np.arange(3, dtype=np.int16), "s": np.int64(-3),
                  "b": np.array([True]), "h": np.float16([1.5])}, 1)
    manager.export(1, tmp_path / "ok", format="torch")
    loaded = torch.load(tmp_path / "ok" / "checkpoint.pt", weights_only=True)
    assert loaded["a"].dtype == torch.int16 and loaded["a"].tolist() == [
        0, 1, 2]
    assert loaded["s"].dtype == torch.int64 and loaded["s"].item() == -3
    assert loaded["b"].dtype == torch.bool
    assert loaded["h"].dtype == torch.float16
    manager.save({"u": {"v": np.arange(3, dtype=np.uint32)}}, 2)
    with pytest.raises(TypeError, match=r"state\['u'\]\['v'\]: a numpy "
                       "uint32 array"):
        manager.export(2, tmp_path / "u", format="torch")
    assert files_in(tmp_path / "u") == []
    # Kept as numpy without weights_only.
    manager.export(2, tmp_path / "u", format="torch", weights_only=False)
    loaded = torch.load(tmp_path / "u" / "checkpoint.pt", weights_only=False)
    assert loaded["u"]["v"].dtype == np.uint32


def two_rank_checkpoint(client, job, per_rank):
    """Ranks 0 and 1 save a sharded table, a replicated head, an identical
    config and, with `per_rank`, a value of their own."""
    table = torch.arange(24, dtype=torch.float32).reshape(6, 4)
    head = torch.full((3,), 2.0, dtype=torch.bfloat16)
    for rank in range(2):
        manager = ckpt.CheckpointManager(client, job, rank=rank,
                                         world_size=2)
        state = {"table": ckpt.Shard(table[rank * 3:rank * 3 + 3].clone(),
                                     (6, 4), (rank * 3, 0)),
                 "head": ckpt.Replicated(head), "config": {"layers": 2}}
        if per_rank:
            state["loader"] = {"position": 100 + rank}
        assert manager.save(state, 5)
    return table, head


def test_full_export_of_a_multi_rank_checkpoint(client, tmp_path):
    table, head = two_rank_checkpoint(client, "exp/sharded", per_rank=False)
    manager = ckpt.CheckpointManager(client, "exp/sharded", rank=1,
                                     world_size=2)
    manager.export(5, tmp_path / "full", format="torch")
    loaded = torch.load(tmp_path / "full" / "checkpoint.pt",
                        weights_only=True)
    assert sorted(loaded) == ["config", "head", "table"]
    assert torch.equal(loaded["table"], table)
    assert loaded["head"].dtype == torch.bfloat16
    assert torch.equal(loaded["head"], head)


def test_per_rank_values_need_a_rank_view(client, tmp_path):
    table, _ = two_rank_checkpoint(client, "exp/ranks", per_rank=True)
    manager = ckpt.CheckpointManager(client, "exp/ranks")
    with pytest.raises(ckpt.PartialRestoreError) as refused:
        manager.export(5, tmp_path / "full", format="torch")
    assert refused.value.unmapped == [(1, "loader/position")]
    assert "rank=R, world_size=2" in str(refused.value)
    assert files_in(tmp_path / "full") == []
    for rank in range(2):
        target = tmp_path / f"rank{rank}"
        report = manager.export(5, target, format="torch", rank=rank,
                                world_size=2)
        assert report["files"][0] == "checkpoint.pt"
        loaded = torch.load(target / "checkpoint.pt", weights_only=True)
        assert loaded["loader"] == {"position": 100 + rank}
        assert torch.equal(loaded["table"], table)  # sharded: whole
        document = json.loads((target / "ckpt_checkpoint.json").read_text())
        assert document["export"] == {"full": False, "rank": rank,
                                      "world_size": 2, "format": "torch"}
    # Another world size cannot map the per-rank values either.
    with pytest.raises(ckpt.PartialRestoreError, match="world_size=2"):
        manager.export(5, tmp_path / "r0of3", format="torch", rank=0,
                       world_size=3)


def test_export_errors_leave_no_file(client, tmp_path):
    manager = ckpt.CheckpointManager(client, "exp/errors")
    manager.save({"w": torch.ones(2)}, 1)
    with pytest.raises(KeyError):
        manager.export(99, tmp_path / "unknown", format="torch")
    assert not (tmp_path / "unknown").exists()
    # An existing file is never overwritten, nor the other one written.
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "checkpoint.pt").write_bytes(b"mine")
    with pytest.raises(ckpt.Error) as exists:
        manager.export(1, tmp_path / "busy", format="torch")
    assert exists.value.code == "ALREADY_EXISTS"
    assert "checkpoint.pt" in exists.value.message
    assert files_in(tmp_path / "busy") == ["checkpoint.pt"]
    assert (tmp_path / "busy" / "checkpoint.pt").read_bytes() == b"mine"
    # A path under a regular file.
    (tmp_path / "file").write_text("x")
    with pytest.raises(ckpt.Error) as bad:
        manager.export(1, tmp_path / "file" / "sub", format="torch")
    assert bad.value.code == "FAILED_PRECONDITION"
    assert "file" in bad.value.message
    # Arguments.
    with pytest.raises(ValueError, match="format must be one of"):
        manager.export(1, tmp_path / "x", format="onnx")
    with pytest.raises(ValueError, match="go together"):
        manager.export(1, tmp_path / "x", format="torch", rank=0)
    with pytest.raises(ValueError, match="not both"):
        manager.export(1, tmp_path / "x", format="torch", full=True, rank=0,
                       world_size=1)
    with pytest.raises(ValueError, match="rank must be < world_size"):
        manager.export(1, tmp_path / "x", format="torch", rank=2,
                       world_size=2)
    assert not (tmp_path / "x").exists()


def test_a_file_appearing_during_the_export_is_kept_and_nothing_added(
        client, tmp_path, monkeypatch):
    """The race the early check cannot see: ckpt_checkpoint.json appears
    after the check, so checkpoint.pt (linked first) is removed again."""
    manager = ckpt.CheckpointManager(client, "exp/race")
    manager.save({"w": torch.ones(2)}, 1)
    target = tmp_path / "out"
    target.mkdir()
    monkeypatch.setattr(staged_files, "check_free", lambda *args: None)
    (target / "ckpt_checkpoint.json").write_text("theirs")
    with pytest.raises(ckpt.Error, match="ALREADY_EXISTS"):
        manager.export(1, target, format="torch")
    assert files_in(target) == ["ckpt_checkpoint.json"]
    assert (target / "ckpt_checkpoint.json").read_text() == "theirs"


def test_a_failed_write_leaves_neither_file_nor_directory(
        client, tmp_path, monkeypatch):
    manager = ckpt.CheckpointManager(client, "exp/fail")
    manager.save({"w": torch.ones(2)}, 1)

    def save_half(state, out):
        out.write(b"half a file")
        raise RuntimeError("No space left on device")
    monkeypatch.setattr(torch, "save", save_half)
    with pytest.raises(RuntimeError, match="No space"):
        manager.export(1, tmp_path / "new" / "dir", format="torch")
    assert files_in(tmp_path) == []
    monkeypatch.undo()
    old_umask = os.umask(0o022)
    try:
        manager.export(1, tmp_path / "new" / "dir", format="torch")
    finally:
        os.umask(old_umask)
    for name in ("checkpoint.pt", "ckpt_checkpoint.json"):
        mode = os.stat(tmp_path / "new" / "dir" / name).st_mode & 0o777
        assert mode == 0o644, (name, oct(mode))


def flat_checkpoint(client, job, step):
    """A checkpoint without a state tree, as `ckpt put`, the C++ client or
    an import of another tool's safetensors files writes one."""
    arrays = {"model.embed.weight": np.arange(6, dtype=np.float32).reshape(
        3, 2), "model.norm.weight": np.array([1, 2, 3], dtype=np.int16)}
    client.save_shard(job, step, [
        (name, "bfloat16" if name == "model.norm.weight" else "float32",
         list(array.shape), [0] * array.ndim, list(array.shape), array)
        for name, array in arrays.items()])
    return arrays


def test_a_checkpoint_without_state_tree_restores_as_a_flat_dict(client,
                                                                 tmp_path):
    arrays = flat_checkpoint(client, "exp/flat", 2)
    manager = ckpt.CheckpointManager(client, "exp/flat")
    state = manager.restore()
    assert list(state) == ["model.embed.weight", "model.norm.weight"]
    assert torch.equal(state["model.embed.weight"],
                       torch.from_numpy(arrays["model.embed.weight"]))
    assert state["model.norm.weight"].dtype == torch.bfloat16
    assert torch.equal(state["model.norm.weight"].view(torch.int16),
                       torch.from_numpy(arrays["model.norm.weight"]))
    # into= and keys= work on it as on any state.
    into = {"model.embed.weight": torch.zeros(3, 2),
            "model.norm.weight": torch.zeros(3, dtype=torch.bfloat16)}
    assert manager.restore(into=into)["model.embed.weight"] is \
        into["model.embed.weight"]
    assert list(manager.restore(keys=["model.norm.weight"])) == [
        "model.norm.weight"]
    manager.export(2, tmp_path / "flat", format="torch")
    loaded = torch.load(tmp_path / "flat" / "checkpoint.pt",
                        weights_only=True)
    assert_same_state(state, loaded)


def test_shards_with_and_without_state_tree_are_refused(client):
    manager = ckpt.CheckpointManager(client, "exp/mixed", rank=0,
                                     world_size=2)
    manager.save({"w": torch.ones(2)}, 1)
    client.save_shard("exp/mixed", 1, [
        ("w", "float32", [2], [0], [2], np.ones(2, np.float32))], rank=1,
        world_size=2)
    with pytest.raises(ckpt.StateFormatError, match=STATE_TENSOR):
        ckpt.CheckpointManager(client, "exp/mixed", world_size=1).restore(1)


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "ckpt", *args],
                          capture_output=True, text=True, timeout=120,
                          env=env)


def test_python_m_ckpt_export_torch(server, client, tmp_path):
    manager = ckpt.CheckpointManager(client, "exp/cli")
    saved = models()["bf16"].state_dict()
    manager.save({"model": saved}, 10)
    env = dict(os.environ, CKPT_SERVER=server)
    done = run_cli("export", "exp/cli", "latest", str(tmp_path / "out"),
                   "--format", "torch", "--json", env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["step"] == 10 and report["format"] == "torch"
    loaded = torch.load(tmp_path / "out" / "checkpoint.pt",
                        weights_only=True)
    assert_same_state(dict(saved), dict(loaded["model"]))
    # Again: the files exist; one line on stderr, exit status 1.
    again = run_cli("export", "exp/cli", "10", str(tmp_path / "out"),
                    "--format", "torch", env=env)
    assert again.returncode == 1
    assert again.stderr.startswith("ckpt: ALREADY_EXISTS: export: ")
    assert len(again.stderr.splitlines()) == 1
    missing = run_cli("export", "exp/cli", "12", str(tmp_path / "o2"),
                      "--format", "torch", env=env)
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr
    # Import back; --json prints JSON even with a NaN metric.
    manager.save({"w": torch.ones(1)}, 11, metrics={"loss": float("nan")})
    assert run_cli("export", "exp/cli", "11", str(tmp_path / "o11"),
                   "--format", "torch", env=env).returncode == 0
    done = run_cli("import", str(tmp_path / "o11"), "exp/cli-back", "3",
                   "--json", env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["saved"]["checkpoint"]["metrics"] == {"loss": "NaN"}
    usage = run_cli("export", "exp/cli", "ten", str(tmp_path / "o3"),
                    env=env)
    assert usage.returncode == 2 and "STEP must be" in usage.stderr
    usage = run_cli("export", "exp/cli", "10", str(tmp_path / "o3"),
                    "--full", "--rank", "0", env=env)
    assert usage.returncode == 2
    usage = run_cli("export", "exp/cli", "10", str(tmp_path / "o3"),
                    "--rank", "0", env=env)
    assert usage.returncode == 2 and "go together" in usage.stderr
    assert files_in(tmp_path / "o2") == files_in(tmp_path / "o3") == []


def test_the_cpp_cli_runs_the_package_for_format_torch(server, client,
                                                       tmp_path):
    """`ckpt export --format torch` execs this package (the contract in
    docs/portability.md) and gets the same file."""
    manager = ckpt.CheckpointManager(client, "exp/cpp")
    saved = models()["f32"].state_dict()
    manager.save({"model": saved, "epoch": 2}, 8)
    env = dict(os.environ, CKPT_PYTHON=sys.executable)
    done = subprocess.run(
        [os.path.join(os.environ["CKPT_BUILD_DIR"], "client", "ckpt"),
         "--server", server, "--json", "export", "exp/cpp", "8",
         str(tmp_path / "out"), "--format", "torch", "--rank", "0",
         "--world-size", "1"], capture_output=True, text=True, env=env,
        timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["files"] == ["checkpoint.pt",
                                                "ckpt_checkpoint.json"]
    loaded = torch.load(tmp_path / "out" / "checkpoint.pt",
                        weights_only=True)
    assert loaded["epoch"] == 2
    assert_same_state(dict(saved), dict(loaded["model"]))


def token_line(token, principal, role, scope):
    return f"{hashlib.sha256(token.encode()).hexdigest()} {principal} " \
        f"{role} {scope}\n"


def test_python_m_ckpt_takes_the_token_from_the_environment(tmp_path):
    from conftest import ServerProcess
    token = "exp0rt-t0ken-" + os.urandom(8).hex()
    tokens = tmp_path / "tokens"
    tokens.write_text(token_line(token, "alice", "admin", "exp/"))
    data = tmp_path / "data"
    data.mkdir()
    process = ServerProcess(str(data), ["--auth-tokens", str(tokens)])
    address = process.start()
    try:
        owner = ckpt.Client(address, token=token)
        ckpt.CheckpointManager(owner, "exp/secured").save(
            {"w": torch.ones(2)}, 1)
        env = {key: value for key, value in os.environ.items()
               if not key.startswith("CKPT_")}
        env["CKPT_SERVER"] = address
        refused = run_cli("export", "exp/secured", "1",
                          str(tmp_path / "no"), "--format", "torch", env=env)
        assert refused.returncode == 1
        assert "UNAUTHENTICATED" in refused.stderr
        assert files_in(tmp_path / "no") == []
        done = run_cli("export", "exp/secured", "1", str(tmp_path / "yes"),
                       "--format", "torch", env=dict(env, CKPT_TOKEN=token))
        assert done.returncode == 0, done.stderr
        assert token not in done.stdout + done.stderr
        token_file = tmp_path / "token"
        token_file.write_text(token + "\n")
        done = run_cli("export", "exp/secured", "1", str(tmp_path / "file"),
                       "--format", "torch", "--token-file", str(token_file),
                       env=env)
        assert done.returncode == 0, done.stderr
        # A FIFO as the token file is refused, not waited on.
        fifo = tmp_path / "fifo"
        os.mkfifo(fifo)
        refused = run_cli("export", "exp/secured", "1", str(tmp_path / "f"),
                          "--format", "torch", "--token-file", str(fifo),
                          env=env)
        assert refused.returncode == 1 and "--token-file" in refused.stderr
    finally:
        process.stop()


def test_torch_export_imports_back_identical(client, tmp_path):
    model, optimizer = trained()
    state = nested_state(model, optimizer)
    source = ckpt.CheckpointManager(client, "exp/source")
    source.save(state, 4, metrics={"loss": float("nan"), "acc": 0.5},
                tags={"run": "b"})
    restored = source.restore(4)
    source.export(4, tmp_path / "pt", format="torch", weights_only=False)
    # Refused without allow_pickle where weights_only cannot read it.
    target = ckpt.CheckpointManager(client, "exp/target")
    if not reads_floats_weights_only():
        with pytest.raises(ValueError, match="allow_pickle=True"):
            target.import_dir(tmp_path / "pt", 9)
        assert target.checkpoints() == []
    report = ckpt.import_dir(client, tmp_path / "pt", "exp/target", 9,
                             allow_pickle=True)
    assert report["files"] == ["checkpoint.pt"]
    assert report["metadata_from_json"] is True
    assert report["saved"]["checkpoint_committed"]
    assert_same_state(restored, target.restore(9))
    [record] = target.checkpoints()
    assert record["tags"] == {"run": "b"} and record["metrics"]["acc"] == 0.5
    assert record["metrics"]["loss"] != record["metrics"]["loss"]  # NaN


def test_rank_views_import_back_as_their_ranks(client, tmp_path):
    table, head = two_rank_checkpoint(client, "exp/views", per_rank=True)
    manager = ckpt.CheckpointManager(client, "exp/views")
    for rank in range(2):
        manager.export(5, tmp_path / f"r{rank}", format="torch", rank=rank,
                       world_size=2)
    back = ckpt.CheckpointManager(client, "exp/views-back")
    back.import_dir(tmp_path / "r0", 5)
    assert back.latest_step is None  # rank 0 of 2: not committed yet
    back.import_dir(tmp_path / "r1", 5)
    for rank in range(2):
        state = ckpt.CheckpointManager(client, "exp/views-back", rank=rank,
                                       world_size=2).restore(5)
        assert state["loader"] == {"position": 100 + rank}
        assert torch.equal(state["table"], table)
        assert torch.equal(state["head"], head)
