"""Export and import of portable files from Python (docs/portability.md,
"From Python"): CheckpointManager.export, ckpt.export and ckpt.import_dir,
and `python3 -m ckpt export|import` (ckpt/__main__.py).

- format "safetensors": the C++ exporter (client/portable/export.h) writes
  the tensors; this module adds each rank's non-tensor state to
  ckpt_checkpoint.json under "objects" (ckpt/tree_json.py).
- format "torch": the state restore() gives for the chosen view (restore.py,
  with no `restored` event), written with torch.save as checkpoint.pt,
  beside a ckpt_checkpoint.json of the checkpoint's metadata.
- import: the C++ importer (client/portable/import.h).

Files appear only whole: each is written under a temporary name in the
directory, synced, then linked to its name, which must not exist
(ALREADY_EXISTS); on any error none of them is left.
"""

import errno
import json
import os
import secrets

import numpy as np

from ckpt import _ckpt, arguments, tree, tree_json
from ckpt.client import connect
from ckpt.restore import Restore
from ckpt.state_layout import _flatten, _torch

FORMATS = ("safetensors", "torch")
TORCH_FILE = "checkpoint.pt"
CHECKPOINT_JSON = "ckpt_checkpoint.json"
# torch has no unsigned integer dtype wider than a byte.
_NUMPY_WITHOUT_TORCH_DTYPE = ("uint16", "uint32", "uint64")


def status_error(code, message):
    """The exception the binding raises for a status `code` ("NOT_FOUND",
    ...): KeyError, ValueError (INVALID_ARGUMENT) or ckpt.Error, with
    `.code` and `.message`, so that both formats fail alike."""
    kind = {"INVALID_ARGUMENT": ValueError, "NOT_FOUND": KeyError}.get(
        code, _ckpt.Error)
    error = kind(f"{code}: {message}")
    error.code, error.message = code, message
    return error


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

    def as_dict(self):
        if self.full:
            return {"full": True}
        return {"full": False, "rank": self.rank,
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
        return _export_torch(restore, manifest, directory, view,
                             weights_only)
    trees = restore.trees(manifest, view.full)
    objects = "" if trees is None else json.dumps(
        tree_json.objects(trees), ensure_ascii=False, allow_nan=False)
    report = client.export_checkpoint(
        manifest, directory, full=view.full, rank=view.rank,
        world_size=view.world_size, max_file_bytes=max_file_bytes,
        objects_json=objects)
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


def _export_torch(restore, manifest, directory, view, weights_only):
    torch = _torch()
    if torch is None:
        raise ValueError("format='torch' needs torch, which is not "
                         "installed; export format='safetensors' instead")
    _check_free(directory, (TORCH_FILE, CHECKPOINT_JSON))
    state, stats = restore.run(None, None, True, None, None, False,
                               manifest=manifest)
    if weights_only:
        state = _weights_only_state(state, (), torch)
        _check_weights_only(state, torch)
    record = manifest.record
    document = checkpoint_json(record, view, [TORCH_FILE], "torch")
    tensors = _unique_tensors(state, torch)
    _write_files(directory, [
        (TORCH_FILE, lambda out: torch.save(state, out)),
        (CHECKPOINT_JSON, lambda out: out.write(
            json.dumps(document, indent=2, ensure_ascii=False,
                       allow_nan=False).encode() + b"\n"))])
    return {"job": record["job"], "step": record["step"], "format": "torch",
            "files": [TORCH_FILE, CHECKPOINT_JSON],
            "tensors": len(tensors),
            "tensor_bytes": sum(t.element_size() * t.nelement()
                                for t in tensors),
            "chunks_fetched": stats["chunks_fetched"],
            "bytes_fetched": stats["bytes_fetched"]}


def checkpoint_json(record, view, files, format):
    """ckpt_checkpoint.json of a torch export: the checkpoint's header as
    the C++ exporter writes it (client/portable/export.h)."""
    return {
        "format": format,
        "job": record["job"],
        "step": record["step"],
        "world_size": record["world_size"],
        "view": view.as_dict(),
        "metrics": {name: tree_json.to_json(value) for name, value in
                    record["metrics"].items()},
        "tags": record["tags"],
        "writer_time": record["writer_time"],
        "commit_time": record["commit_time"],
        "files": files,
    }


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


def _rebuilt(node, items):
    """A dict of `node`'s type (its state_dict _metadata kept) of items."""
    out = type(node)() if type(node) is not dict else {}
    if getattr(node, "__dict__", None):
        out.__dict__.update(node.__dict__)
    for key, value in items:
        out[key] = value
    return out


def _weights_only_state(node, path, torch):
    """`node` with numpy arrays and scalars as torch tensors of the same
    dtype and shape (0-d for scalars); TypeError naming the key for one of
    a dtype torch lacks."""
    if isinstance(node, torch.Tensor):
        return node
    if isinstance(node, (np.ndarray, np.generic)):
        dtype = node.dtype.name
        what = "array" if isinstance(node, np.ndarray) else "scalar"
        if dtype in _NUMPY_WITHOUT_TORCH_DTYPE:
            raise TypeError(
                f"{tree.path_text(path)}: a numpy {dtype} {what}, and torch "
                f"has no {dtype} dtype: a file torch.load(weights_only=True) "
                "reads cannot hold it without changing its dtype. Export "
                "with weights_only=False (numpy values kept as they are; "
                "load it with torch.load(..., weights_only=False)) or as "
                "safetensors")
        array = np.asarray(node)
        if not array.flags.writeable or not array.flags.c_contiguous:
            array = array.copy()  # from_numpy needs writable memory
        return torch.from_numpy(array)
    if isinstance(node, dict):
        return _rebuilt(node, ((key, _weights_only_state(
            item, path + (key,), torch)) for key, item in node.items()))
    if type(node) in (list, tuple):
        items = [_weights_only_state(item, path + (index,), torch)
                 for index, item in enumerate(node)]
        return items if type(node) is list else tuple(items)
    return node


def _weights_only_loads(value, torch):
    """None when torch.load(weights_only=True) of this torch reads
    torch.save(value) back, else its error message."""
    import io
    buffer = io.BytesIO()
    torch.save(value, buffer)
    buffer.seek(0)
    try:
        torch.load(buffer, weights_only=True)
    except Exception as error:  # the unpickler's RuntimeError, ...
        return str(error).rsplit("error: ", 1)[-1]
    return None


def _probe(node, torch):
    """`node` with every tensor replaced by an empty one of its dtype: what
    the weights_only check pickles instead of the tensors' bytes."""
    if isinstance(node, torch.Tensor):
        return torch.empty(0, dtype=node.dtype)
    if isinstance(node, dict):
        return _rebuilt(node, ((key, _probe(item, torch))
                               for key, item in node.items()))
    if type(node) in (list, tuple):
        items = [_probe(item, torch) for item in node]
        return items if type(node) is list else tuple(items)
    return node


def _values(node, path):
    """(path, value) of every value in `node`: each container as an empty
    one of its type, and each leaf (dict keys included)."""
    if isinstance(node, dict):
        yield path, _rebuilt(node, ())
        for key, item in node.items():
            yield from _values(key, path)
            yield from _values(item, path + (key,))
        metadata = getattr(node, "_metadata", None)
        if metadata is not None:
            yield from _values(metadata, path + ("._metadata",))
    elif type(node) in (list, tuple):
        yield path, type(node)()
        for index, item in enumerate(node):
            yield from _values(item, path + (index,))
    else:
        yield path, node


def _check_weights_only(state, torch):
    """TypeError naming the first value torch.load(weights_only=True) of
    the installed torch cannot read back, unless it reads the whole state
    (tensors as empty ones)."""
    problem = _weights_only_loads(_probe(state, torch), torch)
    if problem is None:
        return
    where, seen = "the state", set()
    for path, value in _values(_probe(state, torch), ()):
        if isinstance(value, torch.Tensor):
            continue
        signature = (type(value), value.bit_length() // 8 if isinstance(
            value, int) else None)
        if signature in seen:
            continue
        seen.add(signature)
        found = _weights_only_loads([value], torch)
        if found is not None:
            where = f"{tree.path_text(path)} (a {type(value).__name__})"
            problem = found
            break
    raise TypeError(
        f"{where}: torch.load(weights_only=True) of this torch "
        f"({torch.__version__}) cannot read it back ({problem}). Export "
        "with weights_only=False (load it with torch.load(..., "
        "weights_only=False), which trusts the file) or as safetensors")


def _check_free(directory, names):
    """Refuses, before anything is read, a directory that cannot be made
    or written, or that holds a file of one of `names` already."""
    existing = directory
    while not os.path.lexists(existing):
        parent = os.path.dirname(os.path.abspath(existing))
        if parent == existing:
            break
        existing = parent
    if not os.path.isdir(existing):
        raise status_error(
            "FAILED_PRECONDITION", f"export: {existing} is not a directory, "
            f"so {directory} cannot be one; nothing was written")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise status_error(
            "PERMISSION_DENIED",
            f"export: cannot write in {existing}; nothing was written")
    for name in names:
        target = os.path.join(directory, name)
        if os.path.lexists(target):
            raise status_error(
                "ALREADY_EXISTS",
                f"export: {target} exists already; nothing was written")


def _make_directories(directory):
    """Makes `directory` and its missing parents; returns those it made,
    deepest first."""
    made = []
    path = os.path.abspath(directory)
    while not os.path.lexists(path):
        made.append(path)
        path = os.path.dirname(path)
    for path in reversed(made):
        try:
            os.mkdir(path)
        except FileExistsError:  # made meanwhile by someone else: theirs
            made.remove(path)
    return made


def _temporary_file(directory, name):
    """(fd, path) of a new file for `name` in `directory`, created
    exclusively with the permissions a plain open() gives (umask applied,
    unlike mkstemp's 0600)."""
    while True:
        path = os.path.join(directory,
                            f".{name}.{secrets.token_hex(6)}.partial")
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL |
                           getattr(os, "O_CLOEXEC", 0), 0o666), path
        except FileExistsError:
            continue


def _write_files(directory, files):
    """Writes [(name, write(binary file))] into `directory` (made if
    absent): each under a temporary name, synced, then linked to its name,
    which must not exist. On an error no file of them remains, nor a
    directory it made."""
    temps, placed, made = [], [], []
    try:
        made = _make_directories(directory)
        for name, write in files:
            fd, temp = _temporary_file(directory, name)
            temps.append(temp)
            with os.fdopen(fd, "wb") as out:
                write(out)
                out.flush()
                os.fsync(out.fileno())
        for (name, _), temp in zip(files, temps):
            target = os.path.join(directory, name)
            _place_file(temp, target)
            placed.append(target)
        _sync_directory(directory)
    except BaseException as error:
        for path in placed + temps:
            _unlink(path)
        temps = []
        for path in made:
            try:
                os.rmdir(path)
            except OSError:
                break
        if isinstance(error, OSError):
            raise _os_error("export", directory, error) from error
        raise
    finally:
        for temp in temps:
            _unlink(temp)


def _place_file(temp, target):
    """Gives `temp` the name `target`, never replacing a file there."""
    try:
        os.link(temp, target)
    except FileExistsError:
        raise status_error(
            "ALREADY_EXISTS",
            f"export: {target} exists already; nothing was written") from None
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP,
                               errno.EXDEV, errno.EMLINK):
            raise
        # No hard links here (some network and FUSE file systems).
        if os.path.lexists(target):
            raise status_error(
                "ALREADY_EXISTS",
                f"export: {target} exists already; nothing was "
                "written") from None
        os.rename(temp, target)


def _sync_directory(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _os_error(verb, path, error):
    """A local file error as the status error the C++ side gives."""
    code = "PERMISSION_DENIED" if isinstance(error, PermissionError) else \
        "FAILED_PRECONDITION"
    return status_error(code, f"{verb}: {path}: {error.strerror or error}")


def import_dir(server, path, job, step, *, rank=None, world_size=None,
               metrics=None, tags=None, allow_pickle=False, tls_ca=None,
               tls_cert=None, tls_key=None, tls_server_name=None,
               token=None):
    """Imports directory `path` as rank `rank`'s shard of checkpoint
    `step` of `job` (docs/portability.md, "Import"): its safetensors files
    (an export, or another tool's, such as a Hugging Face model
    directory), or a torch export's checkpoint.pt.

    server: "HOST:PORT" (None: $CKPT_SERVER) or a ckpt.Client; the TLS and
        token arguments as ckpt.Client's (None: their environment
        variables), only with an address.
    rank, world_size: None: what ckpt_checkpoint.json says, else rank 0 of
        1. metrics, tags: over those of ckpt_checkpoint.json (as
        CheckpointManager.save takes them).
    allow_pickle: a checkpoint.pt is read with torch.load(weights_only=
        True); one that needs weights_only=False (exported with it) is
        refused unless allow_pickle=True, which runs what the file names.

    Everything is read and checked before anything is sent; a safetensors
    file whose header lies is ValueError naming the file and the field,
    and nothing is stored. Returns {job, step, files, tensors,
    metadata_from_json, saved} (saved: as Client.save_shard's result)."""
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
    allow_pickle = arguments.boolean("allow_pickle", allow_pickle)
    if _is_torch_export(directory):
        return _import_torch(client, directory, job, step, rank, world_size,
                             metrics, tags, allow_pickle)
    return client.import_directory(directory, job, step, rank=rank,
                                   world_size=world_size, metrics=metrics,
                                   tags=tags)


def _is_torch_export(directory):
    """A directory with checkpoint.pt and no safetensors file."""
    try:
        names = os.listdir(directory)
    except OSError:
        return False  # the C++ importer says what is wrong with it
    return TORCH_FILE in names and not any(
        name.endswith(".safetensors") for name in names)


def _read_checkpoint_json(directory):
    """ckpt_checkpoint.json of `directory` as a dict, or None without
    one; ValueError naming the file and field when it is malformed."""
    path = os.path.join(directory, CHECKPOINT_JSON)
    try:
        with open(path, "rb") as source:
            document = json.loads(source.read().decode("utf-8"))
    except FileNotFoundError:
        return None
    except (UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"import: {path} is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise ValueError(f"import: {path} must hold a JSON object")
    return document


def _json_field(document, field, kind, path):
    value = document.get(field)
    if value is not None and not isinstance(value, kind):
        raise ValueError(f"import: {path}: field '{field}' must be a "
                         f"{getattr(kind, '__name__', 'number')}")
    return value


def _metadata_from_json(document, directory):
    """(rank, world_size, metrics, tags, writer_time) ckpt_checkpoint.json
    gives; ValueError naming the field when one is malformed."""
    path = os.path.join(directory, CHECKPOINT_JSON)
    view = _json_field(document, "view", dict, path) or {"full": True}
    rank = world_size = None
    if view.get("full") is False:
        rank, world_size = view.get("rank"), view.get("world_size")
        try:
            rank, world_size = arguments.rank_and_world_size(rank,
                                                             world_size)
        except (TypeError, ValueError) as error:
            raise ValueError(f"import: {path}: field 'view': {error}") \
                from None
    metrics = {}
    for name, value in (_json_field(document, "metrics", dict, path) or
                        {}).items():
        try:
            value = tree_json.from_json(value)
            metrics[name] = arguments.number(f"metrics[{name!r}]", value)
        except (TypeError, ValueError) as error:
            raise ValueError(f"import: {path}: field 'metrics': {error}") \
                from None
    try:
        tags = arguments.tags(_json_field(document, "tags", dict, path))
        writer_time = arguments.optional_number(
            "writer_time", _json_field(document, "writer_time",
                                       (int, float), path), finite=True)
    except (TypeError, ValueError) as error:
        raise ValueError(f"import: {path}: {error}") from None
    return rank, world_size, metrics, tags, writer_time


def _import_torch(client, directory, job, step, rank, world_size, metrics,
                  tags, allow_pickle):
    torch = _torch()
    if torch is None:
        raise ValueError(f"import: {directory} holds {TORCH_FILE}, which "
                         "needs torch to read, and torch is not installed")
    document = _read_checkpoint_json(directory)
    writer_time = None
    if document is not None:
        saved_rank, saved_world, saved_metrics, saved_tags, writer_time = \
            _metadata_from_json(document, directory)
        if rank is None and saved_rank is not None:
            rank, world_size = saved_rank, saved_world
        metrics = {**saved_metrics, **metrics}
        tags = {**saved_tags, **tags}
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
    tensors, keep_alive, _, _ = _flatten(
        state, copy=False, allow_pickle=allow_pickle)
    saved = client.save_shard(job, step, tensors, rank=rank,
                              world_size=world_size, metrics=metrics,
                              tags=tags, writer_time=writer_time)
    del keep_alive
    return {"job": job, "step": step, "files": [TORCH_FILE],
            "tensors": len(tensors) - 1,
            "metadata_from_json": document is not None, "saved": saved}
