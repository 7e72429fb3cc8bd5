"""ckpt-server on Ceph, configured carelessly or hostilely: an empty or
missing pool, a missing ceph.conf or one naming no live monitor, a cephx
user without rights on the pool or unknown to the cluster, a hold shorter
than two lock leases: each exits non-zero within a bound, with a message
naming the problem, and never serves. And deploy/ceph as written: the
README's pool and user commands run against the test cluster, and three
servers run with the example config.

ctest runs this file under tests/ceph/ceph_cluster.py --run (one throwaway
cluster for the file). Helpers and fixtures: ceph_servers.py."""

import pathlib
import re
import shlex
import socket
import subprocess
import time

import pytest

import ckpt
from ceph_servers import (CephServer, ceph_flags, check_restore,
                          global_tensors, save_both)
from conftest import _server_binary

# The fixtures ceph, servers and pool.
pytest_plugins = ["ceph_servers"]


# --- careless and hostile configurations -------------------------------

def start_failure(ceph, tmp_path, timeout, extra=(), **overrides):
    """Runs ckpt-server with `overrides` of the Ceph flags and returns
    (exit code, seconds, log); fails the test when it serves or does not
    exit within `timeout` seconds."""
    argv = [_server_binary(), "--listen", "127.0.0.1:0",
            *ceph_flags(ceph, **overrides), *extra]
    started = time.monotonic()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"ckpt-server hung {timeout} s: {argv}\n{out}\n{err}")
    seconds = time.monotonic() - started
    assert "listening" not in out, (argv, out, err)
    assert process.returncode != 0, (argv, out, err)
    return process.returncode, seconds, err


def dead_mon_conf(ceph, tmp_path):
    """The test conf with its monitor moved to a port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    text = re.sub(r"v2:127\.0\.0\.1:\d+", f"v2:127.0.0.1:{port}",
                  pathlib.Path(ceph["conf"]).read_text())
    path = tmp_path / "dead-mon.conf"
    path.write_text(text)
    return str(path)


def add_user(ceph, tmp_path, name, osd_caps):
    keyring = tmp_path / f"ceph.client.{name}.keyring"
    subprocess.run(
        ["ceph", "-c", ceph["conf"], "--id", ceph["user"], "--keyring",
         ceph["keyring"], "auth", "get-or-create", f"client.{name}", "mon",
         "allow r", "osd", osd_caps, "-o", str(keyring)],
        check=True, capture_output=True, timeout=60)
    return str(keyring)


def test_an_empty_pool_name_is_refused(ceph, tmp_path):
    _, seconds, err = start_failure(ceph, tmp_path, 30, chunk_store="rados:")
    assert "pool" in err.lower() and "chunk" in err, err
    assert seconds < 10, seconds


def test_a_missing_pool_is_refused_by_name(ceph, tmp_path):
    _, seconds, err = start_failure(ceph, tmp_path, 60,
                                    chunk_store="rados:nosuchpool")
    assert "nosuchpool" in err, err
    assert re.search(r"No such file|does not exist|not found", err), err
    assert seconds < 20, seconds


def test_a_missing_ceph_conf_is_refused_by_name(ceph, tmp_path):
    missing = str(tmp_path / "no-such-ceph.conf")
    _, seconds, err = start_failure(ceph, tmp_path, 30, ceph_conf=missing)
    assert missing in err, err
    assert seconds < 10, seconds


def test_a_ceph_conf_naming_no_live_monitor_fails_instead_of_hanging(
        ceph, tmp_path):
    conf = dead_mon_conf(ceph, tmp_path)
    _, seconds, err = start_failure(
        ceph, tmp_path, 90, extra=("--rados-op-timeout-seconds", "3"),
        ceph_conf=conf)
    assert conf in err and "monitor" in err, err
    # The wait for the monitors is --rados-op-timeout-seconds.
    assert 2.5 < seconds < 15, seconds
    print(f"no monitor: exit after {seconds:.1f} s")


def test_an_empty_ceph_conf_is_refused(ceph, tmp_path):
    _, seconds, err = start_failure(ceph, tmp_path, 30, ceph_conf="")
    assert "--ceph-conf" in err, err
    assert seconds < 10, seconds


@pytest.mark.parametrize("user, osd_caps", [
    ("ckpt-norights", "allow rwx pool=some-other-pool"),
    ("ckpt-readonly", "allow r pool={pool}"),
])
def test_a_cephx_user_without_rights_on_the_pool_is_refused(
        ceph, tmp_path, user, osd_caps):
    keyring = add_user(ceph, tmp_path, user,
                       osd_caps.format(pool=ceph["pool"]))
    _, seconds, err = start_failure(ceph, tmp_path, 60, ceph_user=user,
                                    ceph_keyring=keyring)
    assert f"client.{user} cannot use pool {ceph['pool']}" in err, err
    assert "Operation not permitted" in err, err
    assert seconds < 30, seconds


def test_a_missing_keyring_is_refused_by_name(ceph, tmp_path):
    path = str(tmp_path / "no.keyring")
    _, seconds, err = start_failure(ceph, tmp_path, 60, ceph_keyring=path)
    assert f"no keyring with client.{ceph['user']}'s key at {path}" in err, \
        err
    assert seconds < 10, seconds


def test_a_user_the_cluster_does_not_know_is_refused(ceph, tmp_path):
    # A keyring of its own for a name the cluster never created.
    keyring = tmp_path / "stranger.keyring"
    subprocess.run(["ceph-authtool", "--create-keyring", str(keyring),
                    "--gen-key", "-n", "client.stranger"], check=True,
                   capture_output=True, timeout=30)
    _, seconds, err = start_failure(ceph, tmp_path, 60,
                                    ceph_user="stranger",
                                    ceph_keyring=str(keyring))
    assert "client.stranger" in err and "Permission denied" in err, err
    assert seconds < 30, seconds


def test_a_hold_shorter_than_two_leases_is_refused(ceph, tmp_path):
    _, seconds, err = start_failure(ceph, tmp_path, 30,
                                    rados_lock_lease_seconds="10",
                                    rados_min_hold_seconds="19")
    assert "--rados-min-hold-seconds" in err, err
    assert seconds < 10, seconds


# --- deploy/ceph, as written --------------------------------------------

DEPLOY_CEPH = pathlib.Path(__file__).resolve().parents[2] / "deploy" / "ceph"


def readme_commands():
    """The ```sh block of deploy/ceph/README.md's "The pool and the user"."""
    text = (DEPLOY_CEPH / "README.md").read_text()
    section = text.split("## The pool and the user", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "deploy/ceph/README.md lost its commands"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_the_deploy_example_runs_three_servers_on_one_pool(ceph, tmp_path):
    # The README's commands, on a pool and user of their own (the test
    # cluster's pool is also called ckpt).
    pool, user = "deploy-example", "deploy-example"
    keyring = tmp_path / f"ceph.client.{user}.keyring"
    for line in readme_commands():
        line = (line.replace("pool=ckpt", f"pool={pool}")
                .replace("create ckpt", f"create {pool}")
                .replace("enable ckpt", f"enable {pool}")
                .replace("client.ckpt", f"client.{user}")
                .replace(f"-o ceph.client.{user}.keyring", f"-o {keyring}"))
        argv = shlex.split(line)
        assert argv[0] == "ceph", line
        result = subprocess.run(
            ["ceph", "-c", ceph["conf"], "--id", ceph["user"], "--keyring",
             ceph["keyring"], *argv[1:]], capture_output=True, text=True,
            timeout=120)
        assert result.returncode == 0, (line, result.stderr)
    assert keyring.exists()

    # The example config, with this cluster's conf and the new keyring, on
    # loopback without tokens (the token file and metrics port are the
    # host's business); its pool and user renamed as above.
    config = (DEPLOY_CEPH / "ckpt-server-ceph.yaml").read_text()
    replacements = {
        r"(?m)^chunk_store: rados:ckpt$": f"chunk_store: rados:{pool}",
        r"(?m)^ceph_conf: .*$": f"ceph_conf: {ceph['conf']}",
        r"(?m)^ceph_user: ckpt$": f"ceph_user: {user}",
        r"(?m)^ceph_keyring: .*$": f"ceph_keyring: {keyring}",
        r"(?m)^listen: .*$": "listen: 127.0.0.1:0",
        r"(?m)^auth_tokens: .*$": "",
        r"(?m)^metrics_listen: .*$": "",
    }
    for pattern, replacement in replacements.items():
        config, count = re.subn(pattern, replacement, config)
        assert count == 1, pattern
    path = tmp_path / "ckpt-server-ceph.yaml"
    path.write_text(config)
    trio = []
    for name in ("1", "2", "3"):
        server = CephServer(name, ["--config", str(path)], tmp_path)
        trio.append(server)
    try:
        for server in trio:
            server.start()
        one, two, three = trio
        job = "deploy/example"
        tensors = global_tensors(77)
        managers = [ckpt.CheckpointManager(s.address, job, rank=r,
                                           world_size=2)
                    for r, s in ((0, one), (1, two))]
        try:
            save_both(managers, tensors, 5)
        finally:
            for manager in managers:
                manager.close()
        check_restore(three, job, 5, tensors, worlds=(2, 1))
    finally:
        for server in trio:
            server.stop()
    # The example's objects went to the example's pool, none to the test's.
    listing = subprocess.run(
        ["rados", "-c", ceph["conf"], "--id", ceph["user"], "--keyring",
         ceph["keyring"], "-p", pool, "ls", "--all"],
        capture_output=True, text=True, timeout=60, check=True).stdout
    assert listing.strip(), "nothing stored in the example's pool"
