#!/usr/bin/python3
"""Python benchmark: a PyTorch model + Adam state saved and restored through
ckpt.CheckpointManager and a real ckpt-server, side by side in one run with
torch.save (+ fsync) and torch.load on the same state.

Each round measures, in this order and on the same state (weights and
optimizer moments perturbed slightly first, as a training step would, so
every chunk's bytes change):
  baseline save    torch.save(state) into a new file, flush + os.fsync
  ckpt sync save   CheckpointManager(async_save=False).save(state, step)
  baseline restore torch.load(that file)   } in turn, see below
  ckpt restore     manager.restore(step)    }
  the same two in new processes (imports untimed): a restarted job's
                   restore, where neither side reuses memory the
                   benchmark process freed a moment earlier
  copy floor       clone every tensor of the state (fresh memory), and
                   copy_ into tensors kept from the previous round
then perturbs again and measures
  ckpt async save  the time save() blocks the caller (async_save=True),
                   then wait() for the upload and commit.
Restores and loads alternate which goes first from round to round, and
each result is freed before the other side runs: a restore timed while the
previous 1 GiB result is still alive, or always right after the other side
freed 1 GiB, pays for the machine's memory state rather than for its own
work (on this VM, first-touch page faults vary from 0.4 to 3 s per GiB).
The summary gives medians and same-run ratios against the goals of issue 4.

Needs CKPT_BUILD_DIR (for server/rpc/ckpt-server) and PYTHONPATH (the build
tree's python/ directory), as ctest sets them for python_test.

Past 600 lines because it is one job, one benchmark: its rounds, the
baselines it compares with and the report share their setup.
"""

import argparse
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

# Goals from issue 4: ratio of each ckpt figure to its torch baseline.
GOALS = {
    "sync_save": 1.0,       # sync save / torch.save+fsync
    "async_blocking": 0.1,  # async save() blocking / torch.save+fsync
    "restore": 1.2,         # restore / torch.load, in the benchmark process
    "restore_fresh": 1.2,   # the same, each in a new process
}

# Run in a new process: imports first (untimed), then times one load or
# restore, as a restarted training job does it. Prints the seconds.
FRESH_PROCESS = """
import sys, time, torch, ckpt
kind, where, job, step = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
if kind == "torch":
    start = time.perf_counter()
    state = torch.load(where)
else:
    manager = ckpt.CheckpointManager(where, job)
    start = time.perf_counter()
    state = manager.restore(step)
print(time.perf_counter() - start)
"""


def timed_and_dropped(fn, check=None):
    """Seconds fn() takes; its result is checked (when `check`), then
    dropped and collected before this returns."""
    seconds, result = timed(fn)
    if check:
        check(result)
    del result
    gc.collect()
    return seconds


def in_turn(round_index, baseline, ours):
    """(baseline seconds, ours seconds): the baseline first in even rounds,
    ours first in odd ones."""
    if round_index % 2 == 0:
        first = baseline()
        return first, ours()
    first = ours()
    return baseline(), first


def fresh_process_seconds(kind, where, job="", step=0):
    """Seconds one torch.load of `where` (kind "torch") or one
    CheckpointManager.restore from server `where` takes in a new process."""
    child = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, kind, where, job, str(step)],
        capture_output=True, text=True)
    if child.returncode != 0:
        sys.exit(f"torch_bench: the new-process {kind} restore failed:\n"
                 f"{child.stderr}")
    return float(child.stdout.strip().splitlines()[-1])
# Layers of at most this many float32 weights (64 MiB at 4096x4096 would
# make the small sizes lumpy; 2048x2048 is 16 MiB).
MAX_WIDTH = 2048
SERVER_PREFIX = "ckpt-server listening on "


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=(
            "Save and restore a PyTorch model + Adam optimizer state through "
            "ckpt.CheckpointManager and a real ckpt-server, next to "
            "torch.save+fsync / torch.load of the same state in the same "
            "run. Prints per-round times, medians and ratios (lower is "
            "better). Needs CKPT_BUILD_DIR (build directory holding "
            "server/rpc/ckpt-server) and PYTHONPATH (its python/ "
            "directory)."))
    parser.add_argument(
        "--model-mib", type=int, default=341, metavar="MIB",
        help=("float32 parameter bytes of the model, in MiB; Adam adds "
              "exp_avg and exp_avg_sq, so the saved state is about 3x this "
              "(default: %(default)s, a ~1 GiB state)"))
    parser.add_argument(
        "--rounds", type=int, default=3,
        help="rounds; medians over them are reported (default: %(default)s)")
    parser.add_argument(
        "--dir", default=None,
        help=("directory for the server's data and the torch.save files, "
              "both on one disk; a temporary directory is made in it and "
              "removed at the end (default: $TMPDIR or /var/tmp)"))
    parser.add_argument(
        "--server-arg", action="append", default=[], metavar="ARG",
        help=("extra ckpt-server argument, e.g. --server-arg=--direct-io=false;"
              " repeatable"))
    parser.add_argument(
        "--json", action="store_true",
        help="print only the medians and ratios, as JSON")
    parser.add_argument(
        "--state-format", metavar="MIB[,MIB...]", default=None,
        help=("instead: compare the typed state tree with the pickle it "
              "replaced (format 1), on a 12-layer transformer + Adam + RNG "
              "states of each given parameter size in MiB: sync save and "
              "restore end to end, and alone the state's encoding (with "
              "the tensors' preparation) and decoding (with the tensors "
              "put back)"))
    parser.add_argument(
        "--floor", metavar="MIB[,MIB...]", default=None,
        help=("instead: issue 19's floor for a dense state of each given "
              "size in MiB (model + Adam): the disk's write+fsync, "
              "torch.save+fsync and the sync save; torch.load and the "
              "restore through shared memory and over the network "
              "(torch_floor.py)"))
    parser.add_argument(
        "--mode", choices=("default", "async-stall", "async-rss"),
        default="default",
        help=("default: the rounds above; async-stall: the time an async "
              "save() blocks vs torch.save+fsync at each --sizes-mib; "
              "async-rss: client RSS over --saves async saves and server "
              "RSS under --ranks concurrent uploads (issue 19; "
              "tests/bench/torch_bench_async.py)"))
    parser.add_argument(
        "--sizes-mib", default="256,1024", metavar="MIB[,MIB...]",
        help="async-stall: state sizes (model + Adam) (default: %(default)s)")
    parser.add_argument(
        "--saves", type=int, default=20,
        help="async-rss: consecutive async saves (default: %(default)s)")
    parser.add_argument(
        "--rss-state-mib", type=int, default=1024, metavar="MIB",
        help="async-rss: the state saved (default: %(default)s)")
    parser.add_argument(
        "--ranks", type=int, default=8,
        help="async-rss: concurrent uploads to the server (default: "
             "%(default)s)")
    parser.add_argument(
        "--rank-state-mib", type=int, default=128, metavar="MIB",
        help="async-rss: bytes each rank uploads (default: %(default)s)")
    parser.add_argument(
        "--server-quota-mib", type=int, default=256, metavar="MIB",
        help="async-rss: the server's memory quota for uploads, split "
             "between --upload-buffer-bytes (a quarter) and "
             "--grpc-memory-quota (the rest) (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        args.sizes_mib = [int(v) for v in args.sizes_mib.split(",")]
    except ValueError:
        parser.error("--sizes-mib takes MiB sizes, e.g. 256,1024")
    if not args.sizes_mib or min(args.sizes_mib) < 1:
        parser.error("--sizes-mib sizes must be >= 1")
    if args.saves < 2:
        parser.error("--saves must be >= 2")
    for name in ("rss_state_mib", "ranks", "rank_state_mib",
                 "server_quota_mib"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.model_mib < 1:
        parser.error("--model-mib must be >= 1")
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    for flag, minimum in (("floor", 3), ("state_format", 1)):
        if getattr(args, flag) is not None:
            setattr(args, flag, mib_sizes(parser, flag, getattr(args, flag),
                                          minimum))
    return args


def mib_sizes(parser, flag, text, minimum):
    """The MiB sizes "16,128" of --FLAG, each >= minimum (else exits)."""
    name = "--" + flag.replace("_", "-")
    try:
        sizes = [int(v) for v in text.split(",")]
    except ValueError:
        parser.error(f"{name} takes MiB sizes, e.g. 16,128")
    if not sizes or min(sizes) < minimum:
        parser.error(f"{name} sizes must be >= {minimum}")
    return sizes


class Server:
    """A ckpt-server from $CKPT_BUILD_DIR on 127.0.0.1:0, stopped by PID."""

    def __init__(self, data_dir, extra_args=()):
        build_dir = os.environ.get("CKPT_BUILD_DIR")
        if not build_dir:
            sys.exit("torch_bench: CKPT_BUILD_DIR is not set")
        binary = os.path.join(build_dir, "server", "rpc", "ckpt-server")
        if not os.access(binary, os.X_OK):
            sys.exit(f"torch_bench: no ckpt-server binary at {binary}")
        self.process = subprocess.Popen(
            [binary, "--data-dir", data_dir, "--listen", "127.0.0.1:0",
             *extra_args],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.process.stdout.readline()
        if not line.startswith(SERVER_PREFIX):
            self.stop()
            sys.exit(f"torch_bench: ckpt-server did not start: {line!r}")
        self.address = line[len(SERVER_PREFIX):].strip()

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()


def build_model(model_mib):
    """A stack of square nn.Linear layers with ~model_mib MiB of float32
    parameters, and an Adam optimizer that has taken one step (so its
    exp_avg and exp_avg_sq exist)."""
    params = model_mib * (1 << 20) // 4
    layers = max(1, math.ceil(params / (MAX_WIDTH * MAX_WIDTH)))
    width = max(1, int(math.sqrt(params / layers)))
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        *[torch.nn.Linear(width, width) for _ in range(layers)])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = model(torch.randn(4, width)).square().mean()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return model, optimizer


def make_state(model, optimizer, step):
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "step": step}


def tensors_of(value):
    """Every tensor in a nested state, in a fixed order."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from tensors_of(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from tensors_of(item)


def state_bytes(state):
    return sum(t.numel() * t.element_size() for t in tensors_of(state))


def perturb(state, round_index):
    """Changes every floating-point tensor slightly, as a training step
    would: every chunk's bytes differ from the last save's (no dedup)."""
    with torch.no_grad():
        for t in tensors_of(state):
            if t.is_floating_point() and t.numel() > 1:
                t.add_(1e-6 * (round_index + 1))


def check_equal(restored, expected, what):
    """Raises unless `restored` has the same structure, values and tensors
    (torch.equal, dtype and shape) as `expected`."""
    if isinstance(expected, torch.Tensor):
        if not (isinstance(restored, torch.Tensor) and
                restored.dtype == expected.dtype and
                torch.equal(restored, expected)):
            raise AssertionError(f"{what}: restored tensor differs")
    elif type(expected).__name__ == "ndarray":  # RNG states
        if type(restored) is not type(expected) or \
                restored.dtype != expected.dtype or \
                restored.tobytes() != expected.tobytes():
            raise AssertionError(f"{what}: restored array differs")
    elif isinstance(expected, dict):
        if not isinstance(restored, dict) or \
                list(restored.keys()) != list(expected.keys()):
            raise AssertionError(f"{what}: restored keys differ")
        for key in expected:
            check_equal(restored[key], expected[key], f"{what}/{key}")
    elif isinstance(expected, (list, tuple)):
        if type(restored) is not type(expected) or \
                len(restored) != len(expected):
            raise AssertionError(f"{what}: restored sequence differs")
        for i, (r, e) in enumerate(zip(restored, expected)):
            check_equal(r, e, f"{what}/{i}")
    elif restored != expected:
        raise AssertionError(f"{what}: restored value differs")


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def torch_save_fsync(state, path):
    with open(path, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())


def run(args):
    import ckpt  # after argparse, so --help works without PYTHONPATH

    base = args.dir or os.environ.get("TMPDIR") or "/var/tmp"
    model, optimizer = build_model(args.model_mib)
    state = make_state(model, optimizer, 0)
    nbytes = state_bytes(state)
    gib = nbytes / (1 << 30)
    if not args.json:
        print(f"state: {len(list(tensors_of(state)))} tensors, {gib:.3f} GiB "
              f"({args.model_mib} MiB of parameters + Adam moments); "
              f"torch {torch.__version__}, {torch.get_num_threads()} "
              f"intra-op thread(s)", flush=True)

    keys = ["torch_save", "sync_save", "torch_load", "restore", "clone",
            "copy_into", "async_blocking", "async_wait", "torch_load_fresh",
            "restore_fresh"]
    times = {key: [] for key in keys}
    with tempfile.TemporaryDirectory(prefix="ckpt-torch-bench-",
                                     dir=base) as work:
        server = Server(os.path.join(work, "db"), args.server_arg)
        try:
            sync = ckpt.CheckpointManager(server.address, "bench/sync",
                                          async_save=False)
            asyn = ckpt.CheckpointManager(server.address, "bench/async",
                                          async_save=True)
            preallocated = None
            for r in range(args.rounds):
                perturb(state, 2 * r)
                state["step"] = 2 * r
                # Each round writes a new file and keeps the old ones, as
                # successive torch.save checkpoints would (and as the server
                # keeps its checkpoints): see save_restore_bench.cc.
                path = os.path.join(work, f"torch-{r}.pt")
                t_save, _ = timed(lambda: torch_save_fsync(state, path))
                t_sync, _ = timed(lambda: sync.save(state, 2 * r))

                def load_torch():
                    return timed_and_dropped(
                        lambda: torch.load(path),
                        r == 0 and (lambda loaded: check_equal(
                            loaded, state, "torch.load")))

                def load_ckpt():
                    return timed_and_dropped(
                        lambda: sync.restore(2 * r),
                        r == 0 and (lambda restored: check_equal(
                            restored, state, "ckpt restore")))
                # Which side goes first alternates by round; each result is
                # dropped before the other side runs, so both find memory
                # in the same state (see the module docstring).
                t_load, t_restore = in_turn(r, load_torch, load_ckpt)
                t_load_fresh, t_restore_fresh = in_turn(
                    r, lambda: fresh_process_seconds("torch", path),
                    lambda: fresh_process_seconds(
                        "ckpt", server.address, "bench/sync", 2 * r))

                t_clone, clones = timed(
                    lambda: [t.clone() for t in tensors_of(state)])
                del clones
                if preallocated is None:
                    preallocated = [torch.empty_like(t).fill_(0)
                                    for t in tensors_of(state)]

                def copy_into():
                    for dst, src in zip(preallocated, tensors_of(state)):
                        dst.copy_(src)
                t_copy, _ = timed(copy_into)

                perturb(state, 2 * r + 1)
                state["step"] = 2 * r + 1
                t_block, _ = timed(lambda: asyn.save(state, 2 * r + 1))
                t_wait, _ = timed(asyn.wait)
                if r == 0:  # the async copy is what was uploaded
                    restored = asyn.restore(2 * r + 1)
                    check_equal(restored, state, "ckpt async restore")
                    del restored
                    gc.collect()

                for key, value in zip(keys, (t_save, t_sync, t_load,
                                             t_restore, t_clone, t_copy,
                                             t_block, t_wait, t_load_fresh,
                                             t_restore_fresh)):
                    times[key].append(value)
                if not args.json:
                    print(f"round {r}: torch.save+fsync {t_save:.3f}s  "
                          f"sync save {t_sync:.3f}s ({t_sync / t_save:.2f}x)  "
                          f"async blocks {t_block:.3f}s "
                          f"({t_block / t_save:.3f}x) + wait {t_wait:.3f}s  "
                          f"clone {t_clone:.3f}s  copy_ {t_copy:.3f}s  "
                          f"torch.load {t_load:.3f}s  restore "
                          f"{t_restore:.3f}s ({t_restore / t_load:.2f}x)  "
                          f"new process: torch.load {t_load_fresh:.3f}s  "
                          f"restore {t_restore_fresh:.3f}s "
                          f"({t_restore_fresh / t_load_fresh:.2f}x)",
                          flush=True)
            sync.close()
            asyn.close()
        finally:
            server.stop()

    med = {key: statistics.median(values) for key, values in times.items()}
    ratios = {
        "sync_save": med["sync_save"] / med["torch_save"],
        "async_blocking": med["async_blocking"] / med["torch_save"],
        "restore": med["restore"] / med["torch_load"],
        "restore_fresh": med["restore_fresh"] / med["torch_load_fresh"],
        "clone_floor": med["clone"] / med["torch_save"],
        "copy_into_floor": med["copy_into"] / med["torch_save"],
    }
    if args.json:
        print(json.dumps({
            "bytes": nbytes, "rounds": args.rounds,
            "median_seconds": med, "ratios": ratios, "goals": GOALS,
        }, indent=2))
        return

    def verdict(name):
        return "meets" if ratios[name] <= GOALS[name] else "misses"

    print(f"\n{gib:.2f} GiB state, median of {args.rounds} round(s)\n"
          f"  torch.save+fsync  {med['torch_save']:.3f}s  "
          f"{gib / med['torch_save']:.2f} GiB/s\n"
          f"  sync save         {med['sync_save']:.3f}s  "
          f"ratio {ratios['sync_save']:.2f}x  (goal <= "
          f"{GOALS['sync_save']}: {verdict('sync_save')})\n"
          f"  async save blocks {med['async_blocking']:.3f}s  "
          f"ratio {ratios['async_blocking']:.3f}x  (goal <= "
          f"{GOALS['async_blocking']}: {verdict('async_blocking')}); "
          f"wait() after it {med['async_wait']:.3f}s\n"
          f"  copy floor        clone {med['clone']:.3f}s "
          f"({ratios['clone_floor']:.3f}x), copy_ into kept tensors "
          f"{med['copy_into']:.3f}s ({ratios['copy_into_floor']:.3f}x)\n"
          f"  torch.load        {med['torch_load']:.3f}s  "
          f"{gib / med['torch_load']:.2f} GiB/s\n"
          f"  restore           {med['restore']:.3f}s  "
          f"ratio {ratios['restore']:.2f}x  (goal <= "
          f"{GOALS['restore']}: {verdict('restore')})\n"
          f"  in a new process (a restarted job):\n"
          f"  torch.load        {med['torch_load_fresh']:.3f}s\n"
          f"  restore           {med['restore_fresh']:.3f}s  "
          f"ratio {ratios['restore_fresh']:.2f}x  (goal <= "
          f"{GOALS['restore_fresh']}: {verdict('restore_fresh')})")


def transformer_state(model_mib):
    """A 12-layer transformer encoder of ~model_mib MiB of float32
    parameters after one Adam step, with the RNG states a training script
    saves: the state tree of a real job (~150 parameters, ~450 optimizer
    tensors, param_groups, torch/numpy/python RNG states)."""
    import random
    import numpy as np
    layers = 12
    # ~12.6 * d^2 parameters per layer with dim_feedforward = 4 * d.
    d_model = max(8, int(math.sqrt(model_mib * (1 << 20) / 4 / layers / 12.6)))
    d_model -= d_model % 8
    torch.manual_seed(0)
    model = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(
        d_model, nhead=8, dim_feedforward=4 * d_model), num_layers=layers)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3,
                                 betas=(0.9, 0.95))
    model(torch.randn(2, 3, d_model)).square().mean().backward()
    optimizer.step()
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "rng": {"torch": torch.get_rng_state(),
                    "numpy": np.random.get_state(),
                    "python": random.getstate()},
            "step": 0}


def rebuilt(tensors, allow_pickle):
    """The state of save_shard-style tensors as a restore rebuilds it past
    the network: decode the tree, check its references, put the tensors
    back (as torch tensors over the arrays)."""
    from ckpt import state_layout, tree

    entries = {t[0]: tuple(t[1:5]) + (None,) for t in tensors}
    arrays = {t[0]: t[5] for t in tensors}
    skeleton, refs = state_layout.decode_state(
        arrays[state_layout.STATE_TENSOR].tobytes(), allow_pickle)
    state_layout.check_refs(refs, entries, 0)

    def build(node):
        if isinstance(node, tree.TensorRef):
            array = arrays[node.name].reshape(node.shape)
            return array if node.kind == "numpy" else torch.from_numpy(array)
        if isinstance(node, dict):
            return type(node)((key, build(item)) for key, item in node.items())
        if type(node) in (list, tuple):
            return type(node)(build(item) for item in node)
        return node

    return build(skeleton)


def format_one_flatten(manager_module):
    """The manager's _flatten as it was before the typed tree: the same
    tensor handling, the skeleton (tensors as _TensorRef) pickled whole as
    format 1."""
    import pickle
    import numpy as np
    import ckpt.state_layout as layout_module

    def flatten(state, copy, staging=None, allow_pickle=False,
                what="save"):
        flattener = layout_module._Flattener(copy, staging, allow_pickle)

        def walk(value, path):
            if isinstance(value, (torch.Tensor, np.ndarray)):
                ref = flattener._tensor_ref(value, path)
                return layout_module._TensorRef(ref.name, ref.kind,
                                                 ref.dtype, ref.shape)
            if isinstance(value, dict):
                out = type(value)() if type(value) is not dict else {}
                for key, item in value.items():
                    out[key] = walk(item, path + (key,))
                return out
            if type(value) in (list, tuple):
                items = [walk(item, path + (i,))
                         for i, item in enumerate(value)]
                return items if type(value) is list else tuple(items)
            return value

        blob = pickle.dumps({"format": 1, "tree": walk(state, ())},
                            protocol=pickle.HIGHEST_PROTOCOL)
        blob_array = np.frombuffer(blob, dtype=np.uint8)
        tensors = [(manager_module.STATE_TENSOR, "uint8", [len(blob)], [0],
                    [len(blob)], blob_array)]
        for name, dtype, shape, offsets, lengths, array in \
                flattener.tensors:
            tensors.append((name, dtype, list(shape), list(offsets),
                            list(lengths), array))
        # Sync saves of CPU tensors only: nothing is staged.
        return tensors, (flattener._keep_alive, blob), flattener.quantize, \
            False
    return flatten


def spread(values):
    """median [min-max] in milliseconds."""
    return (f"{1000 * statistics.median(values):8.2f} ms "
            f"[{1000 * min(values):.2f}-{1000 * max(values):.2f}]")


def run_state_format(args):
    """Typed tree (format 2) against the pickle of format 1, same state,
    same server, alternating which goes first each round."""
    import ckpt
    import ckpt.manager as manager_module

    base = args.dir or os.environ.get("TMPDIR") or "/var/tmp"
    new_flatten = manager_module._flatten
    old_flatten = format_one_flatten(manager_module)
    results = {}
    with tempfile.TemporaryDirectory(prefix="ckpt-format-bench-",
                                     dir=base) as work:
        server = Server(os.path.join(work, "db"), args.server_arg)
        try:
            for mib in args.state_format:
                state = transformer_state(mib)
                times = {key: [] for key in (
                    "save_tree", "save_pickle", "restore_tree",
                    "restore_pickle", "encode_tree", "encode_pickle",
                    "decode_tree", "decode_pickle")}
                # One tenant each: chunks are deduplicated per tenant, and
                # the second save of a round would otherwise upload nothing.
                managers = {
                    "tree": ckpt.CheckpointManager(
                        server.address, f"tree-{mib}/bench"),
                    "pickle": ckpt.CheckpointManager(
                        server.address, f"pickle-{mib}/bench",
                        allow_pickle=True)}
                flattens = {"tree": new_flatten, "pickle": old_flatten}
                blobs = {}
                for r in range(args.rounds):
                    perturb(state, r)
                    order = ("tree", "pickle") if r % 2 == 0 else \
                        ("pickle", "tree")
                    for kind in order:
                        manager_module._flatten = flattens[kind]
                        try:
                            t_save, _ = timed(
                                lambda: managers[kind].save(state, r))
                        finally:
                            manager_module._flatten = new_flatten
                        t_restore = timed_and_dropped(
                            lambda: managers[kind].restore(r),
                            r == 0 and (lambda restored: check_equal(
                                restored, state, f"{kind} restore")))
                        t_encode, tensors = timed(
                            lambda: flattens[kind](state, copy=False)[0])
                        blobs[kind] = tensors[0][5].tobytes()
                        # The restore's work past the network: read the
                        # tree, check its references, put tensors back.
                        t_decode, _ = timed(lambda: rebuilt(
                            tensors, kind == "pickle"))
                        del tensors
                        for key, value in (("save", t_save),
                                           ("restore", t_restore),
                                           ("encode", t_encode),
                                           ("decode", t_decode)):
                            times[f"{key}_{kind}"].append(value)
                for manager in managers.values():
                    manager.close()
                nbytes = state_bytes(state)
                tensor_count = len(list(tensors_of(state)))
                results[mib] = {
                    "bytes": nbytes, "tensors": tensor_count,
                    "tree_bytes": len(blobs["tree"]),
                    "pickle_bytes": len(blobs["pickle"]),
                    "median_seconds": {key: statistics.median(v)
                                       for key, v in times.items()},
                    "seconds": times}
                if not args.json:
                    print(f"\n{mib} MiB of parameters: state "
                          f"{nbytes / (1 << 20):.0f} MiB in {tensor_count} "
                          f"tensors; state blob: tree {len(blobs['tree'])} "
                          f"bytes, pickle {len(blobs['pickle'])} bytes; "
                          f"median [min-max] of {args.rounds} round(s)")
                    for key in ("save", "restore", "encode", "decode"):
                        print(f"  {key:8s} tree   {spread(times[key + '_tree'])}"
                              f"   pickle {spread(times[key + '_pickle'])}")
        finally:
            server.stop()
    if args.json:
        print(json.dumps({"rounds": args.rounds, "sizes": results},
                         indent=2))


def main(argv=None):
    args = parse_args(argv)
    if args.floor is not None:
        import torch_floor
        torch_floor.run_floor(args)
    elif args.mode != "default":
        import torch_bench_async  # beside this file
        if args.mode == "async-stall":
            torch_bench_async.run_stall(args)
        else:
            torch_bench_async.run_rss(args)
    elif args.state_format is not None:
        run_state_format(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
