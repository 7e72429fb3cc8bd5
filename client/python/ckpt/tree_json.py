"""The typed tree (ckpt/tree.py) as JSON: how an export writes each rank's
non-tensor state under "objects" in ckpt_checkpoint.json
(docs/portability.md, "Objects in ckpt_checkpoint.json").

Plain JSON where JSON can say it exactly, a tagged object where it cannot,
so that from_json(to_json(tree)) gives back the same values of the same
types:

    None, True, False          null, true, false
    int, |v| <= 2**53          a number without '.' or exponent
    int beyond                 {"$int": "<decimal>"} ("0x<hex>" past 13000
                               bits, where Python refuses the decimal)
    float, finite              a number with '.' or an exponent (Python's
                               repr: it reads back bit for bit)
    float, not finite          {"$float": "inf" | "-inf" | "nan"}; a NaN
                               other than the usual one adds "bits": its
                               64 bits as 16 hex digits
    complex                    {"$complex": [real, imag]} (float nodes)
    str                        a string; one with lone surrogates (not
                               Unicode) {"$str_utf8": base64 of its UTF-8
                               with surrogatepass}
    bytes, bytearray           {"$bytes": base64}, {"$bytearray": base64}
    list                       an array
    tuple                      {"$tuple": [...]}
    dict                       an object, when every key is a str that
                               does not start with "$"; otherwise
                               {"$dict": [[key, value], ...]}
    OrderedDict                {"$ordered_dict": [[key, value], ...]}, and
                               "_metadata": its state_dict metadata if any
    Counter                    {"$counter": [[key, value], ...]}
    numpy scalar               {"$numpy": dtype, "value": node of .item()}
    a tensor                   {"$tensor": entry name, "kind": "torch" |
                               "numpy", "dtype": ..., "shape": [...],
                               "layout": "plain" | "sharded" | "replicated"}
    anything else              {"$pickle": base64 of its pickle} (a state
                               saved with allow_pickle=True only)

Keys in [key, value] pairs are nodes too. Each tagged object has exactly
the keys listed; from_json refuses anything else (StateFormatError).
"""

import base64
import collections
import math
import pickle
import struct
import warnings

import numpy as np

from ckpt import tree
from ckpt.tree import StateFormatError, TensorRef

ENCODING = "ckpt-tree-json/1"
_EXACT_INT = 2**53
_DECIMAL_BITS = 13000  # about 3900 digits; Python refuses str() past 4300
_CANONICAL_NAN = struct.pack("<d", math.nan)


def _same_number(a, b):
    """Whether numbers `a` and `b` are equal (two NaNs are)."""
    if type(a) is not type(b):
        return False
    parts = (a.real, a.imag, b.real, b.imag) if type(a) is complex else \
        (a, 0, b, 0)
    return all(x == y or (x != x and y != y)
               for x, y in zip(parts[:2], parts[2:]))


def _b64(raw):
    return base64.b64encode(bytes(raw)).decode("ascii")


def _float(value):
    if math.isfinite(value):
        return value
    if math.isinf(value):
        return {"$float": "inf" if value > 0 else "-inf"}
    node = {"$float": "nan"}
    raw = struct.pack("<d", value)
    if raw != _CANONICAL_NAN:
        node["bits"] = struct.unpack("<Q", raw)[0].to_bytes(8, "big").hex()
    return node


def _int(value):
    if -_EXACT_INT <= value <= _EXACT_INT:
        return value
    if value.bit_length() <= _DECIMAL_BITS:
        return {"$int": str(value)}
    return {"$int": hex(value)}


def _str(value):
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return {"$str_utf8": _b64(value.encode("utf-8", "surrogatepass"))}


def _pairs(mapping, depth):
    return [[to_json(key, depth + 1), to_json(item, depth + 1)]
            for key, item in mapping.items()]


def to_json(node, depth=0):
    """The JSON value (dicts, lists, str, numbers, None, bools) of a
    decoded tree `node` (TensorRefs in place of tensors)."""
    if depth > tree.MAX_DEPTH:
        raise ValueError(f"the state nests deeper than {tree.MAX_DEPTH} "
                         "levels")
    kind = type(node)
    if node is None or kind is bool:
        return node
    if kind is int:
        return _int(node)
    if kind is float:
        return _float(node)
    if kind is str:
        return _str(node)
    if kind is complex:
        return {"$complex": [_float(node.real), _float(node.imag)]}
    if kind is bytes:
        return {"$bytes": _b64(node)}
    if kind is bytearray:
        return {"$bytearray": _b64(node)}
    if kind is list:
        return [to_json(item, depth + 1) for item in node]
    if kind is tuple:
        return {"$tuple": [to_json(item, depth + 1) for item in node]}
    if kind is dict:
        if all(type(key) is str and not key.startswith("$") and
               _str(key) is key for key in node):
            return {key: to_json(item, depth + 1)
                    for key, item in node.items()}
        return {"$dict": _pairs(node, depth)}
    if kind is collections.OrderedDict:
        out = {"$ordered_dict": _pairs(node, depth)}
        metadata = getattr(node, "_metadata", None)
        if metadata is not None:
            out["_metadata"] = to_json(metadata, depth + 1)
        return out
    if kind is collections.Counter:
        return {"$counter": _pairs(node, depth)}
    if kind is TensorRef:
        return {"$tensor": _str(node.name), "kind": node.kind,
                "dtype": node.dtype, "shape": list(node.shape),
                "layout": node.layout}
    if isinstance(node, np.generic) and \
            node.dtype.name in tree.NUMPY_STORED_DTYPE:
        return {"$numpy": node.dtype.name,
                "value": to_json(node.item(), depth + 1)}
    # Only a state decoded with allow_pickle holds anything else.
    return {"$pickle": _b64(pickle.dumps(node,
                                         protocol=pickle.HIGHEST_PROTOCOL))}


class _Reader:
    """from_json's strict reader; `where` in errors is a JSON path."""

    def __init__(self, allow_pickle):
        self.allow_pickle = allow_pickle

    def fail(self, where, problem):
        raise StateFormatError(f"objects JSON at {where}: {problem}")

    def node(self, value, where, depth):
        if depth > tree.MAX_DEPTH:
            self.fail(where, f"nests deeper than {tree.MAX_DEPTH} levels")
        if value is None or type(value) in (bool, int, str):
            return value
        if type(value) is float:
            if not math.isfinite(value):
                self.fail(where, "a JSON number that is not finite")
            return value
        if type(value) is list:
            return [self.node(item, f"{where}[{index}]", depth + 1)
                    for index, item in enumerate(value)]
        if type(value) is not dict:
            self.fail(where, f"a {type(value).__name__} is not JSON")
        tags = [key for key in value if key.startswith("$")]
        if not tags:
            return {key: self.node(item, f"{where}.{key}", depth + 1)
                    for key, item in value.items()}
        if len(tags) != 1:
            self.fail(where, f"several tags {tags}")
        tag = tags[0]
        reader = getattr(self, "tag_" + tag[1:], None)
        if reader is None:
            self.fail(where, f"unknown tag {tag!r}")
        return reader(value, value[tag], f"{where}.{tag}", depth)

    def fields(self, value, where, allowed):
        extra = sorted(set(value) - set(allowed))
        if extra:
            self.fail(where, f"unexpected keys {extra}")

    def text(self, value, where):
        if type(value) is not str:
            self.fail(where, "needs a string")
        return value

    def raw(self, value, where):
        try:
            return base64.b64decode(self.text(value, where), validate=True)
        except ValueError:
            self.fail(where, "is not base64")

    def float_node(self, value, where):
        if type(value) is float:
            return value
        if type(value) is int and abs(value) <= _EXACT_INT:
            return float(value)  # a writer that dropped the '.0'
        if type(value) is dict and "$float" in value:
            return self.tag_float(value, value["$float"], where, 0)
        self.fail(where, "needs a float")

    def tag_int(self, whole, value, where, depth):
        self.fields(whole, where, ("$int",))
        text = self.text(value, where)
        if len(text) > 2 * tree.MAX_INT_BYTES + 3:  # "-0x" and the digits
            self.fail(where, f"an int of {len(text)} characters is larger "
                      "than a state stores")
        try:
            return int(text, 0)  # decimal, or 0x hex past _DECIMAL_BITS
        except ValueError:
            self.fail(where, f"{text[:40]!r} is not an int")

    def tag_float(self, whole, value, where, depth):
        self.fields(whole, where, ("$float", "bits"))
        special = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}
        if value not in special:
            self.fail(where, f"{value!r} is not inf, -inf or nan")
        if "bits" not in whole:
            return special[value]
        bits = self.text(whole["bits"], where + ".bits")
        try:
            raw = bytes.fromhex(bits)
        except ValueError:
            raw = b""
        if len(raw) != 8:
            self.fail(where, "bits must be 16 hex digits")
        result = struct.unpack(">d", raw)[0]
        if value != "nan" or not math.isnan(result):
            self.fail(where, "bits go with nan, and must be a NaN")
        return result

    def tag_complex(self, whole, value, where, depth):
        self.fields(whole, where, ("$complex",))
        if type(value) is not list or len(value) != 2:
            self.fail(where, "needs [real, imag]")
        return complex(self.float_node(value[0], where + "[0]"),
                       self.float_node(value[1], where + "[1]"))

    def tag_str_utf8(self, whole, value, where, depth):
        self.fields(whole, where, ("$str_utf8",))
        try:
            return self.raw(value, where).decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            self.fail(where, "is not UTF-8")

    def tag_bytes(self, whole, value, where, depth):
        self.fields(whole, where, ("$bytes",))
        return self.raw(value, where)

    def tag_bytearray(self, whole, value, where, depth):
        self.fields(whole, where, ("$bytearray",))
        return bytearray(self.raw(value, where))

    def items(self, value, where, depth):
        if type(value) is not list:
            self.fail(where, "needs an array")
        return [self.node(item, f"{where}[{index}]", depth + 1)
                for index, item in enumerate(value)]

    def tag_tuple(self, whole, value, where, depth):
        self.fields(whole, where, ("$tuple",))
        return tuple(self.items(value, where, depth))

    def mapping(self, out, value, where, depth):
        if type(value) is not list:
            self.fail(where, "needs an array of [key, value] pairs")
        per_hash = {}  # as tree.py's decoder: keys sharing a hash value
        for index, pair in enumerate(value):
            at = f"{where}[{index}]"
            if type(pair) is not list or len(pair) != 2:
                self.fail(at, "needs a [key, value] pair")
            key = self.key(self.node(pair[0], at + "[0]", depth + 1), at)
            try:
                key_hash = hash(key)
            except TypeError:  # a tuple holding an unhashable value
                self.fail(at, f"key {tree.key_text(key)} is not hashable")
            per_hash[key_hash] = per_hash.get(key_hash, 0) + 1
            if per_hash[key_hash] > tree.MAX_KEYS_PER_HASH:
                self.fail(at, f"{per_hash[key_hash]} keys have the same "
                          f"hash value (as {tree.key_text(key)} does); a "
                          "state's keys never collide like that")
            if key in out:
                self.fail(at, f"key {tree.key_text(key)} appears twice")
            out[key] = self.node(pair[1], at + "[1]", depth + 1)
        return out

    def key(self, key, where):
        if type(key) is tuple:
            for item in key:
                self.key(item, where)
        elif type(key) not in (type(None), bool, int, float, str, bytes):
            self.fail(where, f"a {type(key).__name__} cannot be a dict key")
        return key

    def tag_dict(self, whole, value, where, depth):
        self.fields(whole, where, ("$dict",))
        return self.mapping({}, value, where, depth)

    def tag_ordered_dict(self, whole, value, where, depth):
        self.fields(whole, where, ("$ordered_dict", "_metadata"))
        out = self.mapping(collections.OrderedDict(), value, where, depth)
        if "_metadata" in whole:
            metadata = self.node(whole["_metadata"], where + "._metadata",
                                 depth + 1)
            if not isinstance(metadata, dict):
                self.fail(where, "_metadata must be a dict")
            out._metadata = metadata
        return out

    def tag_counter(self, whole, value, where, depth):
        self.fields(whole, where, ("$counter",))
        return self.mapping(collections.Counter(), value, where, depth)

    def tag_numpy(self, whole, value, where, depth):
        self.fields(whole, where, ("$numpy", "value"))
        if value not in tree.NUMPY_STORED_DTYPE:
            self.fail(where, f"{value!r} is not a numpy dtype ckpt stores")
        item = self.node(whole.get("value"), where + ".value", depth + 1)
        if type(item) not in (bool, int, float, complex):
            self.fail(where, "value must be a number")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # numpy's overflow warnings
                result = np.array(item, dtype=np.dtype(value))[()]
        except (ArithmeticError, ValueError, TypeError, Warning):
            result = None
        if result is None or not _same_number(result.item(), item):
            self.fail(where, f"{item!r} is not a numpy {value}")
        return result

    def tag_tensor(self, whole, value, where, depth):
        self.fields(whole, where,
                    ("$tensor", "kind", "dtype", "shape", "layout"))
        name = self.node(value, where, depth + 1)
        kind, dtype = whole.get("kind"), whole.get("dtype")
        shape, layout = whole.get("shape"), whole.get("layout")
        known = tree.NUMPY_STORED_DTYPE if kind == "numpy" else \
            tree.TORCH_DTYPES
        if type(name) is not str or kind not in ("torch", "numpy") or \
                dtype not in known or layout not in (
                    tree.PLAIN, tree.SHARDED, tree.REPLICATED) or \
                type(shape) is not list or any(
                    type(dim) is not int or dim < 0 for dim in shape):
            self.fail(where, "needs a name, kind, dtype, shape and layout "
                      "as to_json writes them")
        return TensorRef(name, kind, dtype, tuple(shape), layout)

    def tag_pickle(self, whole, value, where, depth):
        self.fields(whole, where, ("$pickle",))
        raw = self.raw(value, where)
        if not self.allow_pickle:
            raise tree.PickleNotAllowedError(
                f"objects JSON at {where} is a pickled value: "
                + tree.PICKLE_ADVICE)
        return pickle.loads(raw)


def from_json(value, allow_pickle=False):
    """The tree a to_json value renders (StateFormatError when it is not
    one); a "$pickle" node is unpickled only with `allow_pickle`."""
    return _Reader(allow_pickle).node(value, "$", 0)


def objects(trees):
    """The "objects" value of ckpt_checkpoint.json for [(rank, tree)]."""
    return {"encoding": ENCODING,
            "ranks": {str(rank): to_json(node) for rank, node in trees}}
