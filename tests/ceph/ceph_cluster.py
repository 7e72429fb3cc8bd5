#!/usr/bin/python3
"""Throwaway single-host Ceph cluster for tests (issue 18).

One mon and one memstore OSD on 127.0.0.1, everything under a temp directory,
no systemd, no mgr (Pacific needs none for pools or object I/O). Every daemon
is our own Popen child and is stopped by PID. Standard library only.

    with CephCluster() as c:      # c.conf, c.keyring, c.pool, c.user
        subprocess.run(["rados", "-c", c.conf, "-p", c.pool, "ls"])

    /usr/bin/python3 tests/ceph/ceph_cluster.py --smoke   # start, put/get, stop
    /usr/bin/python3 tests/ceph/ceph_cluster.py --hold    # print conf, wait for ^C
    /usr/bin/python3 tests/ceph/ceph_cluster.py --run -- CMD ARGS...
        # start, run CMD with CKPT_CEPH_CONF, CKPT_CEPH_KEYRING, CKPT_CEPH_POOL
        # and CKPT_CEPH_USER set, stop; exit with CMD's status (ctest uses it)
"""
import argparse
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

# Binary -> Debian 12 package that ships it: a missing binary fails with the
# package name, so CI without the packages says what to install.
BINARIES = {"ceph-mon": "ceph-mon", "ceph-osd": "ceph-osd",
            "ceph": "ceph-common", "rados": "ceph-common",
            "ceph-authtool": "ceph-common", "monmaptool": "ceph-base"}


class CephError(RuntimeError):
    pass


def _free_port():
    # Bind port 0 to let the kernel pick; the short window before ceph-mon
    # binds it is an accepted race (ephemeral range, far from 6800-7300).
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent():
    # Runs in the child before exec: if the test process is SIGKILLed (a
    # runner's timeout) the kernel SIGKILLs the daemon too (PR_SET_PDEATHSIG).
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)


def check_binaries():
    missing = [f"{b} (Debian package {p})" for b, p in BINARIES.items()
               if shutil.which(b) is None]
    if missing:
        raise CephError("Ceph binaries missing: " + ", ".join(missing) +
                        "; install with: apt-get install --no-install-recommends"
                        " ceph-mon ceph-osd ceph-common")


class CephCluster:
    def __init__(self, pool="ckpt", pg_num=8, memstore_bytes=4 << 30,
                 start_timeout=60.0, keep_dir=False):
        self.pool, self.pg_num = pool, pg_num
        self.memstore_bytes = memstore_bytes
        self.start_timeout = start_timeout
        self.keep_dir = keep_dir
        self.user = "admin"            # librados id; entity is client.admin
        self.dir = self.conf = self.keyring = self.mon_port = None
        self.procs = {}                # name -> Popen, for stop() by PID
        self.timings = {}

    # --- helpers -----------------------------------------------------------
    def _run(self, *args, timeout=30, input=None):
        """Run a Ceph tool against this cluster; raise with its output."""
        cmd = list(args)
        if cmd[0] in ("ceph", "rados"):
            cmd[1:1] = ["-c", self.conf]
        # subprocess.run kills the child on timeout, so no CLI outlives us.
        try:
            r = subprocess.run(cmd, capture_output=True, timeout=timeout,
                               input=input, cwd=self.dir)
        except subprocess.TimeoutExpired:
            raise CephError(f"{' '.join(cmd)} timed out after {timeout}s")
        if r.returncode != 0:
            raise CephError(f"{' '.join(cmd)} exited {r.returncode}: "
                            f"{r.stderr.decode(errors='replace').strip()}")
        return r.stdout.decode(errors="replace")

    def _spawn(self, name, args):
        log = open(os.path.join(self.dir, f"{name}.stdout"), "wb")
        # New session: a ^C on the test's terminal must not hit the daemons
        # before stop() does, and they stay out of the caller's job control.
        p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, cwd=self.dir,
                             start_new_session=True,
                             preexec_fn=_die_with_parent)
        log.close()
        self.procs[name] = p

    def _check_alive(self):
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise CephError(f"{name} exited {p.returncode}")

    def _write_conf(self, fsid):
        d = self.dir
        # Why each option (docs/developing.md, "A Ceph test cluster"): loopback
        # only, msgr2 only, our port (public addrv under [mon.a] too, or the
        # mon binds 3300), pool size 1 without health noise, memstore OSD,
        # every path in the temp dir, client ops that time out, not hang.
        conf = f"""[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{self.mon_port}
mon initial members = a
public network = 127.0.0.0/8
ms bind ipv6 = false
ms bind msgr1 = false
ms bind msgr2 = true
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool delete = true
mon allow pool size one = true
mon warn on pool no redundancy = false
mon warn on pool no app = false
mon mgr mkfs grace = 86400
mon data avail warn = 1
mon data avail crit = 1
paxos propose interval = 0.1
paxos min wait = 0.01
osd mon shutdown timeout = 1
osd objectstore = memstore
memstore device bytes = {self.memstore_bytes}
run dir = {d}/run
admin socket = {d}/run/$name.asok
log file = {d}/$name.log
mon cluster log file = {d}/cluster.log
pid file = {d}/run/$name.pid
crash dir = {d}/crash
mon data = {d}/mon.$id
osd data = {d}/osd.$id
[client]
keyring = {self.keyring}
client mount timeout = 15
rados mon op timeout = 30
rados osd op timeout = 60
[mon.a]
public addrv = v2:127.0.0.1:{self.mon_port}
"""
        with open(self.conf, "w") as f:
            f.write(conf)

    # --- lifecycle ---------------------------------------------------------
    def start(self):
        check_binaries()
        t0 = time.monotonic()
        self.dir = tempfile.mkdtemp(prefix="ckpt-ceph-")
        os.makedirs(os.path.join(self.dir, "run"))
        self.conf = os.path.join(self.dir, "ceph.conf")
        self.keyring = os.path.join(self.dir, "ceph.client.admin.keyring")
        self.mon_port = _free_port()
        fsid = str(uuid.uuid4())
        try:
            self._write_conf(fsid)
            self._bootstrap_mon(fsid)
            self.timings["mon_spawned"] = time.monotonic() - t0
            self._add_osd()
            self.timings["osd_up"] = time.monotonic() - t0
            # pg_num fixed (autoscaler off): with no mgr nothing would scale.
            self._run("ceph", "osd", "pool", "create", self.pool,
                      str(self.pg_num), str(self.pg_num))
            self._wait_pool_writable()
            self.timings["ready"] = time.monotonic() - t0
        except CephError as e:
            # The temp dir goes with stop(): carry the daemons' last words.
            tails = self._log_tails()
            self.stop()
            raise CephError(f"{e}\n{tails}") from None
        except BaseException:
            self.stop()
            raise
        return self

    def _log_tails(self, n=5):
        out = []
        for name in self.procs:
            for log in (f"{name}.log", f"{name}.stdout"):  # +stderr
                try:
                    with open(os.path.join(self.dir, log), "rb") as f:
                        lines = f.read().decode(errors="replace").splitlines()
                except OSError:
                    continue
                if lines:
                    out += [f"--- {log} (last {n} lines)"] + lines[-n:]
        return "\n".join(out)

    def add_user(self, name, caps_osd=None):
        """Create client.NAME limited to our pool; return its keyring path.

        osd 'x' is needed too: cls_lock runs as an object class method.
        """
        path = os.path.join(self.dir, f"ceph.client.{name}.keyring")
        self._run("ceph", "auth", "get-or-create", f"client.{name}",
                  "mon", "allow r",
                  "osd", caps_osd or f"allow rwx pool={self.pool}", "-o", path)
        return path

    def _bootstrap_mon(self, fsid):
        mon_kr = os.path.join(self.dir, "mon.keyring")
        # mon. key plus client.admin imported, so the admin exists at mkfs.
        self._run("ceph-authtool", "--create-keyring", mon_kr, "--gen-key",
                  "-n", "mon.", "--cap", "mon", "allow *")
        self._run("ceph-authtool", "--create-keyring", self.keyring,
                  "--gen-key", "-n", "client.admin", "--cap", "mon", "allow *",
                  "--cap", "osd", "allow *", "--cap", "mgr", "allow *")
        self._run("ceph-authtool", mon_kr, "--import-keyring", self.keyring)
        monmap = os.path.join(self.dir, "monmap")
        self._run("monmaptool", "--create", "--fsid", fsid, "--addv", "a",
                  f"[v2:127.0.0.1:{self.mon_port}]", monmap)
        self._run("ceph-mon", "-c", self.conf, "--mkfs", "-i", "a",
                  "--monmap", monmap, "--keyring", mon_kr)
        # -f: foreground (our PID is the daemon's), logging to its log file.
        self._spawn("mon.a", ["ceph-mon", "-c", self.conf, "-i", "a", "-f"])

    def _add_osd(self):
        osd_uuid = str(uuid.uuid4())
        key = self._run("ceph-authtool", "--gen-print-key").strip()
        # `osd new` with a cephx secret allocates the id and creates the
        # osd.N entity with the osd profile caps in one mon command. Its
        # first call also waits for the mon to form quorum (client mount).
        secrets = f'{{"cephx_secret": "{key}"}}'.encode()
        osd_id = self._run("ceph", "osd", "new", osd_uuid, "-i", "-",
                           input=secrets, timeout=self.start_timeout).strip()
        name = f"osd.{osd_id}"
        data = os.path.join(self.dir, name)
        os.makedirs(data)
        self._run("ceph-authtool", "--create-keyring",
                  os.path.join(data, "keyring"), "-n", name, "--add-key", key)
        self._run("ceph-osd", "-c", self.conf, "-i", osd_id, "--mkfs",
                  "--osd-uuid", osd_uuid)
        self._spawn(name, ["ceph-osd", "-c", self.conf, "-i", osd_id, "-f"])
        # The OSD puts itself into the CRUSH map on boot (osd crush update on
        # start) under root=default, host=<hostname>.
        deadline = time.monotonic() + self.start_timeout
        while True:
            self._check_alive()
            if '"num_up_osds": 1' in self._run("ceph", "osd", "stat",
                                                "--format=json-pretty"):
                return
            if time.monotonic() > deadline:
                raise CephError(f"{name} not up after {self.start_timeout}s")
            time.sleep(0.2)

    def _wait_pool_writable(self):
        # Without a mgr there are no PG stats to poll; a write that
        # succeeds is the real readiness test (it blocks until the PG peers).
        probe = os.path.join(self.dir, "probe")
        with open(probe, "wb") as f:
            f.write(b"ready")
        self._run("rados", "-p", self.pool, "put", "fixture-probe", probe,
                  timeout=self.start_timeout)
        self._run("rados", "-p", self.pool, "rm", "fixture-probe")

    def stop(self, grace=5.0):
        """SIGTERM each daemon we started, SIGKILL it if still up after grace.

        Newest first: an OSD tells the mon it is going down and waits for
        the answer, so stopping the mon first costs osd_mon_shutdown_timeout.
        """
        t0 = time.monotonic()
        for p in reversed(list(self.procs.values())):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()     # reap: a zombie would still answer kill -0
        self.procs.clear()
        self.timings["stop"] = time.monotonic() - t0
        if self.dir and not self.keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _smoke():
    t0 = time.monotonic()
    with CephCluster() as c:
        data = os.urandom(1 << 20)
        src, dst = os.path.join(c.dir, "in"), os.path.join(c.dir, "out")
        with open(src, "wb") as f:
            f.write(data)
        t1 = time.monotonic()
        c._run("rados", "-p", c.pool, "put", "smoke", src)
        c._run("rados", "-p", c.pool, "get", "smoke", dst)
        with open(dst, "rb") as f:
            same = f.read() == data
        io = time.monotonic() - t1
        pids = [p.pid for p in c.procs.values()]
    leftover = [pid for pid in pids if os.path.exists(f"/proc/{pid}")]
    t = c.timings
    print(f"mon spawned {t['mon_spawned']:.2f}s, osd up {t['osd_up']:.2f}s, "
          f"ready {t['ready']:.2f}s, put+get 1 MiB {io:.2f}s, "
          f"stop {t['stop']:.2f}s, total {time.monotonic() - t0:.2f}s")
    if not same or leftover:
        print(f"FAIL: data equal={same}, daemons left={leftover}")
        return 1
    print("smoke OK")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true",
                    help="start, rados put/get/compare, stop, print timings")
    ap.add_argument("--hold", action="store_true",
                    help="start, print conf/keyring/pool, wait for ^C")
    ap.add_argument("--run", action="store_true",
                    help="--run -- CMD ARGS...: start, run CMD with "
                         "CKPT_CEPH_CONF/KEYRING/POOL/USER in its "
                         "environment, stop; exit with its status")
    argv = sys.argv[1:]
    cmd = []
    if "--" in argv:
        cmd = argv[argv.index("--") + 1:]
        argv = argv[:argv.index("--")]
    a = ap.parse_args(argv)
    if a.run and not cmd:
        ap.error("--run needs a command after --")
    try:
        if a.run:
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            with CephCluster() as c:
                env = dict(os.environ, CKPT_CEPH_CONF=c.conf,
                           CKPT_CEPH_KEYRING=c.keyring, CKPT_CEPH_POOL=c.pool,
                           CKPT_CEPH_USER=c.user)
                try:
                    return subprocess.run(cmd, env=env).returncode
                except KeyboardInterrupt:
                    return 130
        if a.hold:
            # SIGTERM would end Python without running __exit__: route it
            # through KeyboardInterrupt so the daemons are stopped.
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            with CephCluster() as c:
                print(f"conf={c.conf} keyring={c.keyring} pool={c.pool} "
                      f"user={c.user} ready={c.timings['ready']:.2f}s",
                      flush=True)
                try:
                    signal.pause()
                except KeyboardInterrupt:
                    pass
            return 0
        return _smoke()
    except CephError as e:
        print(f"ceph_cluster: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
