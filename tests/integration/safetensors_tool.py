"""An independent safetensors reader and writer for portable_test.cc,
written from the format's description (an 8-byte little-endian header
length, a JSON header, raw little-endian data) with json and numpy only,
sharing no code with ckpt's C++ codec.

    safetensors_tool.py read DIR
        Reads DIR as a Hugging Face loader would (the index's weight_map,
        else every *.safetensors), checks what a strict reader checks, and
        prints {name: {"dtype", "shape", "sha256", "file"}} as JSON: dtype
        in numpy's spelling ("bfloat16" for BF16, read as raw uint16 bits),
        sha256 of the array's C-order bytes; a tensor listed in the
        metadata's "ckpt.complex" is viewed as complex (its last dimension
        of 2 becomes the real and imaginary parts).
    safetensors_tool.py write-hf DIR
        Writes a Hugging Face style directory: two files and
        model.safetensors.index.json, and prints what it wrote as `read`
        would.
"""

import hashlib
import json
import os
import struct
import sys

import numpy as np

DTYPES = {
    "BOOL": np.bool_, "U8": np.uint8, "I8": np.int8, "I16": np.int16,
    "I32": np.int32, "I64": np.int64, "F16": np.float16,
    "BF16": np.uint16,  # numpy has no bfloat16: its raw bits
    "F32": np.float32, "F64": np.float64,
}
NAMES = {"BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16",
         "I32": "int32", "I64": "int64", "F16": "float16", "BF16": "bfloat16",
         "F32": "float32", "F64": "float64"}


def read_file(path):
    with open(path, "rb") as f:
        data = f.read()
    (length,) = struct.unpack("<Q", data[:8])
    assert 8 + length <= len(data), "header longer than the file"
    assert (8 + length) % 8 == 0, "data section not 8-byte aligned"
    header = json.loads(data[8:8 + length].decode("utf-8"))
    body = data[8 + length:]
    metadata = header.pop("__metadata__", {})
    complex_names = set(json.loads(metadata.get("ckpt.complex", "[]")))
    out = {}
    end = 0
    for name, info in sorted(header.items(),
                             key=lambda kv: kv[1]["data_offsets"]):
        begin, stop = info["data_offsets"]
        assert begin == end, f"{name}: not contiguous"
        end = stop
        dtype = np.dtype(DTYPES[info["dtype"]]).newbyteorder("<")
        array = np.frombuffer(body[begin:stop], dtype=dtype)
        array = array.reshape(info["shape"])
        dtype_name = NAMES[info["dtype"]]
        if name in complex_names:
            array = np.ascontiguousarray(array).view(
                np.complex64 if info["dtype"] == "F32" else np.complex128)
            array = array.reshape(info["shape"][:-1])
            dtype_name = str(array.dtype)
        out[name] = {
            "dtype": dtype_name,
            "shape": list(array.shape),
            "sha256": hashlib.sha256(
                np.ascontiguousarray(array).tobytes()).hexdigest(),
            "file": os.path.basename(path),
        }
    assert end == len(body), "trailing bytes after the last tensor"
    return out


def read_dir(directory):
    index = os.path.join(directory, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        files = sorted(set(weight_map.values()))
    else:
        weight_map = None
        files = sorted(n for n in os.listdir(directory)
                       if n.endswith(".safetensors"))
    tensors = {}
    for name in files:
        for tensor, info in read_file(os.path.join(directory, name)).items():
            assert tensor not in tensors, f"{tensor} twice"
            if weight_map is not None:
                assert weight_map[tensor] == name, f"{tensor}: wrong file"
            tensors[tensor] = info
    if weight_map is not None:
        assert set(weight_map) == set(tensors), "index and files disagree"
    return tensors


def write_file(path, tensors):
    """tensors: [(name, safetensors dtype, numpy array)]."""
    header = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, dtype, array in tensors:
        size = array.nbytes
        header[name] = {"dtype": dtype, "shape": list(array.shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _, _, array in tensors:
            f.write(np.ascontiguousarray(array).astype(
                array.dtype.newbyteorder("<")).tobytes())


def write_hf(directory):
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(15)
    first = [
        ("model.embed_tokens.weight", "F16",
         rng.standard_normal((64, 16)).astype(np.float16)),
        ("model.layers.0.mlp.up_proj.weight", "BF16",
         rng.integers(0, 1 << 16, size=(16, 32), dtype=np.uint16)),
    ]
    second = [
        ("model.layers.0.self_attn.q_proj.weight", "F32",
         rng.standard_normal((16, 16)).astype(np.float32)),
        ("model.norm.num_batches", "I64", np.array([7], dtype=np.int64)),
        ("lm_head.weight", "F32",
         rng.standard_normal((64, 16)).astype(np.float32)),
    ]
    files = {"model-00001-of-00002.safetensors": first,
             "model-00002-of-00002.safetensors": second}
    weight_map = {}
    total = 0
    for name, tensors in files.items():
        write_file(os.path.join(directory, name), tensors)
        for tensor, _, array in tensors:
            weight_map[tensor] = name
            total += array.nbytes
    with open(os.path.join(directory, "model.safetensors.index.json"),
              "w") as f:
        json.dump({"metadata": {"total_size": total},
                   "weight_map": weight_map}, f, indent=2)
    return read_dir(directory)


def main():
    command, directory = sys.argv[1], sys.argv[2]
    result = read_dir(directory) if command == "read" else write_hf(directory)
    json.dump(result, sys.stdout, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
