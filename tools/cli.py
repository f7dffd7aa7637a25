"""The ``labrig`` command line: ``devices``, ``bench``, ``reproduce``.

Output contract (DESIGN.md, "Experiments and reports"): with ``--json`` exactly one JSON object
goes to stdout and the human tables go to stderr; without it the tables go to stdout.  Every
run writes ``<out>/<name>.json`` (and its PNGs).  User errors -- an unknown name, a malformed
option, a missing ``--data`` path, or a :class:`~labrig.errors.UsageError`,
:class:`~labrig.errors.ConfigError` or :class:`~labrig.errors.BackendUnavailable` from below --
print one line ``labrig: error: ...`` and exit 2; a failure while running exits 1.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from labrig import __version__
from labrig.errors import BackendUnavailable, ConfigError, UsageError
from labrig.tools.results import ExperimentResult, RunContext, format_table

__all__ = ["compare", "main", "render_result"]

PROG = "labrig"
DEFAULT_OUT = Path("labrig-results")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_USER_ERRORS = (UsageError, ConfigError, BackendUnavailable)
#: "closer" headlines within this relative distance of the published figure are "ok".
CLOSE_ENOUGH = 0.25


class _ArgError(Exception):
    """Raised instead of argparse's print-usage-and-exit, so main() controls the output."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sub = self.prog.removeprefix(PROG).strip()
        raise _ArgError(f"{sub}: {message}" if sub else message)


# -- option parsing ---------------------------------------------------------------------------
def _qd_list(text: str) -> str:
    """``--qd 1,2,4``: validate and return the canonical comma list."""
    out: list[int] = []
    for part in text.split(","):
        item = part.strip()
        if not item.isdigit() or not 1 <= int(item) <= 65535:
            raise argparse.ArgumentTypeError(
                f"{text!r}: {item!r} is not a queue depth in 1..65535 "
                "(expected a comma list such as 1,2,4,32)")
        if int(item) not in out:
            out.append(int(item))
    return ",".join(map(str, out))


def _seed(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: must be a non-negative integer")
    return int(text)


def _key_value(text: str, what: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise UsageError(f"{what} {text!r}: expected KEY=VALUE")
    return key.strip(), value.strip()


def _device_roles(items: Sequence[str]) -> dict[str, str]:
    """``--device ssd=emu:nvme`` entries -> {role: device string}, each string checked."""
    from labrig.drivers.block import parse_device_string

    roles: dict[str, str] = {}
    for item in items:
        role, text = _key_value(item, "--device")
        if not re.fullmatch(r"[A-Za-z][\w-]*", role):
            raise UsageError(f"--device {item!r}: role {role!r} must be a name such as ssd")
        parse_device_string(text)
        roles[role] = text
    return roles


def _options(items: Sequence[str]) -> dict[str, str]:
    return dict(_key_value(item, "--set") for item in items)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (subcommands ``devices``, ``bench``, ``reproduce``)."""
    p = _Parser(prog=PROG, description="Emulated AI-and-storage hardware: list devices, "
                "benchmark them, reproduce the papers' headline results.")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    p.add_argument("--traceback", action="store_true",
                   help="show the full traceback when a run fails")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("devices", help="what can be emulated, backends, real devices here")
    d.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    b = sub.add_parser("bench", help="benchmark a device kind (e.g. nvme)")
    b.add_argument("kind", nargs="?", metavar="KIND", help="bench to run (see --list)")
    b.add_argument("target", nargs="?", metavar="DEVICE",
                   help="device string, same as --device (e.g. file:/tmp/x.img?size=1G)")
    b.add_argument("--list", action="store_true", help="list benches and their options")
    b.add_argument("--device", metavar="STR", help="device string (default: the emulator)")
    b.add_argument("--vs-fio", action="store_true",
                   help="blockdev: also run fio on the same file and print our/fio ratios")
    b.add_argument("--qd", type=_qd_list, metavar="LIST", help="queue depths, e.g. 1,4,32")
    _common(b)

    r = sub.add_parser("reproduce", help="run experiments (all when no NAME is given)")
    r.add_argument("names", nargs="*", metavar="NAME", help="experiments to run (see --list)")
    r.add_argument("--list", action="store_true", help="list experiments")
    r.add_argument("--data", type=Path, metavar="PATH", help="data set folder or file")
    r.add_argument("--device", action="append", default=[], metavar="ROLE=STR",
                   help="device for a role, e.g. ssd=emu:nvme (repeatable)")
    _common(r)
    return p


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="the ~1-minute version")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--seed", type=_seed, default=0, metavar="N", help="root seed (default 0)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="DIR",
                   help=f"where JSON and PNG files go (default ./{DEFAULT_OUT})")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="options",
                   help="experiment/bench-specific option (repeatable)")


# -- reporting --------------------------------------------------------------------------------
_NUM = r"(?:\d[\d,_]*(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?"
_TAIL = r"\s*(?P<unit>[^\d\s()]*)\s*(?:\(.*\))?\s*"
_SINGLE = re.compile(rf"\s*(?P<cmp>[<>]=?|[≤≥~≈])?\s*(?P<num>[-+]?{_NUM}){_TAIL}")
_RANGE = re.compile(rf"\s*(?P<lo>{_NUM})\s*(?:-|–|to)\s*(?P<hi>{_NUM}){_TAIL}")


def _number(text: str) -> float:
    return float(text.replace(",", "").replace("_", ""))


def compare(headline: dict[str, Any]) -> tuple[float | None, str]:
    """Ratio measured/paper and a verdict for one headline dict.

    Only a paper figure that is one number (``"92"``, ``"840,000 IOPS"``, ``"2.1x"``,
    ``"> 0.7"``, ``"≤ 0.02"``, optionally followed by a parenthesised comment) or a range (``"2-3x"``) is
    compared; free text gives no ratio and no verdict.  For one number, ``better``
    ``lower``/``higher`` (or a ``<``/``>`` in the figure) give ``meets``/``misses``, and
    ``closer`` gives ``ok`` within :data:`CLOSE_ENOUGH` of it, else ``off``, with the signed
    deviation.  A range gives ``in range``, ``below range`` or ``above range``.
    """
    paper = str(headline.get("paper") or "")
    measured = headline.get("measured")
    if not isinstance(measured, (int, float)) or isinstance(measured, bool):
        return None, ""
    rng = _RANGE.fullmatch(paper)
    if rng is not None:
        lo, hi = sorted((_number(rng["lo"]), _number(rng["hi"])))
        where = "in range" if lo <= measured <= hi else (
            "below range" if measured < lo else "above range")
        return None, where
    one = _SINGLE.fullmatch(paper)
    if one is None:
        return None, ""
    value = _number(one["num"])
    ratio = measured / value if value else None
    cmp = one["cmp"] or ""
    better = headline.get("better", "lower")
    if cmp[:1] in (">", "≥"):
        return ratio, "meets" if measured >= value else "misses"
    if cmp[:1] in ("<", "≤"):
        return ratio, "meets" if measured <= value else "misses"
    if better == "closer" or cmp:
        if ratio is None:
            return None, ""
        dev = ratio - 1.0
        return ratio, f"{'ok' if abs(dev) <= CLOSE_ENOUGH else 'off'} ({dev:+.0%})"
    meets = measured <= value if better == "lower" else measured >= value
    return ratio, "meets" if meets else "misses"


def _headline_rows(name: str | None, headline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for h in headline:
        ratio, verdict = compare(h)
        row = {"experiment": name} if name is not None else {}
        row.update({"metric": h["metric"], "measured": h["measured"], "unit": h["unit"],
                    "paper": h["paper"] or "-", "ratio": "-" if ratio is None else ratio,
                    "verdict": verdict or "-", "better": h["better"]})
        rows.append(row)
    return rows


def render_result(result: ExperimentResult, title: str = "") -> str:
    """Human report: headline comparison, the full rows, notes and plot files."""
    d = result.to_dict()
    lines = [f"== {d['name']}{': ' + title if title else ''} "
             f"({'quick' if d['quick'] else 'full'}, seed {d['seed']}, "
             f"{d['wall_s']:.1f} s) =="]
    if d["headline"]:
        lines += [format_table(_headline_rows(None, d["headline"])), ""]
    lines.append(format_table(d["rows"]))
    lines += [f"- {n}" for n in d["notes"]]
    lines += [f"plot: {p}" for p in d["plots"]]
    return "\n".join(lines)


def _emit(text: str, as_json: bool) -> None:
    stream: TextIO = sys.stderr if as_json else sys.stdout
    print(text, file=stream)


# -- commands ---------------------------------------------------------------------------------
def _cmd_devices(args: argparse.Namespace) -> int:
    from labrig.tools.devices import device_report, format_device_report

    report = device_report()
    if args.json:
        print(json.dumps(report))
    else:
        print(format_device_report(report))
    return EXIT_OK


def _context(args: argparse.Namespace, devices: dict[str, str], data: Path | None,
             options: dict[str, str]) -> RunContext:
    return RunContext(quick=args.quick, seed=args.seed, out_dir=args.out, data=data,
                      devices=devices, progress=sys.stderr.isatty(), options=options)


def _cmd_bench(args: argparse.Namespace) -> int:
    from labrig.tools.bench import get_bench, list_benches

    if args.list:
        rows = [{"kind": b.name, "title": b.title,
                 "options (--set)": ", ".join(f"{k} ({h}; default {v})"
                                              for k, (h, v) in b.options.items()) or "-"}
                for b in list_benches()]
        if args.json:
            print(json.dumps({"benches": rows}))
        else:
            print(format_table(rows))
        return EXIT_OK
    if not args.kind:
        known = ", ".join(b.name for b in list_benches())
        raise UsageError(f"bench: give a KIND (known: {known})")
    try:
        b = get_bench(args.kind)
    except KeyError as exc:
        raise UsageError(exc.args[0]) from None
    options = _options(args.options)
    unknown = sorted(set(options) - set(b.options))
    if unknown and b.options:
        raise UsageError(f"--set {unknown[0]}: not an option of bench {b.name!r} "
                         f"(known: {', '.join(b.options)})")
    if args.qd:
        options["qd"] = args.qd
    if args.vs_fio:
        if "vs_fio" not in b.options:
            raise UsageError(f"--vs-fio: not an option of bench {b.name!r}")
        options["vs_fio"] = "1"
    if args.target and args.device and args.target != args.device:
        raise UsageError(f"two devices given: {args.target!r} and --device {args.device!r}")
    device = args.target or args.device
    devices = {}
    if device:
        from labrig.drivers.block import parse_device_string

        parse_device_string(device)
        devices["device"] = device
    result = b.run(_context(args, devices, None, options))
    path = result.write_json(args.out / f"bench-{b.name}.json")
    _emit(render_result(result, b.title), args.json)
    print(f"labrig: wrote {path}", file=sys.stderr)
    if args.json:
        print(result.to_json())
    return EXIT_OK


def _load_experiments() -> tuple[list[Any], dict[str, str]]:
    """Registered experiments, plus the modules that failed to import (name -> error).

    Each module in ``EXPERIMENT_MODULES`` is imported on its own, so one broken experiment
    does not hide the others.
    """
    from labrig.tools import experiments as registry

    broken: dict[str, str] = {}
    for mod in registry.EXPERIMENT_MODULES:
        try:
            importlib.import_module(mod)
        except Exception as exc:
            broken[mod.rsplit(".", 1)[-1].replace("_", "-")] = f"{type(exc).__name__}: {exc}"
    if not broken:
        return registry.list_experiments(), broken
    # list_experiments() would retry the failed import; order the rest the same way.
    order = {m.rsplit(".", 1)[-1].replace("_", "-"): i
             for i, m in enumerate(registry.EXPERIMENT_MODULES)}
    exps = sorted(registry._REGISTRY.values(), key=lambda e: (order.get(e.name, 99), e.name))
    return exps, broken


def _cmd_reproduce(args: argparse.Namespace) -> int:
    exps, broken = _load_experiments()
    by_name = {e.name: e for e in exps}
    if args.list:
        return _list_experiments(exps, broken, args.json)
    known = ", ".join(sorted([*by_name, *broken]))
    for name in args.names:
        if name not in by_name and name not in broken:
            raise UsageError(f"no experiment {name!r} (known: {known})")
    names = list(dict.fromkeys(args.names)) or [*by_name, *broken]
    selected = [by_name[n] for n in names if n in by_name]
    roles = _device_roles(args.device)
    accepted = {r for e in selected for r in e.roles}
    for role in roles:
        if role not in accepted:
            raise UsageError(f"--device {role}=...: no selected experiment takes role {role!r} "
                             f"(roles: {', '.join(sorted(accepted)) or 'none'})")
    if args.data is not None:
        if not args.data.exists():
            raise UsageError(f"--data {str(args.data)!r}: no such file or folder")
        for e in selected:
            if args.names and not e.takes_data:
                raise UsageError(f"--data: experiment {e.name!r} takes no data set")
    options = _options(args.options)
    single = len(names) == 1 and bool(args.names)
    if single and names[0] in broken:
        print(f"labrig: error: experiment {names[0]!r} failed to load: {broken[names[0]]}",
              file=sys.stderr)
        return EXIT_FAILED
    if single:
        e = selected[0]
        ctx = _context(args, {r: s for r, s in roles.items() if r in e.roles},
                       args.data if e.takes_data else None, options)
        result = e.run(ctx)
        _write(result, args)
        _emit(render_result(result, e.title), args.json)
        if args.json:
            print(result.to_json())
        return EXIT_OK
    return _run_many(names, by_name, broken, roles, options, args)


def _write(result: ExperimentResult, args: argparse.Namespace) -> None:
    path = result.write_json(args.out / f"{result.name}.json")
    print(f"labrig: wrote {path}", file=sys.stderr)


def _run_many(names: list[str], by_name: dict[str, Any], broken: dict[str, str],
              roles: dict[str, str], options: dict[str, str],
              args: argparse.Namespace) -> int:
    """Run several experiments; a failing one is reported and the others still run."""
    out: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    failed = 0
    for name in names:
        if name in broken:
            error = f"failed to load: {broken[name]}"
        else:
            e = by_name[name]
            ctx = _context(args, {r: s for r, s in roles.items() if r in e.roles},
                           args.data if e.takes_data else None, options)
            try:
                result = e.run(ctx)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                if args.traceback:
                    traceback.print_exc()
            else:
                _write(result, args)
                _emit(render_result(result, e.title) + "\n", args.json)
                d = result.to_dict()
                out.append(d)
                summary += _headline_rows(name, d["headline"]) or [
                    {"experiment": name, "metric": "-", "verdict": "no headline"}]
                continue
        failed += 1
        print(f"labrig: error: experiment {name!r} {error}", file=sys.stderr)
        out.append({"name": name, "error": error})
        summary.append({"experiment": name, "metric": "-", "measured": "-", "unit": "",
                        "paper": "-", "ratio": "-", "verdict": f"FAILED: {error}"[:100]})
    cols = ["experiment", "metric", "measured", "unit", "paper", "ratio", "verdict"]
    _emit("Summary\n" + format_table(summary, cols), args.json)
    if args.json:
        print(json.dumps({"experiments": out}, allow_nan=False))
    return EXIT_FAILED if failed else EXIT_OK


def _list_experiments(exps: list[Any], broken: dict[str, str], as_json: bool) -> int:
    rows = [{"name": e.name, "title": e.title, "paper": e.paper,
             "roles": ",".join(e.roles) or "-", "data": "yes" if e.takes_data else "no"}
            for e in exps]
    rows += [{"name": n, "title": f"(failed to load: {err})", "paper": "", "roles": "",
              "data": ""} for n, err in broken.items()]
    if as_json:
        print(json.dumps({"experiments": [
            {"name": e.name, "title": e.title, "paper": e.paper, "roles": list(e.roles),
             "takes_data": e.takes_data} for e in exps],
            "broken": broken}))
    else:
        print(format_table(rows))
    return EXIT_OK


_COMMANDS = {"devices": _cmd_devices, "bench": _cmd_bench, "reproduce": _cmd_reproduce}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``labrig`` command line; returns the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (default ``sys.argv[1:]``).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _ArgError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:          # --help, --version
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return _COMMANDS[args.command](args)
    except _USER_ERRORS as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.traceback:
            traceback.print_exc()
        print(f"{PROG}: error: {args.command} failed: {type(exc).__name__}: {exc}"
              f"{'' if args.traceback else ' (run with --traceback for details)'}",
              file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
