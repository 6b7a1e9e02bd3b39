"""``modelserve registry ...``: the command line of the model registry.

Every command takes ``--root DIR`` (default ``$MODELSERVE_HOME``, else the user cache dir).
Exit status: 0 success, 1 a registry error or a file system error (one line on stderr), 2 bad usage.

    modelserve registry ls [NAME]                  models, or the versions and aliases of NAME
    modelserve registry show REF [--json]          one version: digest, files, metadata
    modelserve registry add NAME PATH [--version V] [--alias A] [--meta KEY=VALUE ...]
    modelserve registry alias NAME ALIAS VERSION   point NAME@ALIAS at VERSION
    modelserve registry rollback NAME ALIAS        point it back at its previous target
    modelserve registry lock REF... [-o FILE]      write a lock file (default modelserve.lock)
    modelserve registry verify [REF]               hash everything; exit 1 on any problem
    modelserve registry gc [--dry-run]             remove leftovers and unreferenced files
    modelserve registry export REF FILE            write a .tar (or .tar.gz) archive
    modelserve registry import FILE [--alias A]    import an archive
"""

# The docstring above is the command's --help text. Each subcommand is one function of
# (parsed arguments, output stream) returning the exit status, found in COMMANDS; errors it
# raises are printed by modelserve.cli.dispatch.

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable, TextIO

from .._registry import ModelVersion, Registry

__all__ = ["add_parser", "run", "COMMANDS"]


def _size(text: str) -> int:
    """``"1048576"``, ``"512M"``, ``"16G"`` -> bytes (binary units); argparse reports a bad value."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = units.get(t[-1:], 1)
    digits = t[:-1] if t[-1:] in units else t
    if not digits.isdigit() or int(digits) * scale <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive size like 1048576, 512M or 16G, got {text!r}")
    return int(digits) * scale


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``registry`` command and its subcommands to an argparse subparsers object."""
    p = sub.add_parser("registry", help="manage the local model registry", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", help="registry directory (default: $MODELSERVE_HOME or the user cache dir)")
    cmds = p.add_subparsers(dest="registry_command", metavar="COMMAND")
    cmds.required = True
    ls = cmds.add_parser("ls", help="list models, or one model's versions and aliases")
    ls.add_argument("name", nargs="?")
    ls.add_argument("--json", action="store_true")
    show = cmds.add_parser("show", help="show one version")
    show.add_argument("ref")
    show.add_argument("--json", action="store_true")
    add = cmds.add_parser("add", help="register a model file or directory")
    add.add_argument("name")
    add.add_argument("path")
    add.add_argument("--version")
    add.add_argument("--alias")
    add.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE")
    al = cmds.add_parser("alias", help="point NAME@ALIAS at VERSION")
    al.add_argument("name")
    al.add_argument("alias")
    al.add_argument("version")
    rb = cmds.add_parser("rollback", help="point NAME@ALIAS back at its previous target")
    rb.add_argument("name")
    rb.add_argument("alias")
    lk = cmds.add_parser("lock", help="write a lock file pinning references")
    lk.add_argument("refs", nargs="+")
    lk.add_argument("-o", "--output", default="modelserve.lock")
    vf = cmds.add_parser("verify", help="check every stored byte against its digest")
    vf.add_argument("ref", nargs="?")
    g = cmds.add_parser("gc", help="remove leftovers and unreferenced files")
    g.add_argument("--dry-run", action="store_true")
    ex = cmds.add_parser("export", help="write one version to an archive")
    ex.add_argument("ref")
    ex.add_argument("file")
    im = cmds.add_parser("import", help="import an archive")
    im.add_argument("file")
    im.add_argument("--alias")
    im.add_argument("--max-bytes", type=_size, default=None, metavar="SIZE",
                    help="refuse archives whose files total more (bytes, or with a K/M/G suffix; default 16G)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run a parsed ``registry`` command (``args.registry_command``); returns the exit status."""
    return COMMANDS[args.registry_command](args, out or sys.stdout)


def _version_json(mv: ModelVersion) -> dict[str, Any]:
    return {
        "name": mv.name, "version": mv.version, "digest": mv.digest, "path": str(mv.path), "kind": mv.kind,
        "files": [{"path": f.path, "digest": f.digest, "size": f.size} for f in mv.files],
        "metadata": dict(mv.metadata), "model_info": mv.model_info,
    }


def _ls(args: argparse.Namespace, out: TextIO) -> int:
    reg = Registry(args.root, read_only=True)
    if args.name is None:
        models = reg.list_models()
        if args.json:
            print(json.dumps(models), file=out)
            return 0
        for name in models:
            vs = reg.list_versions(name)
            al = " ".join(f"{a}->{v}" for a, v in reg.aliases(name).items())
            print(f"{name}\t{len(vs)} version(s)\tlatest {vs[-1].version if vs else '-'}\t{al}".rstrip(), file=out)
        return 0
    vs = reg.list_versions(args.name)
    aliases = reg.aliases(args.name)
    if args.json:
        print(json.dumps({"versions": [_version_json(v) for v in vs], "aliases": aliases}), file=out)
        return 0
    for v in vs:
        tags = " ".join("@" + a for a, t in aliases.items() if t == v.version)
        print(f"{v.name}:{v.version}\t{v.digest[:19]}\t{v.size} bytes\t{tags}".rstrip(), file=out)
    return 0


def _show(args: argparse.Namespace, out: TextIO) -> int:
    mv = Registry(args.root, read_only=True).resolve(args.ref)
    info = _version_json(mv)
    if args.json:
        print(json.dumps(info, indent=2), file=out)
        return 0
    for k in ("name", "version", "digest", "path", "kind"):
        print(f"{k}: {info[k]}", file=out)
    for f in mv.files:
        print(f"file: {f.path} {f.digest} {f.size}", file=out)
    if mv.metadata:
        print(f"metadata: {json.dumps(info['metadata'], sort_keys=True)}", file=out)
    return 0


def _add(args: argparse.Namespace, out: TextIO) -> int:
    reg = Registry(args.root)  # checks --root before the options, as every command does
    meta = {}
    for kv in args.meta:
        k, sep, v = kv.partition("=")
        if not sep or not k:
            print(f"error: --meta expects KEY=VALUE, got {kv!r}", file=sys.stderr)
            return 2
        meta[k] = v
    mv = reg.register(args.name, args.path, version=args.version, alias=args.alias, metadata=meta or None)
    print(f"{mv.name}:{mv.version}\t{mv.digest}", file=out)
    return 0


def _alias(args: argparse.Namespace, out: TextIO) -> int:
    mv = Registry(args.root).set_alias(args.name, args.alias, args.version)
    print(f"{args.name}@{args.alias} -> {mv.version}\t{mv.digest}", file=out)
    return 0


def _rollback(args: argparse.Namespace, out: TextIO) -> int:
    mv = Registry(args.root).rollback(args.name, args.alias)
    print(f"{args.name}@{args.alias} -> {mv.version}\t{mv.digest}", file=out)
    return 0


def _lock(args: argparse.Namespace, out: TextIO) -> int:
    path = Registry(args.root, read_only=True).write_lock(args.refs, args.output)
    print(f"wrote {path}", file=out)
    return 0


def _verify(args: argparse.Namespace, out: TextIO) -> int:
    report = Registry(args.root).verify(args.ref)  # writable: records what it verified
    for p in report.problems:
        print(f"PROBLEM {p}", file=out)
    print(f"{'ok' if report.ok else 'FAILED'}: {report.versions_checked} version(s), "
          f"{report.files_checked} file(s), {report.bytes_hashed} bytes hashed", file=out)
    return 0 if report.ok else 1


def _gc(args: argparse.Namespace, out: TextIO) -> int:
    plan = Registry(args.root, read_only=args.dry_run).gc(dry_run=args.dry_run)
    for path in plan.paths:
        print(f"{'would remove' if args.dry_run else 'removed'} {path}", file=out)
    print(f"{len(plan)} item(s), {plan.bytes} bytes{' (dry run)' if args.dry_run else ''}", file=out)
    return 0


def _export(args: argparse.Namespace, out: TextIO) -> int:
    path = Registry(args.root, read_only=True).export(args.ref, args.file)
    print(f"wrote {path}", file=out)
    return 0


def _import(args: argparse.Namespace, out: TextIO) -> int:
    kwargs = {} if args.max_bytes is None else {"max_bytes": args.max_bytes}
    mv = Registry(args.root).import_archive(args.file, alias=args.alias, **kwargs)
    print(f"{mv.name}:{mv.version}\t{mv.digest}", file=out)
    return 0


#: Subcommand name -> the function that runs it.
COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO], int]] = {
    "ls": _ls, "show": _show, "add": _add, "alias": _alias, "rollback": _rollback, "lock": _lock,
    "verify": _verify, "gc": _gc, "export": _export, "import": _import,
}
