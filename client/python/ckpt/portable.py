"""Export and import of portable files from Python (docs/portability.md,
"From Python"): CheckpointManager.export and import_dir, ckpt.import_dir,
and `python3 -m ckpt export|import` (ckpt/__main__.py).

- export "safetensors": the C++ exporter (client/portable/export.h) writes
  the tensors and ckpt_checkpoint.json; this module puts each rank's
  non-tensor state under "objects" (ckpt/tree_json.py) in place of the
  `__ckpt_state__` tensor, which is not exported.
- export "torch": the state restore() gives for the view (restore.py),
  written with torch.save as checkpoint.pt (weights_only.py), beside the
  ckpt_checkpoint.json the C++ writer makes for it (staged_files.py places
  both).
- import: the C++ importer, given the `__ckpt_state__` rebuilt from the
  directory's objects; or, for a torch export, torch.load(weights_only=
  True) and a save as CheckpointManager.save makes one.
"""

import json
import os

import numpy as np

from ckpt import _ckpt, arguments, staged_files, tree, tree_json, \
    weights_only as weights_only_rule
from ckpt.client import connect
from ckpt.restore import Restore, _ref_leaves
from ckpt.state_layout import STATE_TENSOR, _flatten, _torch, check_refs

FORMATS = ("safetensors", "torch")
TORCH_FILE = "checkpoint.pt"
CHECKPOINT_JSON = "ckpt_checkpoint.json"
# client/portable/checkpoint_json.h: kMaxCheckpointJsonBytes.
MAX_CHECKPOINT_JSON_BYTES = 256 << 20


class View:
    """What an export holds: the whole checkpoint (`full`), or what rank
    `rank` of `world_size` restores."""

    def __init__(self, full=None, rank=None, world_size=None):
        if rank is None and world_size is None:
            if full is False:
                raise ValueError("full=False needs rank and world_size (the "
                                 "view of which rank to export)")
            self.full, self.rank, self.world_size = True, 0, 1
            return
        if rank is None or world_size is None:
            raise ValueError("rank and world_size go together (the view of "
                             "rank `rank` in a job of `world_size` ranks)")
        if full:
            raise ValueError("full=True exports the whole checkpoint; pass "
                             "it or rank and world_size, not both")
        self.full = False
        self.rank, self.world_size = arguments.rank_and_world_size(
            rank, world_size)

    def layout(self):
        """The binding's layout arguments."""
        return {"full": self.full, "rank": self.rank,
                "world_size": self.world_size}

    def partial_advice(self, saved_world):
        if self.full:
            return (f"A full export holds no per-rank values of {saved_world}"
                    " ranks in one state: export each rank's view (rank=R, "
                    f"world_size={saved_world}; `--rank R --world-size "
                    f"{saved_world}`) into its own directory")
        return ("Export with the checkpoint's world size "
                f"(world_size={saved_world})")


def export(client, job, step, path, *, format="safetensors", full=None,
           rank=None, world_size=None, weights_only=True, allow_pickle=False,
           max_file_bytes=None):
    """CheckpointManager.export with a Client and job (its docstring is the
    reference). Returns the report dict."""
    job = arguments.job(job)
    step = None if step is None else arguments.integer("step", step,
                                                        minimum=0)
    format = arguments.choice("format", format, FORMATS)
    view = View(full, rank, world_size)
    directory = _directory(path)
    weights_only = arguments.boolean("weights_only", weights_only)
    allow_pickle = arguments.boolean("allow_pickle", allow_pickle)
    max_file_bytes = arguments.optional_integer(
        "max_file_bytes", max_file_bytes, minimum=1)
    if format == "safetensors" and not weights_only:
        raise ValueError("weights_only=False goes with format='torch'")
    if format == "torch" and max_file_bytes is not None:
        raise ValueError("max_file_bytes goes with format='safetensors'")
    manifest = client.get_manifest(job, step)
    restore = Restore(client, job, view.rank, view.world_size, allow_pickle,
                      report=False,
                      partial_advice=view.partial_advice(manifest.world_size))
    if format == "torch":
        return _export_torch(client, restore, manifest, directory, view,
                             weights_only)
    trees = restore.trees(manifest, view.full)
    objects = "" if trees is None else json.dumps(
        tree_json.objects(trees), ensure_ascii=False, allow_nan=False)
    report = client.export_checkpoint(
        manifest, directory, max_file_bytes=max_file_bytes,
        objects_json=objects, exclude_tensors=[STATE_TENSOR],
        **view.layout())
    report["format"] = format
    report["objects"] = trees is not None
    return report


def _directory(path):
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError("path must be a directory name (str, bytes or "
                        f"os.PathLike), not {type(path).__name__}")
    directory = os.fsdecode(path)
    if not directory:
        raise ValueError("path must not be empty")
    return directory


def _export_torch(client, restore, manifest, directory, view, weights_only):
    torch = _torch()
    if torch is None:
        raise ValueError("format='torch' needs torch, which is not "
                         "installed; export format='safetensors' instead")
    staged_files.check_free(directory, (TORCH_FILE, CHECKPOINT_JSON))
    state, stats = restore.run(None, None, True, None, None, False,
                               manifest=manifest)
    if weights_only:
        state = weights_only_rule.convert(state, (), torch)
        weights_only_rule.check(state, torch)
    document = json.loads(_ckpt.checkpoint_json(manifest, **view.layout()))
    document["export"]["format"] = "torch"
    document["files"] = [TORCH_FILE]
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    tensors = _unique_tensors(state, torch)

    def report_restore():
        # As the C++ exporter: the restore is recorded once the files are
        # complete, before they get their names.
        try:
            client.report_restore(manifest.job, manifest.step, view.rank)
        except KeyError:  # NOT_FOUND: pruned meanwhile
            pass
        except _ckpt.Error as error:
            if error.code != "UNIMPLEMENTED":  # an older server
                raise

    staged_files.write_files(directory, [
        (TORCH_FILE, lambda out: torch.save(state, out)),
        (CHECKPOINT_JSON, lambda out: out.write(text.encode()))],
        before_placing=report_restore)
    return {"job": manifest.job, "step": manifest.step, "format": "torch",
            "files": [TORCH_FILE, CHECKPOINT_JSON],
            "tensors": len(tensors),
            "tensor_bytes": sum(t.element_size() * t.nelement()
                                for t in tensors),
            "objects": True,
            "chunks_fetched": stats["chunks_fetched"],
            "bytes_fetched": stats["bytes_fetched"]}


def _unique_tensors(state, torch):
    found = {}

    def walk(node):
        if isinstance(node, torch.Tensor):
            found.setdefault(id(node), node)
        elif isinstance(node, dict):
            for item in node.values():
                walk(item)
        elif isinstance(node, (list, tuple)):
            for item in node:
                walk(item)
    walk(state)
    return list(found.values())


def import_dir(server, path, job, step, *, rank=None, world_size=None,
               metrics=None, tags=None, objects=True, allow_pickle=False,
               tls_ca=None, tls_cert=None, tls_key=None,
               tls_server_name=None, token=None):
    """Imports directory `path` as one rank's shard of checkpoint `step` of
    `job` (docs/portability.md, "Import"): its safetensors files (an
    export, or another tool's, such as a Hugging Face model directory), or
    a torch export's checkpoint.pt.

    server: "HOST:PORT" (None: $CKPT_SERVER) or a ckpt.Client; the TLS and
        token arguments as ckpt.Client's (None: their environment
        variables), only with an address.
    rank, world_size: None: what ckpt_checkpoint.json says (rank R of M for
        a rank export, else 0 of 1), else rank 0 of 1.
    metrics, tags: over those of ckpt_checkpoint.json (as
        CheckpointManager.save takes them).
    objects: True (the default): the non-tensor state the JSON file holds
        under "objects" is imported with the tensors, so that restore()
        gives back the exported state; ValueError when it cannot be (the
        differing states of several ranks in a full export, or an import
        as another rank than the export's view). False: the tensors alone
        (restore() gives a flat {name: tensor} dict).
    allow_pickle: read objects stored pickled, and a checkpoint.pt that
        needs torch.load(weights_only=False) (both run what they name).

    Everything is read and checked before anything is sent; a safetensors
    file whose header lies is ValueError naming the file and the field,
    and nothing is stored. Returns {job, step, files, tensors, rank,
    world_size, metadata_from_json, objects, saved} (saved: as
    Client.save_shard's result)."""
    client = connect(server, tls_ca=tls_ca, tls_cert=tls_cert,
                     tls_key=tls_key, tls_server_name=tls_server_name,
                     token=token)
    directory = _directory(path)
    job = arguments.job(job)
    step = arguments.integer("step", step, minimum=0)
    if rank is not None or world_size is not None:
        if rank is None or world_size is None:
            raise ValueError("rank and world_size go together")
        rank, world_size = arguments.rank_and_world_size(rank, world_size)
    metrics = arguments.metrics(metrics)
    tags = arguments.tags(tags)
    objects = arguments.boolean("objects", objects)
    allow_pickle = arguments.boolean("allow_pickle", allow_pickle)
    document = _read_checkpoint_json(directory)
    if _is_torch_export(directory):
        return _import_torch(client, directory, document, job, step, rank,
                             world_size, metrics, tags, allow_pickle)
    extra, restored_objects = [], False
    if objects and document is not None and document["objects_json"]:
        if rank is None and not document["full"]:
            rank, world_size = document["rank"], document["world_size"]
        blob = _state_from_objects(document, directory, rank, world_size,
                                   allow_pickle)
        extra = [(STATE_TENSOR, "uint8", [len(blob)], [0], [len(blob)],
                  np.frombuffer(blob, dtype=np.uint8))]
        restored_objects = True
    report = client.import_directory(
        directory, job, step, rank=rank, world_size=world_size,
        metrics=metrics, tags=tags, extra_tensors=extra)
    report["objects"] = restored_objects
    del report["objects_json"]
    return report


def _is_torch_export(directory):
    """A directory with checkpoint.pt and no safetensors file."""
    try:
        names = os.listdir(directory)
    except OSError:
        return False  # the C++ importer says what is wrong with it
    return TORCH_FILE in names and not any(
        name.endswith(".safetensors") for name in names)


def _read_checkpoint_json(directory):
    """What the C++ reader takes of `directory`'s ckpt_checkpoint.json
    (binding parse_checkpoint_json), or None without one; ValueError
    naming the file and the field when it is malformed."""
    path = os.path.join(directory, CHECKPOINT_JSON)
    try:
        with open(path, "rb") as source:
            raw = source.read(MAX_CHECKPOINT_JSON_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise staged_files.os_error("import", path, error) from None
    if len(raw) > MAX_CHECKPOINT_JSON_BYTES:
        raise ValueError(f"import: {path} is larger than "
                         f"{MAX_CHECKPOINT_JSON_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"import: {path} is not UTF-8 ({error.reason} at "
                         f"byte {error.start})") from None
    document = _ckpt.parse_checkpoint_json(text, path)
    if document["objects_json"]:
        # The C++ reader refused what is not strict JSON (duplicate keys,
        # ...) but gives the objects with their keys sorted: the state's
        # own order is in the file.
        document["objects"] = json.loads(text)["objects"]
    return document


def _state_from_objects(document, directory, rank, world_size,
                        allow_pickle):
    """The `__ckpt_state__` bytes of the state tree the JSON file's objects
    hold for an import as rank `rank` of `world_size` (None: 0 of 1), its
    tensor references checked against the tensors the import stores."""
    where = os.path.join(directory, CHECKPOINT_JSON)
    advice = ("; pass objects=False (--no-objects) to import the tensors "
              "alone")
    value = document["objects"]
    ranks = value.get("ranks") if isinstance(value, dict) else None
    if not isinstance(value, dict) or \
            value.get("encoding") != tree_json.ENCODING or \
            not isinstance(ranks, dict) or not ranks:
        raise ValueError(f"import: {where}: \"objects\" is not of encoding "
                         f"{tree_json.ENCODING!r} with ranks" + advice)
    states = list(ranks.values())
    if any(state != states[0] for state in states[1:]):
        raise ValueError(
            f"import: {where} holds the differing states of ranks "
            f"{sorted(ranks)} (a full export of a job whose ranks saved "
            "per-rank values): one rank of a checkpoint cannot hold them. "
            "Export each rank's view (--rank R --world-size M) and import "
            "each as its rank" + advice)
    state = tree_json.from_json(states[0], allow_pickle)
    rank, world_size = (0, 1) if rank is None else (rank, world_size)
    # The entries the import stores: the boxes of a rank export imported
    # as its own rank, whole tensors otherwise (client/portable/import.h).
    own_view = not document["full"] and (rank, world_size) == (
        document["rank"], document["world_size"])
    entries = {}
    for name, (_, dtype, shape, global_shape, offsets, lengths) in \
            document["tensors"].items():
        entries[name] = (dtype, global_shape, offsets, lengths, None) \
            if own_view else (dtype, shape, [0] * len(shape), shape, None)
    refs = [(ref, path) for path, ref in _ref_leaves(state, (), [])]
    try:
        check_refs(refs, entries, rank)
    except tree.StateFormatError as error:
        raise ValueError(f"import: {where}: \"objects\" do not match the "
                         f"tensors imported as rank {rank} of {world_size}: "
                         f"{error}" + advice) from None
    return tree.Encoder((tree.TensorRef,), lambda ref, path: ref,
                        allow_pickle).encode(state)


def _import_torch(client, directory, document, job, step, rank, world_size,
                  metrics, tags, allow_pickle):
    torch = _torch()
    if torch is None:
        raise ValueError(f"import: {directory} holds {TORCH_FILE}, which "
                         "needs torch to read, and torch is not installed")
    writer_time = None
    if document is not None:
        if rank is None and not document["full"]:
            rank, world_size = document["rank"], document["world_size"]
        metrics = {**document["metrics"], **metrics}
        tags = {**document["tags"], **tags}
        # As the C++ importer: the checkpoint keeps its time.
        writer_time = document["writer_time"] or document["commit_time"]
    if rank is None:
        rank, world_size = 0, 1
    path = os.path.join(directory, TORCH_FILE)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # the unpickler's errors vary by version
        if not allow_pickle:
            reason = str(error).rsplit("error: ", 1)[-1]
            raise ValueError(
                f"import: torch.load(weights_only=True) cannot read {path} "
                f"({reason}); it was exported with weights_only=False or "
                "written by another tool. Pass allow_pickle=True "
                "(--allow-pickle) only if you trust it: loading it runs "
                "what it names") from None
        state = torch.load(path, map_location="cpu", weights_only=False)
    tensors, keep_alive, _, _ = _flatten(state, copy=False,
                                         allow_pickle=allow_pickle)
    saved = client.save_shard(job, step, tensors, rank=rank,
                              world_size=world_size, metrics=metrics,
                              tags=tags, writer_time=writer_time)
    del keep_alive
    return {"job": job, "step": step, "files": [TORCH_FILE],
            "tensors": len(tensors) - 1, "rank": rank,
            "world_size": world_size,
            "metadata_from_json": document is not None, "objects": True,
            "saved": saved}
