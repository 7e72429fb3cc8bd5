"""`python3 -m ckpt export|import`: the Python side of `ckpt export` and
`ckpt import` (docs/portability.md, "From Python"). The C++ CLI runs
`python3 -m ckpt export ... --format torch` for the torch format, so the
arguments below are a contract kept in that document.

    python3 -m ckpt export JOB STEP DIR [--format safetensors|torch]
        [--full | --rank R --world-size M] [--no-weights-only]
        [--allow-pickle] [--max-file-bytes N] [--server ADDR] [--json]
    python3 -m ckpt import DIR JOB STEP [--rank R --world-size M]
        [--metric NAME=VALUE]... [--tag NAME=VALUE]... [--no-objects]
        [--allow-pickle] [--server ADDR] [--json]

STEP is a step number or `latest` (export only). ADDR defaults to
$CKPT_SERVER. TLS and the token come from CKPT_TLS_CA, CKPT_TLS_CERT,
CKPT_TLS_KEY, CKPT_TLS_SERVER_NAME and CKPT_TOKEN (or --tls-* and
--token-file), never a token on the command line. Exit status 0 on
success, 1 on an error (one line on stderr, "ckpt: CODE: message", as the
C++ CLI reports one), 2 on a usage error.
"""

import argparse
import json
import math
import sys

from ckpt import _ckpt


def _step(text, allow_latest):
    if allow_latest and text == "latest":
        return None
    try:
        step = int(text, 10)
    except ValueError:
        step = -1
    if step < 0:
        raise argparse.ArgumentTypeError(
            f"STEP must be a step number{' or latest' if allow_latest else ''}"
            f", not {text!r}")
    return step


def _metric(text):
    name, equals, value = text.partition("=")
    if equals and name:
        try:
            return name, float(value)
        except ValueError:
            pass
    raise argparse.ArgumentTypeError(
        f"--metric takes NAME=NUMBER, not {text!r}")


def _parser():
    parser = argparse.ArgumentParser(
        prog="python3 -m ckpt",
        description="Export a ckpt checkpoint to portable files, or import "
                    "a directory of safetensors files as a checkpoint.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--server", default=None, metavar="ADDR",
                        help="HOST:PORT of the ckpt-server (default: "
                             "$CKPT_SERVER)")
    for flag, variable, what in (
            ("--tls-ca", "CKPT_TLS_CA", "PEM file of the CAs to trust"),
            ("--tls-cert", "CKPT_TLS_CERT", "PEM client certificate"),
            ("--tls-key", "CKPT_TLS_KEY", "PEM key of --tls-cert"),
            ("--tls-server-name", "CKPT_TLS_SERVER_NAME",
             "the name the server certificate must carry")):
        common.add_argument(flag, default=None,
                            help=f"{what} (default: ${variable})")
    common.add_argument("--token-file", default=None,
                        help="a file holding the bearer token (default: "
                             "the token itself in $CKPT_TOKEN)")
    common.add_argument("--json", action="store_true",
                        help="print the report as JSON")
    verbs = parser.add_subparsers(dest="verb", required=True)

    export = verbs.add_parser(
        "export", parents=[common],
        help="write a committed checkpoint as portable files",
        description="Writes checkpoint STEP of JOB into directory DIR: "
                    "safetensors files (and an index when split) or, with "
                    "--format torch, checkpoint.pt (torch.load opens it as "
                    "the state the Python client saved), beside "
                    "ckpt_checkpoint.json. Existing files are never "
                    "overwritten.")
    export.add_argument("job", metavar="JOB", help="tenant/name")
    export.add_argument("step", metavar="STEP",
                        type=lambda text: _step(text, True),
                        help="a step number, or latest")
    export.add_argument("dir", metavar="DIR", help="the output directory "
                        "(made if absent)")
    export.add_argument("--format", choices=("safetensors", "torch"),
                        default="safetensors",
                        help="default: safetensors")
    view = export.add_mutually_exclusive_group()
    view.add_argument("--full", action="store_true",
                      help="the whole checkpoint (the default)")
    view.add_argument("--rank", type=int, default=None,
                      help="export what rank R of --world-size M restores")
    export.add_argument("--world-size", type=int, default=None,
                        help="with --rank")
    export.add_argument("--no-weights-only", dest="weights_only",
                        action="store_false",
                        help="torch: keep values torch.load(weights_only="
                             "True) cannot read (numpy arrays stay numpy); "
                             "the file then needs weights_only=False")
    export.add_argument("--allow-pickle", action="store_true",
                        help="read values the checkpoint holds pickled "
                             "(runs code its writers put there)")
    export.add_argument("--max-file-bytes", type=int, default=None,
                        help="safetensors: split into files of at most this "
                             "many data bytes (default 5 GiB)")

    imported = verbs.add_parser(
        "import", parents=[common],
        help="import a directory of safetensors files as a checkpoint",
        description="Checks every safetensors file of DIR (or a torch "
                    "export's checkpoint.pt), then saves them as one rank's "
                    "shard of checkpoint STEP of JOB; metrics and tags from "
                    "ckpt_checkpoint.json when present.")
    imported.add_argument("dir", metavar="DIR")
    imported.add_argument("job", metavar="JOB", help="tenant/name")
    imported.add_argument("step", metavar="STEP",
                          type=lambda text: _step(text, False))
    imported.add_argument("--rank", type=int, default=None,
                          help="default: ckpt_checkpoint.json's, else 0")
    imported.add_argument("--world-size", type=int, default=None,
                          help="default: ckpt_checkpoint.json's, else 1")
    imported.add_argument("--metric", type=_metric, action="append",
                          default=[], metavar="NAME=VALUE")
    imported.add_argument("--tag", action="append", default=[],
                          metavar="NAME=VALUE")
    imported.add_argument("--no-objects", dest="objects",
                          action="store_false",
                          help="import the tensors alone, not the "
                               "non-tensor state of ckpt_checkpoint.json")
    imported.add_argument("--allow-pickle", action="store_true",
                          help="read a checkpoint.pt that needs torch.load("
                               "weights_only=False) (runs what it names)")
    return parser


def _security(args):
    """The Client's TLS and token arguments (None: the environment's)."""
    security = {"tls_ca": args.tls_ca, "tls_cert": args.tls_cert,
                "tls_key": args.tls_key,
                "tls_server_name": args.tls_server_name}
    if args.token_file is not None:
        # The C++ CLI's reader: a directory or FIFO is an error, no hang.
        security["token"] = _ckpt.read_token_file(args.token_file,
                                                  "--token-file")
    return security


def _json_safe(value):
    """`value` with non-finite floats as "NaN", "Infinity", "-Infinity"
    (as the C++ CLI writes metrics), so that --json prints JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if value != value else \
            ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def _run(args):
    from ckpt import portable
    from ckpt.client import Client
    client = Client(args.server, **_security(args))
    if args.verb == "import":
        report = portable.import_dir(
            client, args.dir, args.job, args.step, rank=args.rank,
            world_size=args.world_size, metrics=dict(args.metric),
            tags=args.tag, objects=args.objects,
            allow_pickle=args.allow_pickle)
        state = "committed" if report["saved"]["checkpoint_committed"] \
            else "pending until every rank is imported"
        summary = (f"imported {len(report['files'])} file(s), "
                   f"{report['tensors']} tensor(s) as rank {report['rank']} "
                   f"of {report['world_size']} of checkpoint "
                   f"{report['step']} of {report['job']} ({state})")
    else:
        full = True if args.rank is None and args.world_size is None \
            else None
        report = portable.export(
            client, args.job, args.step, args.dir, format=args.format,
            full=full, rank=args.rank, world_size=args.world_size,
            weights_only=args.weights_only, allow_pickle=args.allow_pickle,
            max_file_bytes=args.max_file_bytes)
        summary = (f"exported checkpoint {report['step']} of "
                   f"{report['job']} to {args.dir}: "
                   f"{', '.join(report['files'])} ({report['tensors']} "
                   f"tensors, {report['tensor_bytes']} bytes)")
    print(json.dumps(_json_safe(report), indent=2, allow_nan=False)
          if args.json else summary)


def main(argv=None):
    args = _parser().parse_args(argv)
    if (args.rank is None) != (args.world_size is None):
        _parser().error(f"{args.verb}: --rank and --world-size go together")
    if args.verb == "export" and args.full and args.world_size is not None:
        _parser().error("export: --full exports the whole checkpoint; "
                        "--world-size goes with --rank")
    try:
        _run(args)
    except KeyboardInterrupt:
        print("ckpt: CANCELLED: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # one line, as the C++ CLI reports
        message = getattr(error, "message", None)
        if not isinstance(message, str):
            message = error.args[0] if isinstance(error, KeyError) and \
                error.args else str(error)
        code = getattr(error, "code", None)
        prefix = f"{code}: " if isinstance(code, str) else ""
        print(f"ckpt: {prefix}{message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
