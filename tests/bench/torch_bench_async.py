"""The async-save modes of tests/bench/torch_bench.py (issue 19, "The
performance floor"), each side by side with its floor in one run:

  --mode async-stall  the time CheckpointManager(async_save=True).save()
      blocks the caller against torch.save + fsync of the same state
      (model + Adam, perturbed each round as a training step would), at
      each of --sizes-mib; with the memory-copy floors of the same bytes
      (ckpt's copy into its kept pool on 1 and on the default threads,
      torch's copy_ into kept tensors). The first save, which allocates
      the pool, is reported apart. Goal: stall <= 0.05x torch.save+fsync.
  --mode async-rss    --saves consecutive async saves of a --rss-state-mib
      state (a training step between them) with staging_bytes the state's
      size: the client's RSS after the last save against after save 2
      (goal: within 2%), and its peak over the process's RSS before the
      state was built against state + staging budget + 10%; then --ranks
      ranks upload --rank-state-mib each at once (threads, sync saves) to a
      server whose --upload-buffer-bytes and --grpc-memory-quota add up to
      --server-quota-mib (a quarter and the rest): the server's peak RSS
      growth over its idle RSS against that quota.

Each mode prints per-round lines, medians with [min-max], the ratios and
goals, and with --json one JSON object (soak.sh reads it).
"""

import gc
import json
import os
import statistics
import tempfile
import threading
import time

import torch

import torch_bench as bench

STALL_GOAL = 0.05        # async save() blocking / torch.save+fsync
RSS_FLAT_GOAL = 0.02     # |RSS after save N - after save 2| / after save 2
PEAK_SLACK = 0.10        # peak <= (state + staging budget) * (1 + this)


def spread_text(values, unit="s"):
    scale = 1000 if unit == "ms" else 1
    return (f"{scale * statistics.median(values):.3f}{unit} "
            f"[{scale * min(values):.3f}-{scale * max(values):.3f}]")


def summary(values):
    return {"median": statistics.median(values), "min": min(values),
            "max": max(values), "values": values}


def proc_status(pid, field):
    """A /proc/PID/status field in bytes (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def reset_peak(pid):
    """Resets VmHWM of process `pid` to its current RSS (Linux >= 4.0)."""
    with open(f"/proc/{pid}/clear_refs", "w") as clear:
        clear.write("5")


def model_state(state_mib):
    """A model + Adam state of about `state_mib` MiB (a third parameters)."""
    model, optimizer = bench.build_model(max(1, round(state_mib / 3)))
    return model, optimizer, bench.make_state(model, optimizer, 0)


def copy_floors(state, pool_threads):
    """(seconds of ckpt's copy_buffers into kept memory on 1 thread, on the
    default threads, of torch's copy_ into kept tensors) for the state's
    tensors: the floors a staged copy can reach."""
    from ckpt import _ckpt
    tensors = list(bench.tensors_of(state))
    kept = [torch.empty_like(t).fill_(0) for t in tensors]
    sources = [t.detach().reshape(-1).view(torch.uint8).numpy()
               for t in tensors]
    targets = [k.reshape(-1).view(torch.uint8).numpy() for k in kept]
    one, _ = bench.timed(lambda: _ckpt.copy_buffers(targets, sources, 1))
    many, _ = bench.timed(
        lambda: _ckpt.copy_buffers(targets, sources, pool_threads))

    def torch_copy():
        for dst, src in zip(kept, tensors):
            dst.copy_(src)
    by_torch, _ = bench.timed(torch_copy)
    return one, many, by_torch


def run_stall(args):
    import ckpt
    from ckpt import _ckpt

    base = args.dir or os.environ.get("TMPDIR") or "/var/tmp"
    threads = _ckpt.copy_threads(0)
    results = {}
    with tempfile.TemporaryDirectory(prefix="ckpt-stall-bench-",
                                     dir=base) as work:
        server = bench.Server(os.path.join(work, "db"), args.server_arg)
        try:
            for size in args.sizes_mib:
                model, optimizer, state = model_state(size)
                nbytes = bench.state_bytes(state)
                manager = ckpt.CheckpointManager(
                    server.address, f"stall-{size}/bench", async_save=True)
                # The first save allocates the pool (its page faults).
                first, _ = bench.timed(lambda: manager.save(state, 0))
                manager.wait()
                times = {key: [] for key in (
                    "torch_save", "stall", "wait", "copy_1_thread",
                    "copy_threads", "torch_copy", "ratio")}
                path = None
                for r in range(args.rounds):
                    bench.perturb(state, r)
                    state["step"] = r + 1
                    if path is not None:
                        os.remove(path)  # bounded disk use: one file at once
                    path = os.path.join(work, f"torch-{size}-{r}.pt")
                    t_save, _ = bench.timed(
                        lambda: bench.torch_save_fsync(state, path))
                    t_stall, _ = bench.timed(
                        lambda: manager.save(state, r + 1))
                    t_wait, _ = bench.timed(manager.wait)
                    if r == 0:  # the staged copy is what was uploaded
                        restored = manager.restore(r + 1)
                        bench.check_equal(restored, state, "async restore")
                        del restored
                        gc.collect()
                    floors = copy_floors(state, threads)
                    gc.collect()
                    for key, value in zip(times, (
                            t_save, t_stall, t_wait, *floors,
                            t_stall / t_save)):
                        times[key].append(value)
                    if not args.json:
                        print(f"{size} MiB round {r}: torch.save+fsync "
                              f"{t_save:.3f}s  save() blocks "
                              f"{1000 * t_stall:.1f}ms "
                              f"({t_stall / t_save:.3f}x) + wait "
                              f"{t_wait:.3f}s  copy floors: 1 thread "
                              f"{1000 * floors[0]:.1f}ms, {threads} threads "
                              f"{1000 * floors[1]:.1f}ms, torch copy_ "
                              f"{1000 * floors[2]:.1f}ms", flush=True)
                os.remove(path)
                pool = manager.staging
                manager.close()
                ratio = statistics.median(times["stall"]) / \
                    statistics.median(times["torch_save"])
                results[size] = {
                    "bytes": nbytes, "first_save_blocks": first,
                    "pool": {k: pool[k] for k in (
                        "capacity", "allocations", "pinned")},
                    "seconds": {k: summary(v) for k, v in times.items()
                                if k != "ratio"},
                    "ratio_of_medians": ratio,
                    "ratio_per_round": summary(times["ratio"]),
                    "goal": STALL_GOAL, "meets": ratio <= STALL_GOAL}
                if not args.json:
                    print(f"{size} MiB ({nbytes / (1 << 30):.3f} GiB), "
                          f"{args.rounds} round(s), median [min-max]:\n"
                          f"  torch.save+fsync   "
                          f"{spread_text(times['torch_save'])}\n"
                          f"  async save blocks  "
                          f"{spread_text(times['stall'], 'ms')}  ratio "
                          f"{ratio:.4f}x (per round "
                          f"{min(times['ratio']):.4f}-"
                          f"{max(times['ratio']):.4f}; goal <= "
                          f"{STALL_GOAL}: "
                          f"{'meets' if ratio <= STALL_GOAL else 'misses'})"
                          f"\n  first save (allocates the pool) "
                          f"{1000 * first:.1f}ms; wait() after a save "
                          f"{spread_text(times['wait'])}\n"
                          f"  copy floors: 1 thread "
                          f"{spread_text(times['copy_1_thread'], 'ms')}, "
                          f"{threads} threads "
                          f"{spread_text(times['copy_threads'], 'ms')}, "
                          f"torch copy_ "
                          f"{spread_text(times['torch_copy'], 'ms')}",
                          flush=True)
                del model, optimizer, state
                gc.collect()
        finally:
            server.stop()
    if args.json:
        print(json.dumps({"mode": "async-stall", "rounds": args.rounds,
                          "copy_threads": threads, "sizes": results}))


def client_rss(args, server):
    """The client half of async-rss: RSS across consecutive async saves."""
    import ckpt
    baseline = proc_status("self", "VmRSS")
    model, optimizer, state = model_state(args.rss_state_mib)
    nbytes = bench.state_bytes(state)
    count = len(list(bench.tensors_of(state)))
    budget = nbytes + 64 * count  # each tensor rounded up to 64 bytes
    manager = ckpt.CheckpointManager(server.address, "rss/bench",
                                     async_save=True, staging_bytes=budget)
    gc.collect()
    reset_peak("self")
    after = []
    for save in range(1, args.saves + 1):
        bench.perturb(state, save)  # a training step
        state["step"] = save
        manager.save(state, save)
        after.append(proc_status("self", "VmRSS"))
        if not args.json:
            print(f"save {save}: RSS {after[-1] / (1 << 20):.1f} MiB",
                  flush=True)
    manager.wait()
    peak = proc_status("self", "VmHWM")
    restored = manager.restore(args.saves)
    bench.check_equal(restored, state, "async restore")
    del restored
    pool = manager.staging
    manager.close()
    del model, optimizer, state
    gc.collect()
    second, last = after[1], after[-1]
    growth = (last - second) / second
    peak_growth = peak - baseline
    peak_limit = (nbytes + budget) * (1 + PEAK_SLACK)
    return {
        "state_bytes": nbytes, "staging_bytes": budget, "saves": args.saves,
        "baseline_rss": baseline, "rss_after_save": after,
        "rss_growth_2_to_last": growth, "flat_goal": RSS_FLAT_GOAL,
        "flat": abs(growth) <= RSS_FLAT_GOAL,
        "peak_rss": peak, "peak_over_baseline": peak_growth,
        "peak_limit": peak_limit, "peak_ok": peak_growth <= peak_limit,
        "pool": {k: pool[k] for k in ("capacity", "allocations")}}


def server_rss(args, work):
    """The server half of async-rss: --ranks concurrent uploads to a server
    whose upload buffer budget and gRPC quota add up to the quota."""
    import ckpt
    quota = args.server_quota_mib << 20
    upload_buffer = quota // 4
    server = bench.Server(os.path.join(work, "db-quota"),
                          [*args.server_arg,
                           f"--upload-buffer-bytes={upload_buffer}",
                           f"--grpc-memory-quota={quota - upload_buffer}"])
    try:
        pid = server.process.pid
        managers = [ckpt.CheckpointManager(
            server.address, "ranks/bench", rank=r, world_size=args.ranks)
            for r in range(args.ranks)]
        elements = (args.rank_state_mib << 20) // 4
        states = [{"w": torch.rand(elements, generator=torch.Generator()
                                   .manual_seed(r))}
                  for r in range(args.ranks)]
        idle = proc_status(pid, "VmRSS")
        reset_peak(pid)
        samples = []
        done = threading.Event()

        def sample():
            while not done.is_set():
                samples.append(proc_status(pid, "VmRSS"))
                done.wait(0.01)
        sampler = threading.Thread(target=sample)
        sampler.start()
        errors = []

        def upload(r):
            try:
                managers[r].save(states[r], 1)
            except Exception as error:  # reported below
                errors.append(error)
        start = time.perf_counter()
        uploads = [threading.Thread(target=upload, args=(r,))
                   for r in range(args.ranks)]
        for thread in uploads:
            thread.start()
        for thread in uploads:
            thread.join()
        seconds = time.perf_counter() - start
        done.set()
        sampler.join()
        peak = proc_status(pid, "VmHWM")
        if errors:
            raise SystemExit(f"torch_bench: a concurrent upload failed: "
                             f"{errors[0]}")
        restored = managers[0].restore(1)
        if not torch.equal(restored["w"], states[0]["w"]):
            raise AssertionError("rank 0's concurrent upload differs")
        for manager in managers:
            manager.close()
    finally:
        server.stop()
    return {"ranks": args.ranks, "rank_bytes": args.rank_state_mib << 20,
            "quota_bytes": quota, "idle_rss": idle, "peak_rss": peak,
            "peak_over_idle": peak - idle, "samples": len(samples),
            "seconds": seconds, "within_quota": peak - idle <= quota}


def run_rss(args):
    base = args.dir or os.environ.get("TMPDIR") or "/var/tmp"
    with tempfile.TemporaryDirectory(prefix="ckpt-rss-bench-",
                                     dir=base) as work:
        server = bench.Server(os.path.join(work, "db"), args.server_arg)
        try:
            client = client_rss(args, server)
        finally:
            server.stop()
        served = server_rss(args, work)
    if args.json:
        print(json.dumps({"mode": "async-rss", "client": client,
                          "server": served}))
        return
    mib = 1 << 20
    print(f"client: {client['saves']} async saves of "
          f"{client['state_bytes'] / mib:.0f} MiB, staging_bytes "
          f"{client['staging_bytes'] / mib:.0f} MiB (pool allocated "
          f"{client['pool']['allocations']} time(s))\n"
          f"  RSS after save 2 {client['rss_after_save'][1] / mib:.1f} MiB, "
          f"after save {client['saves']} "
          f"{client['rss_after_save'][-1] / mib:.1f} MiB: "
          f"{100 * client['rss_growth_2_to_last']:+.2f}% (goal within "
          f"{100 * RSS_FLAT_GOAL:.0f}%: "
          f"{'meets' if client['flat'] else 'misses'})\n"
          f"  peak RSS {client['peak_rss'] / mib:.1f} MiB, "
          f"{client['peak_over_baseline'] / mib:.1f} MiB over the process "
          f"before the state ({client['baseline_rss'] / mib:.1f} MiB); "
          f"limit (state + staging) x {1 + PEAK_SLACK:.2f} = "
          f"{client['peak_limit'] / mib:.1f} MiB: "
          f"{'meets' if client['peak_ok'] else 'misses'}\n"
          f"server: {served['ranks']} ranks x "
          f"{served['rank_bytes'] / mib:.0f} MiB at once in "
          f"{served['seconds']:.2f}s, quota "
          f"{served['quota_bytes'] / mib:.0f} MiB (--upload-buffer-bytes "
          f"a quarter, --grpc-memory-quota the rest)\n"
          f"  idle RSS {served['idle_rss'] / mib:.1f} MiB, peak "
          f"{served['peak_rss'] / mib:.1f} MiB: "
          f"{served['peak_over_idle'] / mib:.1f} MiB over idle "
          f"({'within' if served['within_quota'] else 'over'} the quota)",
          flush=True)
