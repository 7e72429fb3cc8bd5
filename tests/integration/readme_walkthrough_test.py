#!/usr/bin/env python3
"""Runs the README's walkthrough (the first ```sh block of "## Using it")
as written, against the build under test.

Only what must differ on a test machine is replaced, and each replacement
must find its text, so that a README edit cannot make this test skip a
part silently:
  - the first line (the cmake build) is not run: the build under test
    stands in for build/release ($PWD/build/release -> CKPT_BUILD_DIR);
  - /tmp/ckpt-walkthrough -> a fresh temporary directory;
  - the ports 7070 and 7071 -> free loopback ports.
The block runs in bash with `set -euo pipefail`, so any line that fails
fails the test; the block's own `cmp ... && echo "restored exactly"`
checks a restore byte for byte. The servers it starts are stopped by
process group (SIGTERM, then SIGKILL) whatever happens; its last line
stops them itself.

Usage: readme_walkthrough_test.py --build BUILD_DIR [--readme README.md]
"""

import argparse
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

BUILD_LINE = "cmake --preset release && cmake --build --preset release"
SCRATCH = "/tmp/ckpt-walkthrough"


def walkthrough(readme: str) -> str:
    section = readme.split("\n## Using it\n", 1)
    if len(section) != 2:
        sys.exit("FAIL: README.md has no '## Using it' section")
    match = re.search(r"^```sh\n(.*?)^```$", section[1], re.S | re.M)
    if match is None:
        sys.exit("FAIL: '## Using it' has no ```sh block")
    return match.group(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def replace(script: str, old: str, new: str) -> str:
    if old not in script:
        sys.exit(f"FAIL: the walkthrough no longer contains {old!r}: "
                 "update this test with it")
    return script.replace(old, new)


def stop_group(pgid: int) -> None:
    """SIGTERM the walkthrough's process group (its servers), then wait up
    to 30 s for it to end before SIGKILL."""
    for sig, wait in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", required=True, type=pathlib.Path)
    parser.add_argument(
        "--readme", type=pathlib.Path,
        default=pathlib.Path(__file__).resolve().parents[2] / "README.md")
    args = parser.parse_args()

    script = walkthrough(args.readme.read_text())
    first, rest = script.split("\n", 1)
    if first != BUILD_LINE:
        sys.exit(f"FAIL: the walkthrough's first line is {first!r}, "
                 f"not the build {BUILD_LINE!r}")
    with tempfile.TemporaryDirectory(prefix="ckpt-readme-") as tmp:
        scratch = os.path.join(tmp, "walkthrough")
        ports = {7070: free_port(), 7071: free_port()}
        rest = replace(rest, "$PWD/build/release",
                       str(args.build.resolve()))
        rest = replace(rest, SCRATCH, scratch)
        for port, free in ports.items():
            rest = replace(rest, f"127.0.0.1:{port}", f"127.0.0.1:{free}")
        runnable = ("set -euo pipefail\nPS4='+ walkthrough: '\nset -x\n"
                    ": the build is the one under test\n" + rest)
        path = os.path.join(tmp, "walkthrough.sh")
        with open(path, "w") as out:
            out.write(runnable)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CKPT_")}
        started = time.monotonic()
        # Output to a file, not a pipe: the servers it starts in the
        # background would hold a pipe open after a failed line ends it.
        log_path = os.path.join(tmp, "walkthrough.log")
        with open(log_path, "w") as log:
            proc = subprocess.Popen(["bash", path], cwd=tmp, env=env,
                                    stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            try:
                proc.wait(timeout=600)
            except subprocess.TimeoutExpired:
                pass
            finally:
                stop_group(proc.pid)
        output = pathlib.Path(log_path).read_text(errors="replace")
        if proc.returncode is None:
            print(output)
            sys.exit("FAIL: the walkthrough did not finish in 600 s")
        elapsed = time.monotonic() - started
        if proc.returncode != 0:
            print(output)
            sys.exit(f"FAIL: the walkthrough exited {proc.returncode} "
                     "(its output is above: the last '+ walkthrough:' line is the "
                     "command that failed)")
        if "restored exactly" not in output:
            print(output)
            sys.exit("FAIL: the walkthrough's restore check did not run")
    print(f"readme_walkthrough_test: ok ({len(rest.splitlines())} lines "
          f"in {elapsed:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
