"""The two single-table commands, with the older scripts' flags.

Exit codes: 0 success, 1 bad data, 2 bad usage. Expected errors print one line on
stderr; unexpected ones keep their traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from materializer.allocator import use_jemalloc
from materializer.errors import MaterializeError
from materializer.kinds import KINDS, MOS, SECOND_OPINION, Kind
from materializer.options import named_as_flags
from materializer.provenance import RunContext


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be in [0, 1]")
    return value


def _bounds(text: str) -> list[float]:
    low, sep, high = text.partition(",")
    try:
        if not sep:
            raise ValueError
        return [float(low), float(high)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not LOW,HIGH (two numbers): {text!r}") from None


def _threshold(text: str) -> float | dict[str, float]:
    """``0.5`` for every competitor, ``a=0.5,b=0.3`` or ``{"a": 0.5}`` per competitor (the
    range is checked with the options, so a flag and a manifest read the same message)."""
    try:
        if text.lstrip().startswith("{"):
            value = json.loads(text)
            if not isinstance(value, dict):
                raise ValueError
            return value
        if "=" not in text:
            return float(text)
        pairs = [item.rpartition("=") for item in text.split(",")]
        if any(not name.strip() or not sep for name, sep, _ in pairs):
            raise ValueError
        return {name.strip(): float(limit) for name, _, limit in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not NUMBER, NAME=NUMBER[,NAME=NUMBER...] or a JSON object: {text!r}") from None


SOURCE_EPILOG = (
    "A table may be given as a JSON object instead of a path (a value that starts with '{' "
    "is one): {\"path\": ..., \"read\": {...}, \"align_to\": {...}}, plus \"label\" for "
    "a score file. Its keys (how a file is parsed: MATLAB, Excel, delimited text, arrays; "
    "rows matched by position) are documented in config/README.md, section \"Sources\".")

PARSERS = {"rate": _rate, "bounds": _bounds, "threshold": _threshold}
"""How a flag's text becomes an option value, by option type (the rest stay text)."""
METAVARS = {"bounds": "LOW,HIGH"}


def add_option_flags(parser: argparse.ArgumentParser, options: type[Any]) -> None:
    """One flag per declared option (``--min-match-rate`` for ``min_match_rate``), with its
    default, choices and help from the declaration: nothing here to keep in step."""
    for field in options.declared():
        flag = f"--{field.name.replace('_', '-')}"
        meta = field.metadata
        if meta["type"] == "bool":
            parser.add_argument(flag, action="store_true", help=meta["help"])
        else:
            parser.add_argument(flag, default=field.default, help=meta["help"],
                                type=PARSERS.get(meta["type"], str),
                                metavar=METAVARS.get(meta["type"]),
                                choices=meta["choices"] or None)


def parser(kind: Kind) -> argparse.ArgumentParser:
    """A kind's command: its paths, then one flag per declared option."""
    parser = argparse.ArgumentParser(
        prog=kind.command, description=kind.description, epilog=SOURCE_EPILOG,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--features", required=True, help="feature table (PATH or a JSON "
                        "source object)")
    parser.add_argument(f"--{kind.sources}", required=True, action="append",
                        metavar="[LABEL=]PATH|JSON" if kind.labelled_sources else "PATH|JSON",
                        help=kind.source_help)
    parser.add_argument("--out", required=True, help="output table (format by extension)")
    parser.add_argument("--audit-json", help="audit JSON path")
    add_option_flags(parser, kind.options)
    return parser


def mos_parser() -> argparse.ArgumentParser:
    return parser(KINDS[MOS])


def second_opinion_parser() -> argparse.ArgumentParser:
    return parser(KINDS[SECOND_OPINION])


def options_from(args: argparse.Namespace, options: type[Any]) -> Any:
    """The declared options out of parsed flags."""
    return options.from_mapping({f.name: getattr(args, f.name) for f in options.declared()})


def main(kind: Kind, argv: Sequence[str] | None = None) -> int:
    """Run a kind's command: one line on stderr, exit 0, 1 (bad data) or 2 (bad usage)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser(kind).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"{kind.command}: %(message)s",
                        stream=sys.stderr)
    use_jemalloc()
    try:
        with named_as_flags():
            run = RunContext(sys.argv[0], argv=argv, args=vars(args))
            audit = kind.join_function()(
                args.features, getattr(args, kind.sources), args.out,
                audit_json=args.audit_json, options=options_from(args, kind.options), run=run)
    except MaterializeError as exc:
        print(f"{kind.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # Ctrl-C: temporary files are already removed, no traceback
        print(f"{kind.command}: interrupted", file=sys.stderr)
        return 130
    print(f"{kind.command}: {kind.done(audit)}", file=sys.stderr)
    return 0


def mos_labels_main(argv: Sequence[str] | None = None) -> int:
    """``materialize-mos-labels``."""
    return main(KINDS[MOS], argv)


def second_opinion_main(argv: Sequence[str] | None = None) -> int:
    """``materialize-second-opinion-features``."""
    return main(KINDS[SECOND_OPINION], argv)


__all__ = ["mos_labels_main", "second_opinion_main"]
