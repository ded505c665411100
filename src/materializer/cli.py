"""The two single-table commands, with the older scripts' flags.

Exit codes: 0 success, 1 bad data, 2 bad usage. Expected errors print one line on
stderr; unexpected ones keep their traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from materializer.errors import MaterializeError
from materializer.options import MosOptions, SecondOpinionOptions, named_as_flags
from materializer.provenance import RunContext


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be in [0, 1]")
    return value


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
                                type=_rate if meta["type"] == "rate" else str,
                                choices=meta["choices"] or None)


def mos_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="materialize-mos-labels",
        description="Join subjective MOS labels onto an extracted feature table.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--features", required=True, help="feature table")
    parser.add_argument("--labels", required=True, action="append",
                        help="label table (repeatable, read in order)")
    parser.add_argument("--out", required=True, help="output table (format by extension)")
    parser.add_argument("--audit-json", help="audit JSON path")
    add_option_flags(parser, MosOptions)
    return parser


def second_opinion_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="materialize-second-opinion-features",
        description="Join external no-reference scorer outputs onto a feature table.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--features", required=True, help="feature table")
    parser.add_argument("--scores", required=True, action="append", metavar="[LABEL=]PATH",
                        help="score sidecar (repeatable); LABEL is the fallback competitor")
    parser.add_argument("--out", required=True, help="output table (format by extension)")
    parser.add_argument("--audit-json", help="audit JSON path")
    add_option_flags(parser, SecondOpinionOptions)
    return parser


def options_from(args: argparse.Namespace, options: type[Any]) -> Any:
    """The declared options out of parsed flags."""
    return options.from_mapping({f.name: getattr(args, f.name) for f in options.declared()})


def _run(prog: str, argv: Sequence[str], job: Callable[[], dict[str, Any]],
         summary: Callable[[dict[str, Any]], str]) -> int:
    logging.basicConfig(level=logging.INFO, format=f"{prog}: %(message)s", stream=sys.stderr)
    try:
        with named_as_flags():
            audit = job()
    except MaterializeError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # Ctrl-C: temporary files are already removed, no traceback
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    print(f"{prog}: {summary(audit)}", file=sys.stderr)
    return 0


def mos_labels_main(argv: Sequence[str] | None = None) -> int:
    """``materialize-mos-labels``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = mos_parser().parse_args(argv)

    def job() -> dict[str, Any]:
        options = options_from(args, MosOptions)
        from materializer.mos import materialize_mos_labels

        run = RunContext(sys.argv[0], argv=argv, args=vars(args))
        return materialize_mos_labels(args.features, args.labels, args.out,
                                      audit_json=args.audit_json, options=options, run=run)

    return _run("materialize-mos-labels", argv, job, lambda a: (
        f"{a['matched_rows']}/{a['input_rows']} rows labelled, match rate "
        f"{a['match_rate']:.3f}, wrote {a['output']}"))


def second_opinion_main(argv: Sequence[str] | None = None) -> int:
    """``materialize-second-opinion-features``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = second_opinion_parser().parse_args(argv)

    def job() -> dict[str, Any]:
        options = options_from(args, SecondOpinionOptions)
        from materializer.second_opinion import materialize_second_opinion

        run = RunContext(sys.argv[0], argv=argv, args=vars(args))
        return materialize_second_opinion(args.features, args.scores, args.out,
                                          audit_json=args.audit_json, options=options, run=run)

    return _run("materialize-second-opinion-features", argv, job, lambda a: (
        f"{len(a['competitors'])} competitor(s), {a['output_rows']}/{a['input_rows']} rows, "
        f"wrote {a['output']}"))


__all__ = ["mos_labels_main", "second_opinion_main"]
