#!/usr/bin/python3
"""Keeps docs/cli.md, the CLI reference, true to the `ckpt` binary.

  cli_reference.py --ckpt BUILD/client/ckpt
                   [--server-bin BUILD/server/rpc/ckpt-server]
      Check. Fails, with a unified diff, when a help block differs from the
      binary's `--help`; when a verb (or `policy` sub-verb) has no help
      block, or a help block names a verb that no longer exists; and when a
      verb has neither a JSON shape (`<!-- json: VERB -->` then a ```json
      block) nor `<!-- no json: VERB -->`. With --server-bin it also runs
      every verb with --json against two real servers, fails naming the verb
      and key when a key the CLI printed is not in that verb's documented
      shape, and checks that errors with --json are one line of JSON.
  cli_reference.py --write --ckpt BUILD/client/ckpt
      Rewrite every help block from the binary (the prose is left alone),
      append a skeleton section for a verb the doc lacks, then check.

A help block is `<!-- begin help: VERB -->`, a ```text block, `<!-- end
help -->`; VERB is `ckpt` for the global options, else e.g. `rm`, `policy
set`. A JSON shape may name a variant, `<!-- json: ls #jobs -->`, when one
verb prints differently shaped values. Keys are compared as paths
(`shards[].tensors[].dtype`), so a key documented at another level does not
count; the keys inside `metrics` and `tags` are data and compare as `*`.
"""

import argparse
import difflib
import json
import os
import random
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                   os.pardir, os.pardir, "docs", "cli.md")
VERB = r"(?P<verb>[a-z][a-z -]*?)"
HELP_BLOCK = re.compile(rf"(<!-- begin help: {VERB} -->\n```text\n)"
                        r"(?P<body>.*?)(```\n<!-- end help -->)", re.S)
JSON_BLOCK = re.compile(rf"<!-- json: {VERB}(?: #(?P<variant>[a-z-]+))? -->"
                        r"\n```json\n(?P<body>.*?)```", re.S)
NO_JSON = re.compile(rf"<!-- no json: {VERB} -->")
# Objects whose keys are the user's data (metric names, tag keys), not the
# CLI's schema.
DATA_MAPS = {"metrics", "tags"}
SNAKE_CASE = re.compile(r"^[a-z][a-z0-9_]*$")


def clean_env():
    # Without CKPT_*: the runs must reach our servers, not the caller's.
    # CLI11 2.1 never wraps help to the terminal (it reads neither COLUMNS
    # nor the tty's size; a 30-column pty prints the same bytes): each
    # description is one line. COLUMNS is pinned in case a later one does.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CKPT_")}
    env["COLUMNS"] = "80"
    return env


def help_text(ckpt, verb):
    """`ckpt VERB --help`, argv[0] shown as `ckpt`, no trailing blanks."""
    words = [] if verb == "ckpt" else verb.split()
    out = subprocess.run([ckpt, *words, "--help"], env=clean_env(),
                         check=True, capture_output=True, text=True).stdout
    out = out.replace("Usage: " + ckpt, "Usage: ckpt")
    return "".join(line.rstrip() + "\n" for line in out.rstrip().split("\n"))


def all_verbs(ckpt):
    """{verb: help text} for `ckpt` and every verb and sub-verb, and the
    leaf verbs (those that run; `policy` only groups `set` and `get`)."""
    helps, leaves, queue = {}, set(), ["ckpt"]
    while queue:
        verb = queue.pop(0)
        helps[verb] = help_text(ckpt, verb)
        listed = helps[verb].partition("\nSubcommands:\n")[2]
        # "  NAME   description"; a long name's description would follow
        # on a line of its own, indented further.
        subs = re.findall(r"^  (\S+)", listed.split("\n\n")[0], re.M)
        queue += [sub if verb == "ckpt" else f"{verb} {sub}" for sub in subs]
        if not subs:
            leaves.add(verb)
    return helps, leaves


def check_help(text, helps, write):
    """Compares (with `write`: rewrites) the help blocks; returns the doc's
    new text and the problems."""
    problems, seen = [], set()

    def replace(match):
        verb, body = match.group("verb"), match.group("body")
        seen.add(verb)
        if verb not in helps:
            problems.append(f"docs/cli.md has a help block for '{verb}', "
                            "which `ckpt --help` no longer lists: remove "
                            "its section")
        elif body != helps[verb] and write:
            return match.group(1) + helps[verb] + match.group(4)
        elif body != helps[verb]:
            diff = difflib.unified_diff(
                body.splitlines(True), helps[verb].splitlines(True),
                f"docs/cli.md (help: {verb})",
                "ckpt --help" if verb == "ckpt" else f"ckpt {verb} --help")
            problems.append(f"the help block of '{verb}' differs from the "
                            "binary (rerun with --write):\n" + "".join(diff))
        return match.group(0)

    text = HELP_BLOCK.sub(replace, text)
    for verb in sorted(set(helps) - seen):
        if write:
            text += (f"\n### {verb}\n\n<!-- begin help: {verb} -->\n"
                     f"```text\n{helps[verb]}```\n<!-- end help -->\n\n"
                     f"TODO: what `{verb}` prints with --json.\n")
        else:
            problems.append(f"'{verb}' has no section in docs/cli.md (no "
                            f"<!-- begin help: {verb} -->; --write adds one)")
    return text, problems


def key_paths(value, prefix="", in_map=False):
    """Every key of a JSON value as a path: "a.b", "[].c", "tags.*"."""
    paths = set()
    if isinstance(value, dict):
        for key, item in value.items():
            path = (prefix + "." if prefix else "") + ("*" if in_map else key)
            paths.add(path)
            paths |= key_paths(item, path, key in DATA_MAPS and not in_map)
    elif isinstance(value, list):
        for item in value:
            paths |= key_paths(item, prefix + "[]")
    return paths


def label(verb, variant):
    return verb + (f" #{variant}" if variant else "")


def check_sections(text, helps, leaves):
    """{(verb, variant): key paths} of the doc's JSON shapes (variant "" when
    none), and the problems: a leaf verb with neither a shape nor a no-json
    marker, a shape that is not JSON or names no verb."""
    shapes, problems = {}, []
    for match in JSON_BLOCK.finditer(text):
        key = (match.group("verb"), match.group("variant") or "")
        try:
            paths = key_paths(json.loads(match.group("body")))
        except json.JSONDecodeError as error:
            problems.append(f"the JSON shape of '{label(*key)}' is not JSON: "
                            f"{error}")
            continue
        shapes.setdefault(key, set()).update(paths)
    documented = {verb for verb, _ in shapes} | set(NO_JSON.findall(text))
    for verb in sorted(leaves - documented):
        problems.append(f"the section of '{verb}' has no JSON shape: add "
                        f"<!-- json: {verb} --> and a ```json example, or "
                        f"<!-- no json: {verb} --> if it prints no JSON")
    for verb in sorted(documented - set(helps)):
        problems.append(f"docs/cli.md documents the JSON of '{verb}', which "
                        "`ckpt --help` no longer lists")
    return shapes, problems


class Server:
    """A ckpt-server on a free loopback port, started as
    tests/integration/cli_lib.sh starts one; stopped by its PID."""

    def __init__(self, binary, work, name):
        out_path, err_path = (os.path.join(work, name + ext)
                              for ext in (".out", ".err"))
        with open(out_path, "w") as out, open(err_path, "w") as err:
            self.proc = subprocess.Popen(
                [binary, "--data-dir", os.path.join(work, name + "-db"),
                 "--listen", "127.0.0.1:0"],
                stdout=out, stderr=err, env=clean_env())
        deadline = time.monotonic() + 30
        # Polled in a file: a pipe nobody drains after this line could fill
        # and stall the server. The line appears once it serves.
        while not (found := re.search(r"listening on (\S+)",
                                      open(out_path).read())):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("ckpt-server did not start: "
                                   + open(err_path).read()[-2000:])
            time.sleep(0.05)
        self.address = found.group(1)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM, as in production
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def write_inputs(d):
    """Tensors: emb (16 rows of 64 bytes), head (4 rows), extra (2), a
    second emb with one row changed (for a row delta), 64 float32s."""
    rng = random.Random(17)
    emb = bytearray(rng.randbytes(16 * 64))
    os.makedirs(f"{d}/v1")
    os.makedirs(f"{d}/v2")
    files = {"v1/emb": bytes(emb), "v1/head": rng.randbytes(4 * 64),
             "v1/extra": rng.randbytes(2 * 64)}
    emb[3 * 64:4 * 64] = rng.randbytes(64)
    files["v2/emb"] = bytes(emb)
    files["w.f32"] = struct.pack("<64f", *(rng.uniform(-1, 1)
                                            for _ in range(64)))
    for name, data in files.items():
        with open(f"{d}/{name}", "wb") as out:
            out.write(data)


def scenario(d, a, b):
    """(verb, variant, argv) of the runs, in order, on server `a` unless
    argv names one: a job acme/train of 2 ranks (a full step 1; a row-delta
    step 2; metrics, tags, writer times; a pending step 3 whose chunk gc
    holds, an aborted step 4), a quantized acme/quant, every verb with
    --json output on them, a copy to `b`, and the deletions last."""
    t, x = "acme/train", ["--world-size", "2", "--row-bytes", "64"]
    r0, r1 = ["--rank", "0", *x], ["--rank", "1", *x]
    m1 = ["--metric", "val_loss=0.5", "--tag", "phase=warmup",
          "--time", "2026-01-01T00:00:00Z"]
    m2 = ["--metric", "val_loss=0.4", "--tag", "phase=main",
          "--time", "2026-01-02T00:00:00Z", "--delta-against", "1"]
    return [
        ("put", "", ["put", t, "1", f"{d}/v1/emb", *r0, *m1]),
        ("put", "", ["put", t, "1", f"{d}/v1/head", *r1, *m1]),
        ("put", "", ["put", t, "2", f"{d}/v2/emb", *r0, *m2]),
        ("put", "", ["put", t, "2", f"{d}/v1/head", *r1, *m2,
                     "--dirty-rows", "head="]),
        ("put", "", ["put", "acme/quant", "1", f"{d}/w.f32",
                     "--quantize-bits", "8"]),
        ("put", "", ["put", t, "3", f"{d}/v1/extra", *r0]),
        ("put", "", ["put", t, "4", f"{d}/v1/emb", *r0]),
        ("abort", "", ["abort", t, "4", "--reason", "a test"]),
        ("policy set", "job", [
            "policy", "set", t, "--keep-last", "5", "--keep-every", "6h",
            "--keep-within", "1d", "--keep-daily", "7", "--keep-tag",
            "release", "--keep-best", "1", "--metric", "val_loss"]),
        ("policy get", "job", ["policy", "get", t]),
        ("policy set", "tenant", ["policy", "set", "acme/", "--default",
                                  "--keep-last", "3"]),
        ("policy get", "tenant", ["policy", "get", "acme/"]),
        ("ls", "jobs", ["ls"]),
        ("ls", "checkpoints", ["ls", t, "--all"]),
        ("show", "", ["show", t, "2"]),
        ("show", "", ["show", "acme/quant", "latest"]),
        ("stats", "server", ["stats"]),
        ("stats", "job", ["stats", t]),
        ("tag", "", ["tag", t, "2", "release", "best=yes"]),
        ("untag", "", ["untag", t, "2", "best"]),
        ("unpin", "", ["unpin", t, "1"]),
        ("pin", "", ["pin", t, "1"]),
        ("prune", "", ["prune", t, "--dry-run"]),
        ("prune", "", ["prune", t, "--dry-run", "--keep-last", "1",
                       "--keep-best", "1", "--metric", "accuracy"]),
        ("gc", "", ["gc", "--dry-run", "--hold-seconds", "0"]),
        ("verify", "", ["verify"]),
        ("verify", "", ["verify", t, "latest", "--read-data-subset", "1/2"]),
        ("events", "", ["events", t]),
        ("diff", "", ["diff", t, "1", "2", "--all"]),
        ("get", "", ["get", t, "2", f"{d}/get1"]),
        ("get", "", ["get", t, "best", f"{d}/get2", "--metric", "val_loss",
                     "--full"]),
        ("export", "", ["export", t, "2", f"{d}/export"]),
        ("import", "", ["import", f"{d}/export", "acme/imported", "1"]),
        ("copy", "", ["copy", t, "--from", a, "--to", b, "--dry-run"]),
        ("copy", "", ["copy", t, "--from", a, "--to", b]),
        ("ls", "checkpoints", ["ls", t, "--server", b]),  # copied_from
        (None, None, None),  # the errors, while step 1 is pinned
        ("policy set", "clear-job", ["policy", "set", t, "--clear"]),
        ("policy set", "clear-tenant", ["policy", "set", "acme/",
                                        "--default", "--clear"]),
        ("rm", "", ["rm", "acme/quant", "latest"]),
        ("rm-job", "", ["rm-job", "acme/imported", "--yes"]),
        ("rm-job", "", ["rm-job", t, "--yes", "--force"]),
    ]


def closed_port():
    """A loopback address nothing listens on (a port just released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


# (argv, exit code, "code") of failures, as docs/cli.md's exit codes say.
ERRORS = [
    (["show", "acme/train", "99"], 1, "NOT_FOUND"),
    (["rm", "acme/train", "1"], 1, "FAILED_PRECONDITION"),  # pinned
    (["no-such-verb"], 1, "INVALID_ARGUMENT"),
    (["rm", "acme/train"], 106, "INVALID_ARGUMENT"),  # STEP is required
    (["ls", "--nope"], 109, "INVALID_ARGUMENT"),  # an unexpected argument
    (["ls", "--server", None], 1, "UNAVAILABLE"),  # closed_port(); a hint
]


def parse_json(text):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def run_json(ckpt, argv, server):
    if "--server" not in argv and argv[0] != "copy":
        argv = [*argv, "--server", server]
    return subprocess.run([ckpt, *argv, "--json"], env=clean_env(),
                          capture_output=True, text=True, timeout=120)


def check_runs(ckpt, server_bin, shapes):
    """Runs scenario() and ERRORS on two fresh servers; returns problems."""
    problems, checked, servers = [], set(), []
    work = tempfile.mkdtemp(prefix="ckpt-cli-reference-")
    try:
        for name in ("a", "b"):
            servers.append(Server(server_bin, work, name))
        a, b = (server.address for server in servers)
        write_inputs(work)
        for verb, variant, argv in scenario(work, a, b):
            if verb is None:
                problems += check_errors(ckpt, a, shapes.get(("ckpt", "error"),
                                                             set()))
                continue
            done = run_json(ckpt, argv, a)
            name = f"`ckpt {' '.join(argv)} --json`".replace(work, "TMP")
            printed = parse_json(done.stdout) if done.returncode == 0 else None
            if printed is None:
                problems.append(f"{name} did not print JSON (exit "
                                f"{done.returncode}): {done.stderr}")
                continue
            printed = key_paths(printed)
            checked.add((verb, variant))
            where = label(verb, variant)
            if (verb, variant) not in shapes:
                problems.append(f"{name}: docs/cli.md has no JSON shape "
                                f"<!-- json: {where} -->")
                continue
            for path in sorted(printed - shapes[verb, variant]):
                problems.append(f"{where}: key '{path}' (printed by {name}) "
                                "is missing from its JSON shape in "
                                "docs/cli.md")
            for path in sorted(printed):
                key = path.rsplit(".", 1)[-1]
                if key != "*" and not SNAKE_CASE.match(key):
                    problems.append(f"{where}: key '{path}' is not "
                                    "snake_case")
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    for verb, variant in sorted(set(shapes) - checked - {("ckpt", "error")}):
        problems.append(f"the JSON shape of '{label(verb, variant)}' is "
                        "never checked: add a run of it to scenario()")
    return problems


def check_errors(ckpt, server, allowed):
    """Errors with --json: the documented exit code, nothing on stdout, one
    line of JSON on stderr with "code" and "message" and only the keys of
    the doc's `ckpt #error` shape."""
    problems = []
    for argv, exit_code, code in ERRORS:
        argv = [word or closed_port() for word in argv]
        done = run_json(ckpt, argv, server)
        name = f"`ckpt {' '.join(argv)} --json`"
        lines = done.stderr.splitlines()
        error = parse_json(lines[0]) if len(lines) == 1 else None
        if (done.returncode != exit_code or done.stdout
                or not isinstance(error, dict) or error.get("code") != code
                or not isinstance(error.get("message"), str)):
            problems.append(f"{name}: expected exit {exit_code}, no stdout "
                            f"and one line of JSON with code {code}; got "
                            f"{done.returncode}, {done.stdout!r}, "
                            f"{done.stderr!r}")
            continue
        for path in sorted(key_paths(error) - allowed):
            problems.append(f"errors: key '{path}' (printed by {name}) is "
                            "missing from <!-- json: ckpt #error --> in "
                            "docs/cli.md")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", required=True, help="the ckpt binary")
    parser.add_argument("--server-bin",
                        help="ckpt-server: also check the JSON shapes")
    parser.add_argument("--write", action="store_true",
                        help="rewrite the help blocks of the doc")
    parser.add_argument("--doc", default=DOC, help="default: docs/cli.md")
    args = parser.parse_args()
    started = time.monotonic()
    ckpt = os.path.abspath(args.ckpt)
    helps, leaves = all_verbs(ckpt)
    with open(args.doc) as doc:
        text = doc.read()
    new_text, problems = check_help(text, helps, args.write)
    if new_text != text:
        with open(args.doc, "w") as doc:
            doc.write(new_text)
        print(f"rewrote {os.path.normpath(args.doc)}")
    shapes, more = check_sections(new_text, helps, leaves)
    problems += more
    if args.server_bin:
        problems += check_runs(ckpt, os.path.abspath(args.server_bin), shapes)
    for problem in problems:
        print("FAIL: " + problem, file=sys.stderr)
    print(f"{len(helps)} help texts, {len(shapes)} JSON shapes"
          f"{', checked against runs' if args.server_bin else ''}: "
          f"{'FAILED' if problems else 'ok'} in "
          f"{time.monotonic() - started:.1f} s")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
