"""deploy/demo_train.py (the main job) as a subprocess against a server:
crash, resume bit-identical, retention."""

import os
import subprocess
import sys

import ckpt

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                      "deploy", "demo_train.py")
CRASH_EXIT_CODE = 3  # demo_train.CRASH_EXIT_CODE


def run_demo(server, job, *flags):
    return subprocess.run(
        [sys.executable, SCRIPT, "--server", server, "--job", job,
         "--steps", "30", "--save-every", "5", *flags],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=120)


def test_demo_crashes_resumes_bit_identical_and_keeps_three(server):
    crashed = run_demo(server, "demo/test", "--crash-at", "17")
    assert crashed.returncode == CRASH_EXIT_CODE, crashed.stdout
    assert "simulated crash" in crashed.stdout
    client = ckpt.Client(server, connect_timeout=10.0)
    # Async save: step 15's upload may still have been running at the crash.
    assert client.latest_step("demo/test") in (10, 15)

    resumed = run_demo(server, "demo/test", "--verify")
    assert resumed.returncode == 0, resumed.stdout
    assert "resumed from checkpoint at step 1" in resumed.stdout
    assert "VERIFY OK" in resumed.stdout
    steps = [c["step"] for c in client.list_checkpoints("demo/test")]
    assert steps == [20, 25, 30]  # max_to_keep=3


def test_demo_verify_detects_a_different_state(server):
    crashed = run_demo(server, "demo/tampered", "--crash-at", "12",
                       "--sync")
    assert crashed.returncode == CRASH_EXIT_CODE, crashed.stdout
    with ckpt.CheckpointManager(server, "demo/tampered") as manager:
        assert manager.latest_step == 10  # sync: saved before the crash
        state = manager.restore()
        first = next(iter(state["model"]))
        state["model"][first] += 1e-3
        manager.save(state, 11)  # resumed from, with state["step"] == 10

    resumed = run_demo(server, "demo/tampered", "--verify", "--sync")
    assert resumed.returncode == 1, resumed.stdout
    assert "VERIFY FAILED" in resumed.stdout
