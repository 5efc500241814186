"""The ``hbeval`` command line (see the README and ``shared/contract.md``).

Exit status: 0 success, 1 bad input or a failed check (the message names file, row and
column), 2 misuse.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hbeval import __version__
from hbeval.errors import HbevalError, UsageError, disk_problem


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
    a.add_argument("--head", metavar="RECEIPT",
                   help="with --verify: a receipt (SEQ:HEX, as assign printed it) that the registry must still hold")
    a.add_argument("--allow-legacy-registry", action="store_true",
                   help="with --verify: accept an unkeyed hbeval-registry/1 file (its chain can be rewritten by anyone "
                        "with the file; check it against a receipt with --head)")

    z = sub.add_parser("analyze", help="every result table, no notebooks")
    z.add_argument("study", metavar="STUDY")
    z.add_argument("--out", metavar="OUT", required=True)

    r = sub.add_parser("report", help="execute the notebooks and render the report")
    r.add_argument("study", metavar="STUDY")
    r.add_argument("--out", metavar="OUT", default=None)
    r.add_argument("--lang", choices=("fi", "en"), default="en")

    f = sub.add_parser("verify", help="re-run from OUT/manifest.json and compare the results")
    f.add_argument("out", metavar="OUT")

    dg = sub.add_parser("diagnose", help="power, MDE, bias and coverage of the design, by simulating it")
    dg.add_argument("study", metavar="STUDY")
    dg.add_argument("--out", metavar="OUT", required=True)
    dg.add_argument("--n-pilot", metavar="N", type=int, nargs="+", default=None,
                    help="pilot sizes to diagnose (default: [diagnose] n_pilot, else the study's pilot families)")
    dg.add_argument("--sims", metavar="S", type=int, default=None, help="simulations per size (default: [diagnose] sims)")
    dg.add_argument("--lang", choices=("fi", "en"), default="en", help="language of the figure")

    pl = sub.add_parser("plan", help="seal the analysis plan (and its diagnosis) before the first allocation")
    pl.add_argument("study", metavar="STUDY")
    return p


def _demo(args: argparse.Namespace) -> int:
    from hbeval.demo import DEMO_SEED, write_demo

    if args.n_pilot < 8 or args.n_comparison < 8:
        raise UsageError("--n-pilot and --n-comparison must be at least 8")
    from hbeval import outdir

    out = Path(args.out).resolve()
    _adopt_legacy_demo(out)
    with outdir.building(out) as tmp:
        demo = write_demo(tmp, n_pilot=args.n_pilot, n_comparison=args.n_comparison,
                          seed=DEMO_SEED if args.seed is None else args.seed)
    t = demo.truth
    print(f"demo study written to {out}: {t['n_pilot']} pilot, {t['n_comparison']} comparison and "
          f"{t['n_excluded']} excluded families (truth in truth.json)")
    return 0


_DEMO_FILES = ("study.toml", "truth.json", "allocation.sqlite", ".hbeval")


def _adopt_legacy_demo(out: Path) -> None:
    """A demo study written before output folders were marked is taken as hbeval's own only
    when every entry in it is one the demo writes (its tables, study.toml, truth.json, the
    registry and the store); anything else makes ``demo`` refuse the folder."""
    from hbeval import outdir

    if not out.is_dir() or out.is_symlink() or outdir.is_output(out) or not (out / "truth.json").is_file():
        return
    entries = list(out.iterdir())
    if all(e.name in _DEMO_FILES or (e.is_file() and e.suffix in (".csv", ".xlsx")) for e in entries):
        outdir.mark(out)


def _validate(args: argparse.Namespace) -> int:
    from hbeval.outdir import check_out
    from hbeval.study.store import validate

    if args.out:
        check_out(args.out, args.study)  # refuse before the store is rebuilt
    res = validate(args.study)
    print(res.ledger.summary())
    if args.out:
        from hbeval.outdir import updating
        from hbeval.pipeline import write_csv

        with updating(args.out, args.study) as tmp:
            (tmp / "results").mkdir()
            write_csv(res.ledger.to_frame(), tmp / "results" / "data_quality.csv")
    return 1 if res.ledger.has_errors() else 0


def _assign(args: argparse.Namespace) -> int:
    from hbeval.randomisation import allocate as assign

    return assign.run(args.study, all=args.all, client=args.client, verify=args.verify, head=args.head,
                      allow_legacy=args.allow_legacy_registry)


def _analyze(args: argparse.Namespace) -> int:
    from hbeval.pipeline import run
    from hbeval.study.store import open_study

    study = open_study(args.study, progress=sys.stderr)  # a rebuild takes minutes at a national size: say so
    out = run(study, args.out, command=["hbeval", "analyze", str(args.study), "--out", str(args.out)])
    print(f"results written to {out / 'results'}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from hbeval.report import render as report

    return report.run(args.study, out=args.out, lang=args.lang)


def _verify(args: argparse.Namespace) -> int:
    from hbeval.report import render as report

    return report.verify(args.out)


def _diagnose(args: argparse.Namespace) -> int:
    from hbeval.diagnose import run

    out = run(args.study, args.out, sizes=args.n_pilot, sims=args.sims, lang=args.lang)
    print(f"diagnosis written to {out / 'diagnosis.csv'}")
    return 0


def _plan(args: argparse.Namespace) -> int:
    import datetime as dt

    from hbeval.diagnose import diagnose
    from hbeval.randomisation import plan
    from hbeval.report.narrative import plan_markdown
    from hbeval.study.config import load_config

    study = Path(args.study)
    if not study.is_dir():
        raise UsageError(f"{study} is not a study folder")
    cfg = load_config(study)
    key = cfg.allocation_key(study)
    plan.check_sealable(study, key)  # refuse before the simulation, not after
    if cfg.subgroups and (study / "clients.csv").exists():
        from hbeval.randomisation.allocate import load_clients

        plan.check_subgroups(cfg, list(load_clients(study).columns))
    doc = plan.build_plan(cfg, diagnose(study, progress=sys.stderr), dt.date.today())
    sha = plan.seal(study, doc, plan_markdown, key=key)
    print(f"analysis plan sealed: {study / plan.PLAN_JSON} and {plan.PLAN_MD} (SHA-256 {sha}); it opens the "
          "allocation registry at the first allocation and can be sealed again until then")
    return 0


COMMANDS = {"demo": _demo, "validate": _validate, "assign": _assign, "analyze": _analyze, "report": _report,
            "verify": _verify, "diagnose": _diagnose, "plan": _plan}


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
    except Exception as e:  # a full disk is bad luck, not a bug: a message and exit 1, no traceback
        msg = disk_problem(e)
        if msg is None:
            raise
        print(f"hbeval {args.command}: {msg}; free some space and run the command again (nothing was "
              "half-written)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"hbeval {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
