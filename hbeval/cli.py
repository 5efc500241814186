"""The ``hbeval`` command line (see the README and ``shared/contract.md``).

Exit status: 0 success, 1 bad input or a failed check (the message names file, row and
column), 2 misuse.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from hbeval import __version__
from hbeval.errors import HbevalError, InputError, UsageError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hbeval", description="Impact evaluation of personal-budget (HB) pilots.")
    p.add_argument("--version", action="version", version=f"hbeval {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("demo", help="write a synthetic study folder with its truth")
    d.add_argument("out", metavar="OUT")
    d.add_argument("--n-pilot", type=int, default=400)
    d.add_argument("--n-comparison", type=int, default=600)
    d.add_argument("--seed", type=int, default=None)

    v = sub.add_parser("validate", help="data-quality report; exit 1 on any error")
    v.add_argument("study", metavar="STUDY")
    v.add_argument("--out", metavar="OUT", help="also write OUT/results/data_quality.csv")

    a = sub.add_parser("assign", help="randomise pilot families to the 2x2 arms")
    a.add_argument("study", metavar="STUDY")
    g = a.add_mutually_exclusive_group(required=True)
    g.add_argument("--all", action="store_true", help="batch: every unassigned pilot family")
    g.add_argument("--client", metavar="ID", help="sequential: one newly enrolled family")
    g.add_argument("--verify", action="store_true", help="check the allocation registry")

    z = sub.add_parser("analyze", help="every result table, no notebooks")
    z.add_argument("study", metavar="STUDY")
    z.add_argument("--out", metavar="OUT", required=True)

    r = sub.add_parser("report", help="execute the notebooks and render the report")
    r.add_argument("study", metavar="STUDY")
    r.add_argument("--out", metavar="OUT", default=None)
    r.add_argument("--lang", choices=("fi", "en"), default="en")

    f = sub.add_parser("verify", help="re-run from OUT/manifest.json and compare the results")
    f.add_argument("out", metavar="OUT")
    return p


def _demo(args: argparse.Namespace) -> int:
    from hbeval.demo import DEMO_SEED, write_demo

    if args.n_pilot < 8 or args.n_comparison < 8:
        raise UsageError("--n-pilot and --n-comparison must be at least 8")
    out = Path(args.out).resolve()
    if out.exists() and any(out.iterdir()) and not (out / "truth.json").exists():
        raise UsageError(f"{out} exists and is not an earlier demo study; give an empty or new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        demo = write_demo(tmp, n_pilot=args.n_pilot, n_comparison=args.n_comparison,
                          seed=DEMO_SEED if args.seed is None else args.seed)
        from hbeval.analyze import replace_dir

        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    t = demo.truth
    print(f"demo study written to {out}: {t['n_pilot']} pilot, {t['n_comparison']} comparison and "
          f"{t['n_excluded']} excluded families (truth in truth.json)")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from hbeval.study import validate

    res = validate(args.study)
    print(res.ledger.summary())
    if args.out:
        from hbeval.analyze import write_csv

        d = Path(args.out) / "results"
        d.mkdir(parents=True, exist_ok=True)
        write_csv(res.ledger.to_frame(), d / "data_quality.csv")
    return 1 if res.ledger.has_errors() else 0


def _assign(args: argparse.Namespace) -> int:
    from hbeval import assign

    return assign.run(args.study, all=args.all, client=args.client, verify=args.verify)


def _analyze(args: argparse.Namespace) -> int:
    from hbeval.analyze import run
    from hbeval.study import open_study

    study = open_study(args.study)
    out = run(study, args.out, command=["hbeval", "analyze", str(args.study), "--out", str(args.out)])
    print(f"results written to {out / 'results'}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from hbeval import report

    return report.run(args.study, out=args.out, lang=args.lang)


def _verify(args: argparse.Namespace) -> int:
    from hbeval import report

    return report.verify(args.out)


COMMANDS = {"demo": _demo, "validate": _validate, "assign": _assign, "analyze": _analyze, "report": _report,
            "verify": _verify}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UsageError as e:
        print(f"hbeval {args.command}: {e}", file=sys.stderr)
        return 2
    except HbevalError as e:
        print(f"hbeval {args.command}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"hbeval {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
