"""``python -m training_pipeline.deploy``: package runs, register packages, move the champion/challenger
aliases, roll back, and check the audit log.

Exit codes: 0 done, 1 ``audit verify`` found the log broken, 2 bad input (one ``error: ...`` line).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training_pipeline.deploy import audit, registry
from training_pipeline.utils.run import one_line, user_errors

USAGE_EXAMPLES = """\
examples:
  python -m training_pipeline.deploy package outputs/pipeline/<run> --register --promote challenger
  python -m training_pipeline.deploy list
  python -m training_pipeline.deploy promote 3 --alias champion --reason "beats v2 on the holdout"
  python -m training_pipeline.deploy rollback --reason "false positives on mainnet"
  python -m training_pipeline.deploy audit verify
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training_pipeline.deploy",
        description="Model packages, the model registry (champion/challenger) and the audit log.",
        epilog=USAGE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    p = sub.add_parser("package", help="package a training run dir or a train-all run dir")
    p.add_argument(
        "run_dir",
        type=Path,
        nargs="?",
        default=None,
        help="default: the newest completed train-all run under outputs/pipeline",
    )
    p.add_argument("--out", type=Path, default=None, help="where packages go (default outputs/packages)")
    p.add_argument("--no-archive", action="store_true", help="skip the .tar.gz next to each package")
    p.add_argument("--register", action="store_true", help="register every package")
    p.add_argument(
        "--promote",
        choices=registry.ALIASES,
        help="also point this alias at the pipeline package (or the single model); implies --register",
    )
    _common(p, reason=True)

    p = sub.add_parser("register", help="register a package directory or .tar.gz")
    p.add_argument("package", type=Path)
    _common(p, reason=True)

    p = sub.add_parser("list", help="registered versions and their aliases")
    p.add_argument("name", nargs="?", default=None)
    _common(p)

    p = sub.add_parser("show", help="one registered version (default: the champion, else the latest)")
    p.add_argument("name")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--version", type=int)
    which.add_argument("--alias")
    _common(p)

    p = sub.add_parser("promote", help="point champion or challenger at a version")
    p.add_argument("version", type=int)
    p.add_argument("--alias", choices=registry.ALIASES, required=True)
    p.add_argument("--model", default=registry.DEFAULT_MODEL)
    _common(p, reason=True)

    p = sub.add_parser("rollback", help="point champion back at the previous champion")
    p.add_argument("--model", default=registry.DEFAULT_MODEL)
    _common(p, reason=True)

    p = sub.add_parser("resolve", help="the verified local package of a reference (models:/name@alias ...)")
    p.add_argument("ref")
    _common(p)

    p = sub.add_parser("audit", help="the audit log")
    audit_sub = p.add_subparsers(dest="audit_command", required=True, metavar="audit_command")
    v = audit_sub.add_parser("verify", help="check the hash chain (exit 1 when broken)")
    v.add_argument(
        "--log", type=Path, default=None, help=f"default ${audit.ENV_LOG} or outputs/deploy/audit.jsonl"
    )
    s = audit_sub.add_parser("show", help="the last entries")
    s.add_argument("-n", type=int, default=20, help="how many (default 20; 0 for all)")
    s.add_argument("--log", type=Path, default=None)
    s.add_argument("--json", action="store_true")
    return parser


def _common(p: argparse.ArgumentParser, reason: bool = False) -> None:
    p.add_argument("--json", action="store_true", help="print JSON")
    if reason:
        p.add_argument("--reason", default=None, help="why (kept in the audit log)")


# -- output --------------------------------------------------------------------------------------------------
def _table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    cells = [[str(c) for c in header], *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def _metrics_text(metrics: dict[str, float], limit: int = 3) -> str:
    return " ".join(f"{k}={v:.3f}" for k, v in list(metrics.items())[:limit])


def _versions_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no registered versions"
    return _table(
        [
            (
                r["name"],
                r["version"],
                ",".join(r["aliases"]),
                (r["package_id"] or "")[:12],
                r["registered_at"],
                _metrics_text(r["metrics"]),
            )
            for r in rows
        ],
        ("model", "version", "aliases", "package", "registered", "metrics"),
    )


def _emit(args: argparse.Namespace, value: Any, text: str) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=str) if args.json else text)


def _version_line(info: dict[str, Any]) -> str:
    aliases = f" [{', '.join(info['aliases'])}]" if info.get("aliases") else ""
    return f"{info['name']} version {info['version']}{aliases} package {(info.get('package_id') or '')[:12]}"


# -- commands ------------------------------------------------------------------------------------------------
def cmd_package(args: argparse.Namespace) -> int:
    from training_pipeline.deploy.package import package_run
    from training_pipeline.pipeline.run_dirs import latest_pipeline_dir

    run_dir = args.run_dir or latest_pipeline_dir()
    packages = package_run(run_dir, args.out, archive=not args.no_archive)
    rows = []
    for pkg in packages:
        audit.append(
            "package",
            model=pkg.name,
            package_id=pkg.id,
            reason=args.reason,
            path=str(pkg.path),
            source_run=pkg.meta.get("source_run"),
        )
        row: dict[str, Any] = {"name": pkg.name, "package_id": pkg.id, "path": str(pkg.path)}
        if args.register or args.promote:
            row["version"], row["created"] = registry.register_package(pkg, reason=args.reason)
        rows.append(row)
    if args.promote:
        target = next((r for r in rows if r["name"] == registry.DEFAULT_MODEL), rows[-1])
        registry.promote(target["name"], target["version"], args.promote, args.reason)
        target["alias"] = args.promote
    text = _table(
        [
            (
                r["name"],
                r["package_id"][:12],
                r.get("version", ""),
                r.get("alias", ""),
                r["path"],
            )
            for r in rows
        ],
        ("package", "id", "version", "alias", "path"),
    )
    _emit(args, rows, text)
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    from training_pipeline.deploy.package import open_package

    pkg = open_package(args.package)
    version, created = registry.register_package(pkg, reason=args.reason)
    info = {"name": pkg.name, "version": version, "package_id": pkg.id, "created": created}
    what = "registered" if created else "already registered as"
    _emit(args, info, f"{pkg.name}: {what} version {version} (package {pkg.id[:12]})")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    rows = registry.list_versions(args.name)
    _emit(args, rows, _versions_table(rows))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    info = registry.show(args.name, version=args.version, alias=args.alias)
    lines = [_version_line(info)]
    for key in ("uri", "package_id", "kind", "data_version", "git_commit", "registered_at", "source"):
        lines.append(f"  {key}: {info.get(key)}")
    for key, value in info["metrics"].items():
        lines.append(f"  {key}: {value:.4f}")
    aliases = ", ".join(f"{a} → {v}" for a, v in sorted(info["model_aliases"].items())) or "none"
    lines.append(f"  model aliases: {aliases}")
    lines.append(f"  champion history: {info['champion_history'] or 'empty'}")
    _emit(args, info, "\n".join(lines))
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    info = registry.promote(args.model, args.version, args.alias, args.reason)
    _emit(args, info, f"{args.alias} → {_version_line(info)}")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    info = registry.rollback(args.model, args.reason)
    _emit(args, info, f"rolled back: champion → {_version_line(info)}")
    return 0


def cmd_resolve(args: argparse.Namespace) -> int:
    path, info = registry.resolve(args.ref)
    _emit(args, info, str(path))
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    if args.log is not None and not args.log.is_file():
        raise FileNotFoundError(f"{args.log}: no such audit log")
    if args.audit_command == "verify":
        ok, message = audit.verify(args.log)
        print(message, file=sys.stdout if ok else sys.stderr)
        return 0 if ok else 1
    entries = audit.read(args.log, last=args.n or None)
    rows = [
        (
            e.get("time"),
            e.get("user"),
            e.get("action"),
            e.get("model"),
            e.get("version"),
            (e.get("package_id") or "")[:12],
            e.get("reason"),
        )
        for e in entries
    ]
    text = (
        _table(rows, ("time", "user", "action", "model", "version", "package", "reason"))
        if rows
        else "no entries"
    )
    _emit(args, entries, text)
    return 0


COMMANDS = {
    "package": cmd_package,
    "register": cmd_register,
    "list": cmd_list,
    "show": cmd_show,
    "promote": cmd_promote,
    "rollback": cmd_rollback,
    "resolve": cmd_resolve,
    "audit": cmd_audit,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except user_errors() as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr, flush=True)
        return 2
