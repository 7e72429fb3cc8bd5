"""CheckpointManager.export(format="safetensors") and ckpt.import_dir
against a real server: the files parse with an independent reader (json
for the header, numpy for the data), ckpt_checkpoint.json carries each
rank's objects, an export imports back to the same state (every dtype),
other tools' files import as a flat dict, and multi-rank views."""

import json
import os
import struct

import numpy as np
import pytest
import torch

import ckpt
from ckpt import tree_json
from ckpt.state_layout import STATE_TENSOR
from same_state import assert_same_state

NUMPY_OF = {"BOOL": np.bool_, "U8": np.uint8, "I8": np.int8,
            "I16": np.int16, "I32": np.int32, "I64": np.int64,
            "F16": np.float16, "BF16": np.uint16, "F32": np.float32,
            "F64": np.float64}


def read_safetensors(path):
    """{name: (dtype name, shape, numpy array of the raw elements)} and the
    __metadata__ of one file, read as the format says: an 8-byte
    little-endian header length, a JSON header, the data."""
    with open(path, "rb") as source:
        blob = source.read()
    (size,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + size])
    data = blob[8 + size:]
    metadata = header.pop("__metadata__", {})
    out = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        array = np.frombuffer(data[start:end], dtype=NUMPY_OF[info["dtype"]])
        out[name] = (info["dtype"], info["shape"],
                     array.reshape(info["shape"]))
    return out, metadata


def write_safetensors(path, tensors):
    """A safetensors file as other tools write one: {name: numpy array}
    (bfloat16 given as ("BF16", uint16 array))."""
    header, chunks, offset = {}, [], 0
    for name, value in tensors.items():
        dtype, array = value if isinstance(value, tuple) else (
            {np.dtype(v): k for k, v in NUMPY_OF.items()
             if k != "BF16"}[value.dtype], value)
        raw = np.ascontiguousarray(array).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def every_dtype_state():
    """Tensors of every dtype the client stores, and objects of every kind
    the typed tree holds."""
    generator = torch.Generator().manual_seed(3)
    base = torch.randn(4, 3, generator=generator)
    tensors = {
        "f32": base, "f64": base.double(), "f16": base.half(),
        "bf16": base.bfloat16(), "i8": (base * 10).to(torch.int8),
        "i16": (base * 100).to(torch.int16),
        "i32": (base * 1000).to(torch.int32),
        "i64": (base * 1e6).to(torch.int64), "u8": (base * 10).to(torch.uint8),
        "bool": base > 0, "c64": torch.complex(base, -base),
        "c128": torch.complex(base.double(), base.double()),
        "scalar": torch.tensor(2.5), "empty": torch.zeros(0, 3),
    }
    return {
        "tensors": tensors,
        "numpy": {"u32": np.arange(5, dtype=np.uint32),
                  "f32": np.linspace(0, 1, 4, dtype=np.float32)},
        "objects": {"epoch": 7, "big": -2**70, "lr": 1e-3, "nan":
                    float("nan"), "name": "run", "blob": b"\x00\x01",
                    "pair": (1, "a"), "np": np.float16(0.5),
                    "keys": {3: "int", ("a", 1): "tuple"}},
    }


def exported(manager, step, directory, **kwargs):
    report = manager.export(step, directory, **kwargs)
    document = json.loads(
        (directory / "ckpt_checkpoint.json").read_text())
    files = {}
    for name in report["files"]:
        if name.endswith(".safetensors"):
            tensors, _ = read_safetensors(directory / name)
            files.update(tensors)
    return report, document, files


def test_export_parses_and_carries_the_objects(client, tmp_path):
    manager = ckpt.CheckpointManager(client, "st/every")
    manager.save(every_dtype_state(), 2, metrics={"loss": 1.5})
    restored = manager.restore(2)
    report, document, files = exported(manager, 2, tmp_path / "out")
    assert report["format"] == "safetensors" and report["objects"]
    assert STATE_TENSOR not in files
    for name, tensor in restored["tensors"].items():
        dtype, shape, array = files[f"tensors/{name}"]
        if tensor.is_complex():  # F32/F64 pairs, listed as complex
            assert shape == list(tensor.shape) + [2]
        else:
            assert shape == list(tensor.shape)
        assert array.tobytes() == tensor.contiguous().view(-1).view(
            torch.uint8).numpy().tobytes() if tensor.numel() else \
            array.size == 0
    assert files["numpy/u32"][0] == "I32"  # stored as the signed width
    assert files["tensors/bf16"][0] == "BF16"
    objects = document["objects"]
    assert objects["encoding"] == "ckpt-tree-json/1"
    assert list(objects["ranks"]) == ["0"]
    state = objects["ranks"]["0"]
    assert state["objects"]["epoch"] == 7
    assert state["objects"]["big"] == {"$int": str(-2**70)}
    assert state["objects"]["nan"] == {"$float": "nan"}
    assert state["objects"]["pair"] == {"$tuple": [1, "a"]}
    assert state["tensors"]["bf16"] == {
        "$tensor": "tensors/bf16", "kind": "torch", "dtype": "bfloat16",
        "shape": [4, 3], "layout": "plain"}
    # The objects read back as the tree restore() decodes.
    tree = tree_json.from_json(state)
    assert tree["objects"]["big"] == -2**70
    assert tree["objects"]["keys"] == {3: "int", ("a", 1): "tuple"}
    assert_same_state(tree["objects"]["np"], np.float16(0.5))
    assert document["metadata"]["metrics"] == {"loss": 1.5}


def test_export_imports_back_to_the_same_state(client, tmp_path):
    manager = ckpt.CheckpointManager(client, "st/source")
    manager.save(every_dtype_state(), 2, tags=["origin=test"])
    restored = manager.restore(2)
    manager.export(2, tmp_path / "out")
    report = ckpt.import_dir(client, tmp_path / "out", "st/target", 5)
    assert report["objects"] and report["metadata_from_json"]
    assert report["saved"]["checkpoint_committed"]
    target = ckpt.CheckpointManager(client, "st/target")
    assert_same_state(restored, target.restore(5))
    assert target.checkpoints()[0]["tags"] == {"origin": "test"}
    # Without the objects: the tensors alone, as a flat dict.
    target.import_dir(tmp_path / "out", 6, objects=False)
    flat = target.restore(6)
    assert STATE_TENSOR not in flat
    assert torch.equal(flat["tensors/i64"], restored["tensors"]["i64"])
    assert flat["numpy/u32"].dtype == torch.int32  # no tree: its entry
    # A state restored from an import exports again the same.
    target.export(5, tmp_path / "again")
    _, first, _ = exported_json(tmp_path / "out")
    _, second, _ = exported_json(tmp_path / "again")
    assert first["objects"] == second["objects"]


def exported_json(directory):
    document = json.loads((directory / "ckpt_checkpoint.json").read_text())
    return None, document, None


def test_a_hugging_face_directory_imports_as_a_flat_dict(client, tmp_path):
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.LayerNorm(6))
    state = {name: value.detach().numpy()
             for name, value in model.state_dict().items()}
    names = sorted(state)
    directory = tmp_path / "hf"
    directory.mkdir()
    write_safetensors(directory / "model-00001-of-00002.safetensors",
                      {name: state[name] for name in names[:2]})
    write_safetensors(directory / "model-00002-of-00002.safetensors",
                      {name: state[name] for name in names[2:]})
    (directory / "model.safetensors.index.json").write_text(json.dumps({
        "metadata": {"total_size": 0},
        "weight_map": {name: f"model-0000{1 if i < 2 else 2}-of-00002."
                       "safetensors" for i, name in enumerate(names)}}))
    report = ckpt.import_dir(client, directory, "st/hf", 0,
                             metrics={"ppl": 3.5})
    assert not report["objects"] and not report["metadata_from_json"]
    manager = ckpt.CheckpointManager(client, "st/hf")
    loaded = manager.restore(0)
    assert sorted(loaded) == names
    fresh = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.LayerNorm(6))
    fresh.load_state_dict(loaded)
    x = torch.randn(2, 4)
    assert torch.equal(fresh(x), model(x))
    assert manager.checkpoints()[0]["metrics"] == {"ppl": 3.5}


def test_a_lying_file_is_refused_and_nothing_stored(client, tmp_path):
    directory = tmp_path / "bad"
    directory.mkdir()
    write_safetensors(directory / "model.safetensors",
                      {"w": np.zeros(4, dtype=np.float32)})
    raw = bytearray((directory / "model.safetensors").read_bytes())
    raw[8:8 + 60] = raw[8:8 + 60].replace(b"[0, 16]", b"[0, 12]")
    (directory / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(ValueError) as refused:
        ckpt.import_dir(client, directory, "st/bad", 1)
    assert "model.safetensors" in str(refused.value)
    assert refused.value.code == "INVALID_ARGUMENT"
    with pytest.raises(KeyError):
        client.list_checkpoints("st/bad")


def two_ranks(client, job, per_rank):
    table = torch.arange(40, dtype=torch.float32).reshape(10, 4)
    for rank in range(2):
        state = {"table": ckpt.Shard(table[rank * 5:rank * 5 + 5].clone(),
                                     (10, 4), (rank * 5, 0)),
                 "head": ckpt.Replicated(torch.ones(3)), "step": 11}
        if per_rank:
            state["loader"] = {"position": 100 + rank}
        ckpt.CheckpointManager(client, job, rank=rank,
                               world_size=2).save(state, 3)
    return table


def test_multi_rank_exports_and_their_imports(client, tmp_path):
    table = two_ranks(client, "st/ranks", per_rank=True)
    manager = ckpt.CheckpointManager(client, "st/ranks")
    _, document, files = exported(manager, 3, tmp_path / "full")
    assert sorted(document["objects"]["ranks"]) == ["0", "1"]
    assert np.array_equal(files["table"][2], table.numpy())
    # The ranks' states differ: one checkpoint rank cannot hold them.
    with pytest.raises(ValueError, match="differing states of ranks"):
        ckpt.import_dir(client, tmp_path / "full", "st/full-back", 3)
    with pytest.raises(KeyError):
        client.list_checkpoints("st/full-back")
    ckpt.import_dir(client, tmp_path / "full", "st/full-back", 3,
                    objects=False)
    assert torch.equal(ckpt.CheckpointManager(
        client, "st/full-back").restore(3)["table"], table)
    # Each rank's view imports back as that rank.
    originals = [ckpt.CheckpointManager(client, "st/ranks", rank=rank,
                                        world_size=2).restore(3)
                 for rank in range(2)]
    for rank in range(2):
        _, document, files = exported(manager, 3, tmp_path / f"r{rank}",
                                      rank=rank, world_size=2)
        assert list(document["objects"]["ranks"]) == [str(rank)]
        # The rank's rows of the sharded table (torch.chunk's split).
        assert np.array_equal(files["table"][2],
                              table[rank * 5:rank * 5 + 5].numpy())
        report = ckpt.import_dir(client, tmp_path / f"r{rank}",
                                 "st/ranks-back", 3)
        assert (report["rank"], report["world_size"]) == (rank, 2)
    for rank in range(2):
        back = ckpt.CheckpointManager(client, "st/ranks-back", rank=rank,
                                      world_size=2).restore(3)
        assert_same_state(originals[rank], back)
    # A rank view imported as another rank would not match its objects.
    with pytest.raises(ValueError, match="do not match the tensors"):
        ckpt.import_dir(client, tmp_path / "r1", "st/elsewhere", 3, rank=0,
                        world_size=1)


def test_identical_ranks_export_whole_and_import_with_objects(client,
                                                              tmp_path):
    table = two_ranks(client, "st/alike", per_rank=False)
    manager = ckpt.CheckpointManager(client, "st/alike")
    manager.export(3, tmp_path / "out")
    ckpt.import_dir(client, tmp_path / "out", "st/alike-back", 3)
    state = ckpt.CheckpointManager(client, "st/alike-back").restore(3)
    assert torch.equal(state["table"], table) and state["step"] == 11


def test_export_errors(client, tmp_path):
    manager = ckpt.CheckpointManager(client, "st/errors")
    manager.save({"w": torch.ones(2)}, 1)
    with pytest.raises(KeyError):
        manager.export(2, tmp_path / "missing")
    assert not os.path.exists(tmp_path / "missing")
    manager.export(1, tmp_path / "out")
    with pytest.raises(ckpt.Error) as exists:
        manager.export(1, tmp_path / "out")
    assert exists.value.code == "ALREADY_EXISTS"
    with pytest.raises(ValueError, match="weights_only=False goes with"):
        manager.export(1, tmp_path / "x", weights_only=False)
