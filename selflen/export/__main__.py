"""``python -m selflen.export RUN --to DIR [--format NAME ...] [--push-to-hub REPO]``: see ``selflen.export``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from selflen.export import FORMATS, export, push


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m selflen.export", description=__doc__.split(":")[0])
    p.add_argument("run", help="a run folder that train.py wrote (outputs/...)")
    p.add_argument("--to", required=True, help="the folder to write the formats into (DIR/<format>)")
    p.add_argument("--format", nargs="+", choices=FORMATS, default=None,
                   help=f"formats to write (default: all of {', '.join(FORMATS)})")
    p.add_argument("--dtype", default=None, help="the merged model's dtype (default: the run's model.dtype)")
    p.add_argument("--push-to-hub", metavar="REPO", default=None,
                   help="upload the data (dataset repository) and the merged model (model repository) to REPO")
    p.add_argument("--public", action="store_true", help="create the hub repositories public (default: private)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    import logging

    from selflen.errors import SelflenError
    from selflen.export.data import ExportError
    from selflen.report.cards import HubError

    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        written = export(args.run, args.to, args.format or FORMATS, dtype=args.dtype)
        for item in written:
            print(item.line())
    except (ExportError, HubError, SelflenError) as err:
        print(f"selflen: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 1
    if args.push_to_hub:
        try:
            for url in push(written, args.push_to_hub, private=not args.public):
                print(f"pushed: {url}")
        except Exception as err:  # the hub refused or did not answer: one line, the export stays on disk
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            print(f"selflen: error: push to {args.push_to_hub} failed: {first}; the export is in {args.to}",
                  file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
