"""The ``prorl`` command: train, demo, reset, eval, compare, report, score, data check.

Heavy modules (torch, transformers) are imported inside each command, so ``prorl --help`` is quick.
A :class:`~prorl.errors.UserError` (bad config, bad file, missing model) prints one clear line and
exits with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from prorl.errors import Stopped, UserError


def _train_epilog() -> str:
    from prorl.config import help_lines

    return "settings (override any with key.sub=value):\n" + "\n".join(help_lines())


def cmd_train(args) -> int:
    from prorl.config import load_recipe, resolve_config

    if args.resume:
        run_dir = Path(args.resume)
        recipe_path = run_dir / "config.yaml"
        if not recipe_path.is_file():
            raise UserError(f"--resume {run_dir}: no config.yaml there (is it a prorl run directory?)")
        overrides = list(args.recipe and [args.recipe] or []) + args.overrides
        if overrides and not all("=" in o for o in overrides):
            raise UserError("with --resume, give only key.sub=value overrides (the recipe is the run's config.yaml)")
        if any(o.split("=", 1)[0].strip() == "run_dir" for o in overrides):
            raise UserError(f"with --resume the run directory is {run_dir}; run_dir cannot be overridden")
        # The directory named on the command line is the run, even when config.yaml names another (a copied run).
        cfg = resolve_config(load_recipe(recipe_path), overrides + [f"run_dir={json.dumps(str(run_dir))}"],
                             where=f"{recipe_path} + command line")
    else:
        if not args.recipe:
            raise UserError("prorl train: give a recipe YAML file (or --resume RUN_DIR)")
        if "=" in args.recipe and not Path(args.recipe).exists():
            cfg = resolve_config({}, [args.recipe] + args.overrides, where="command line")
        else:
            cfg = resolve_config(load_recipe(args.recipe), args.overrides, where=f"{args.recipe} + command line")
    from prorl.train import run_summary, train

    train(cfg, resume=bool(args.resume))
    if _rank() == 0:  # under torchrun, rank 0 speaks for the run
        print("\n".join(run_summary(cfg.run_dir)))
        print(f"run written to {cfg.run_dir}")
    return 0


def cmd_reset(args) -> int:
    import os
    import time

    from prorl.run import RESET_REQUEST

    run_dir = Path(args.run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"{run_dir}: not a prorl run directory (no config.yaml)")
    # A fresh token per request: the trainer acts on each token once, and a checkpoint removes the file.
    tmp = run_dir / (RESET_REQUEST + ".tmp")
    tmp.write_text(f"{time.time_ns()}-{os.getpid()}\n")
    os.replace(tmp, run_dir / RESET_REQUEST)
    print(f"reference reset requested; the trainer of {run_dir} performs it at its next step")
    return 0


def cmd_demo(args) -> int:
    if args.study:
        from prorl.study import run_study, run_variants

        if args.variants:
            run_variants(out_dir=args.out or "runs/study_variants", quick=args.quick, seed=args.seed)
        else:
            run_study(out_dir=args.out or "runs/study", quick=args.quick, seed=args.seed)
        return 0
    if args.variants:
        raise UserError("--variants goes with --study: prorl demo --study --variants")
    from prorl.demo import run_demo

    run_demo(out_dir=args.out or "runs/demo", quick=args.quick, seed=args.seed)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prorl", description="Prolonged RL (ProRL) of language models on verifiable rewards.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model with ProRL", formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train with ProRL. RECIPE is a YAML file of settings; key.sub=value overrides it.",
                       epilog=_train_epilog())
    p.add_argument("recipe", nargs="?", help="recipe YAML file")
    p.add_argument("overrides", nargs="*", help="key.sub=value settings")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its latest checkpoint")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("demo", help="the embedded CPU demo: tiny model, warm-start, ProRL, before/after table")
    p.add_argument("--out", default=None, help="output directory (default runs/demo, or runs/study with --study)")
    p.add_argument("--quick", action="store_true", help="a much shorter run (smoke test, does not show learning)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--study", action="store_true",
                   help="the paper's claims at CPU scale (about 25 minutes on 2 cores): ProRL against GRPO over two "
                        "seeds, pass@k boundary expansion on a held-out task ladder, and a length-penalty stage; "
                        "writes study.html (docs/study.md)")
    p.add_argument("--variants", action="store_true",
                   help="with --study: ten changes to the ProRL recipe (frontier-weighted data, loss aggregation, "
                        "stronger KL, entropy target, Clip-Cov, KL-Cov, CISPO, GSPO), each from the study's warm start, "
                        "with pass@k on its ladder (about 70 minutes on 2 cores; docs/study.md)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("reset", help="ask a running trainer for a hard reference reset at its next step")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_reset)

    from prorl.eval.compare import add_compare_arguments, main_compare
    from prorl.eval.command import add_eval_arguments, main_eval
    from prorl.report import add_report_arguments, main_report

    p = sub.add_parser("eval", help="pass@k evaluation of a model on problem files")
    add_eval_arguments(p)
    p.set_defaults(func=main_eval)
    p = sub.add_parser("compare", help="boundary analysis of base / intermediate / final evaluations")
    add_compare_arguments(p)
    p.set_defaults(func=main_compare)
    p = sub.add_parser("report", help="HTML report of a run directory (works while it runs)")
    add_report_arguments(p)
    p.set_defaults(func=main_report)

    from prorl.check_cmd import add_check_arguments, main_check
    from prorl.score_cmd import add_score_arguments, main_score

    p = sub.add_parser("score", help="score responses in a JSONL file with the verifiers")
    add_score_arguments(p)
    p.set_defaults(func=main_score)
    p = sub.add_parser("data", help="data tools")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    c = data_sub.add_parser("check", help="validate a problem file and list every bad row")
    add_check_arguments(c)
    c.set_defaults(func=main_check)
    return parser


def _rank() -> int:
    """This process's rank under torchrun (0 when launched alone)."""
    import os

    return int(os.environ.get("RANK", "0") or 0)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"prorl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Stopped as exc:
        if _rank() == 0:  # every rank stops at the same step; one message says so
            print(f"prorl {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
