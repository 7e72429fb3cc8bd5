#!/usr/bin/env python3
"""T19's static check: every gRPC call ckpt makes is bounded in time.

Scans the C++ sources under the given roots (test files aside) for every
grpc::ClientContext, and requires, in the lines that follow its
declaration (up to the call it serves), either a deadline
(`NAME.set_deadline(`) or a StallWatchdog that cancels it (`NAME.TryCancel`),
the latter for streams, whose length depends on the data but which must
keep making progress. A context made any other way (`new`, make_unique, a
copy into a container) cannot be followed and is reported too.

Usage: deadline_check.py ROOT [ROOT ...]; exit 1 naming each unbounded
context, 0 printing how many were checked.
"""
import pathlib
import re
import sys

DECLARATION = re.compile(r"\bgrpc::ClientContext\s+(\w+)\s*;")
OTHER_USE = re.compile(r"make_unique<grpc::ClientContext>|new grpc::ClientContext"
                       r"|<grpc::ClientContext>")
# How far after its declaration a context must be bounded: the calls here
# set it up within a few lines (a member is bounded in its constructor,
# searched in the whole file instead).
WINDOW = 15


def bounded(name, text):
    return (re.search(rf"\b{name}\.set_deadline\(", text) is not None
            or re.search(rf"\b{name}\.TryCancel\(", text) is not None)


def check_file(path):
    problems, checked = [], 0
    lines = path.read_text(errors="replace").splitlines()
    whole = "\n".join(lines)
    for number, line in enumerate(lines, 1):
        if line.lstrip().startswith("//"):
            continue
        if OTHER_USE.search(line):
            problems.append(f"{path}:{number}: a ClientContext made in a way "
                            "this check cannot follow: " + line.strip())
        match = DECLARATION.search(line)
        if not match:
            continue
        checked += 1
        name = match.group(1)
        # A member (trailing underscore) is bounded anywhere in its file.
        scope = whole if name.endswith("_") else "\n".join(
            lines[number:number + WINDOW])
        if not bounded(name, scope):
            problems.append(
                f"{path}:{number}: grpc::ClientContext {name} has no deadline "
                f"(set_deadline) and no watchdog (TryCancel) within "
                f"{WINDOW} lines")
    return problems, checked


def main(roots):
    if not roots:
        print(__doc__, file=sys.stderr)
        return 2
    problems, checked, files = [], 0, 0
    for root in roots:
        root_path = pathlib.Path(root)
        paths = [root_path] if root_path.is_file() else sorted(
            p for p in root_path.rglob("*")
            if p.suffix in (".cc", ".h", ".txt") and p.is_file())
        for path in paths:
            if path.name.endswith("_test.cc") or "testing" in path.parts:
                continue
            files += 1
            found, count = check_file(path)
            problems += found
            checked += count
    for problem in problems:
        print(problem)
    if problems:
        print(f"deadline_check: {len(problems)} unbounded gRPC call(s)")
        return 1
    if checked == 0:
        print("deadline_check: no grpc::ClientContext found: wrong roots?")
        return 1
    print(f"deadline_check: {checked} client contexts in {files} files, "
          "each with a deadline or a progress watchdog")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
