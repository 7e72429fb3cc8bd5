"""torch_bench.py --floor: issue 19's performance floor for a dense PyTorch
state, side by side in one run, at each state size given:

  disk floor       the state's tensor bytes written to a new file in 1 MiB
                   pieces + fsync (as disk_floor.h does for the C++ bench)
  torch.save       torch.save(state) into a new file, flush + os.fsync
  ckpt sync save   CheckpointManager(async_save=False).save(state, step)
  torch.load       of that file
  ckpt restore     through shared memory (the default on one host)
  ckpt network     with a ckpt.Client(shared_memory_restore=False): every
  restore          byte over the connection, as from a remote server

The three saves rotate which goes first from round to round, and so do the
three loads (each result dropped before the next runs, as torch_bench.py
explains). Reports medians, [min-max] and the ratios against the goals:
sync save <= 1.0x torch.save+fsync and <= 1.1x the disk floor, network
restore <= 1.3x torch.load, shared-memory restore <= 1.0x.
"""

import json
import os
import statistics
import tempfile

import torch

import torch_bench as bench

GOALS = {
    "sync_save_vs_torch_save": 1.0,
    "sync_save_vs_disk_floor": 1.1,
    "network_restore_vs_torch_load": 1.3,
    "shared_memory_restore_vs_torch_load": 1.0,
}
PIECE = 1 << 20


def disk_floor_write(state, path):
    """The state's tensor bytes, 1 MiB writes each, then fsync."""
    with open(path, "wb", buffering=0) as f:
        for t in bench.tensors_of(state):
            view = memoryview(t.detach().contiguous().numpy()).cast("B")
            for off in range(0, len(view), PIECE):
                f.write(view[off:off + PIECE])
        os.fsync(f.fileno())


def rotated(round_index, items):
    shift = round_index % len(items)
    return items[shift:] + items[:shift]


def measure_size(ckpt, server, work, state_mib, rounds):
    model, optimizer = bench.build_model(max(1, state_mib // 3))
    state = bench.make_state(model, optimizer, 0)
    job = f"floor-{state_mib}/bench"
    sync = ckpt.CheckpointManager(server.address, job, async_save=False)
    remote = ckpt.CheckpointManager(
        ckpt.Client(server.address, shared_memory_restore=False), job)
    keys = ("disk_floor", "torch_save", "sync_save", "torch_load",
            "restore", "network_restore")
    times = {key: [] for key in keys}
    for r in range(rounds):
        bench.perturb(state, r)
        state["step"] = r
        torch_path = os.path.join(work, f"torch-{state_mib}-{r}.pt")
        floor_path = os.path.join(work, f"floor-{state_mib}-{r}.bin")
        saves = {
            "disk_floor": lambda: disk_floor_write(state, floor_path),
            "torch_save": lambda: bench.torch_save_fsync(state, torch_path),
            "sync_save": lambda: sync.save(state, r),
        }
        for key in rotated(r, list(saves)):
            times[key].append(bench.timed(saves[key])[0])

        def checked(what):
            return r == 0 and (lambda restored: bench.check_equal(
                restored, state, what))
        loads = {
            "torch_load": lambda: bench.timed_and_dropped(
                lambda: torch.load(torch_path), checked("torch.load")),
            "restore": lambda: bench.timed_and_dropped(
                lambda: sync.restore(r), checked("ckpt restore")),
            "network_restore": lambda: bench.timed_and_dropped(
                lambda: remote.restore(r), checked("ckpt network restore")),
        }
        for key in rotated(r, list(loads)):
            times[key].append(loads[key]())
        os.unlink(floor_path)  # the torch files stay, as checkpoints would
    sync.close()
    remote.close()
    med = {key: statistics.median(v) for key, v in times.items()}
    ratios = {
        "sync_save_vs_torch_save": med["sync_save"] / med["torch_save"],
        "sync_save_vs_disk_floor": med["sync_save"] / med["disk_floor"],
        "network_restore_vs_torch_load":
            med["network_restore"] / med["torch_load"],
        "shared_memory_restore_vs_torch_load":
            med["restore"] / med["torch_load"],
        "torch_save_vs_disk_floor": med["torch_save"] / med["disk_floor"],
    }
    # The ratio per round (same round's baseline), to show the spread.
    per_round = {
        "sync_save_vs_torch_save": [
            a / b for a, b in zip(times["sync_save"], times["torch_save"])],
        "sync_save_vs_disk_floor": [
            a / b for a, b in zip(times["sync_save"], times["disk_floor"])],
        "network_restore_vs_torch_load": [
            a / b for a, b in zip(times["network_restore"],
                                  times["torch_load"])],
        "shared_memory_restore_vs_torch_load": [
            a / b for a, b in zip(times["restore"], times["torch_load"])],
    }
    return {"bytes": bench.state_bytes(state), "seconds": times,
            "median_seconds": med, "ratios": ratios,
            "ratios_per_round": per_round}


def run_floor(args):
    import ckpt  # after argparse, so --help works without PYTHONPATH

    base = args.dir or os.environ.get("TMPDIR") or "/var/tmp"
    results = {}
    with tempfile.TemporaryDirectory(prefix="ckpt-floor-bench-",
                                     dir=base) as work:
        server = bench.Server(os.path.join(work, "db"), args.server_arg)
        try:
            for state_mib in args.floor:
                result = measure_size(ckpt, server, work, state_mib,
                                      args.rounds)
                results[state_mib] = result
                if not args.json:
                    print_size(state_mib, result, args.rounds)
        finally:
            server.stop()
    if args.json:
        print(json.dumps({"rounds": args.rounds, "goals": GOALS,
                          "sizes": results, "load": os.getloadavg()},
                         indent=2))


def print_size(state_mib, result, rounds):
    gib = result["bytes"] / (1 << 30)
    print(f"\n{state_mib} MiB state ({gib:.3f} GiB), median [min-max] of "
          f"{rounds} round(s), load {os.getloadavg()[0]:.1f}")
    for key in ("disk_floor", "torch_save", "sync_save", "torch_load",
                "restore", "network_restore"):
        values = result["seconds"][key]
        print(f"  {key:16s} {statistics.median(values):7.3f}s "
              f"[{min(values):.3f}-{max(values):.3f}]  "
              f"{gib / statistics.median(values):.2f} GiB/s")
    for key, goal in GOALS.items():
        ratio = result["ratios"][key]
        spread = result["ratios_per_round"][key]
        print(f"  {key:36s} {ratio:.2f}x [per round "
              f"{min(spread):.2f}-{max(spread):.2f}]  goal <= {goal}: "
              f"{'meets' if ratio <= goal else 'misses'}")
