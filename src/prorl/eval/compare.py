"""Boundary analysis (``prorl compare``): did training widen what the model can solve, task by task?

Inputs are result files of ``prorl eval`` (see :mod:`prorl.eval.evaluate`): the base model, an
optional intermediate checkpoint (MID) and the final one. Everything is read from the per-task
``pass@k`` tables; the per-problem records feed only the pass@1 histograms.

The reference k (``K``) is the paper's reasoning boundary, pass@128. When a file has fewer than 128
samples per problem (or 128 is not among its ks), ``K`` is the largest k every file and task has, and
the output says so.

Regimes, per task, with ``d = pass@K(FINAL) - pass@K(BASE)`` (thresholds are options and are written
into the output):

- **Unsolved**: pass@K is 0 for both BASE and FINAL: no sample of any of its problems was ever right, so
  there is no boundary to compare (listed apart, not as a decline).
- **Diminish**: ``d < min_gain`` and pass@1 rose: the boundary fell or stayed where it was (the
  paper's "decreased or unchanged") while RL sharpened the model on what it already solved.
- **Decline**: ``d < min_gain`` and pass@1 did not rise (no better at either; not one of the paper's
  regimes, kept apart so that Diminish means what the paper means).
- **Plateau** (needs MID): otherwise (the boundary widened), when
  ``pass@K(FINAL) - pass@K(MID) < plateau_gain``: the gains stopped between the intermediate and the
  final checkpoint.
- **Sustained** (needs MID): otherwise: pass@K kept growing after MID.
- **Undetermined**: no MID was given and the boundary widened; its gain is still reported. Telling
  Plateau from Sustained needs a point in between.

The correlation between the base model's pass@K and the gain ``d`` across tasks (the paper finds RL
helps most where the base model is weakest) is reported as Pearson's r and Spearman's rho with
their p-values (``scipy.stats``); with fewer than 3 tasks, or when either side is constant, both are
NaN (written as ``null``) with a note.

A task is flagged ``mid_beats_final`` when MID's pass@1 or pass@K exceeds FINAL's by at least
``plateau_gain``: the later training lost ground, the signal to stop or reset earlier.

A task is a *boundary expansion* when the base model's pass@k is 0 at every k while the final
model's is not: problems the base model never solved in ``n`` samples.
"""

from __future__ import annotations

import html
import json
import math
import re
import sys
import warnings
from pathlib import Path

from prorl.errors import UserError

DEFAULT_K = 128
"""The reasoning boundary of the paper: pass@128."""
MIN_GAIN = 0.02
"""pass@K must rise by at least this (absolute) over BASE for the boundary to count as widened;
below it a task is Diminish or Decline."""
PLATEAU_GAIN = 0.02
"""A pass@K gain from MID to FINAL below this (absolute) is a Plateau, at or above it Sustained."""


def load_results(path: str | Path) -> dict:
    """Read a ``prorl eval`` result file; a missing or malformed file is a :class:`UserError` naming it."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such file (expected a results JSON written by `prorl eval`)") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), dict) or not data["tasks"]:
        raise UserError(f"{path}: field 'tasks': missing or empty (expected a results JSON written by `prorl eval`)")
    for task, entry in data["tasks"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("pass@k"), dict) or "1" not in entry["pass@k"]:
            raise UserError(f"{path}: field 'tasks.{task}.pass@k': missing, or without k=1")
    return data


def reference_k(results: list[dict], tasks: list[str], want: int = DEFAULT_K) -> tuple[int, str | None]:
    """The k used for the boundary, and a note when it is not ``want``.

    >>> r = {"tasks": {"t": {"pass@k": {"1": 0.1, "2": 0.2, "4": 0.3}}}}
    >>> reference_k([r, r], ["t"])
    (4, 'pass@128 is not available in every file and task (largest common k is 4); the boundary uses pass@4')
    """
    common = None
    for result in results:
        for task in tasks:
            ks = {int(k) for k in result["tasks"][task]["pass@k"]}
            common = ks if common is None else common & ks
    if want in common:
        return want, None
    k = max(common)
    return k, (f"pass@{want} is not available in every file and task (largest common k is {k}); "
               f"the boundary uses pass@{k}")


def classify(base_p1: float, base_pk: float, final_p1: float, final_pk: float, mid_pk: float | None = None, *,
             min_gain: float = MIN_GAIN, plateau_gain: float = PLATEAU_GAIN) -> str:
    """The regime of one task (rules in the module docstring).

    >>> classify(0.2, 0.9, 0.5, 0.7)           # pass@1 up, pass@K down by 0.2
    'Diminish'
    >>> classify(0.2, 0.5, 0.4, 0.8, 0.79)     # gain from MID to FINAL 0.01 < 0.02
    'Plateau'
    >>> classify(0.2, 0.5, 0.4, 0.8, 0.6)
    'Sustained'
    >>> classify(0.2, 0.5, 0.4, 0.8)
    'Undetermined'
    >>> classify(0.0, 0.0, 0.0, 0.0)
    'Unsolved'
    """
    tie = 1e-9  # a difference equal to a threshold, up to rounding, counts as reaching it
    if base_pk == 0 and final_pk == 0:
        return "Unsolved"
    if final_pk - base_pk < min_gain - tie:
        return "Diminish" if final_p1 > base_p1 else "Decline"
    if mid_pk is None:
        return "Undetermined"
    return "Plateau" if final_pk - mid_pk < plateau_gain - tie else "Sustained"


def correlation(xs: list[float], ys: list[float]) -> dict:
    """Pearson and Spearman correlation with p-values; NaN and a note when they are undefined.

    >>> c = correlation([0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1])
    >>> round(c["pearson_r"], 6), round(c["spearman_rho"], 6), c["note"]
    (-1.0, -1.0, None)
    >>> correlation([0.1, 0.2], [0.3, 0.1])["note"]
    'fewer than 3 tasks: correlation undefined'
    """
    nan = float("nan")
    out = {"tasks": len(xs), "pearson_r": nan, "pearson_p": nan, "spearman_rho": nan, "spearman_p": nan, "note": None}
    if len(xs) < 3:
        out["note"] = "fewer than 3 tasks: correlation undefined"
        return out
    if len(set(xs)) == 1 or len(set(ys)) == 1:
        out["note"] = "base pass@K or the gain is the same for every task: correlation undefined"
        return out
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on near-constant input; the values are still reported
        pearson = stats.pearsonr(xs, ys)
        spearman = stats.spearmanr(xs, ys)
    out.update(pearson_r=float(pearson[0]), pearson_p=float(pearson[1]),
               spearman_rho=float(spearman[0]), spearman_p=float(spearman[1]))
    return out


def compare_results(base: dict, final: dict, mid: dict | None = None, *, k: int = DEFAULT_K,
                    min_gain: float = MIN_GAIN, plateau_gain: float = PLATEAU_GAIN) -> dict:
    """The analysis as a JSON-serialisable dict (no files): per-task values and regimes, correlation,
    boundary expansion, thresholds and notes. ``k`` is the wanted reference k (see :func:`reference_k`)."""
    files = [base, final] + ([mid] if mid is not None else [])
    notes = []
    tasks = sorted(set.intersection(*(set(r["tasks"]) for r in files)))
    for name, r in (("BASE", base), ("MID", mid), ("FINAL", final)):
        if r is not None and set(r["tasks"]) - set(tasks):
            notes.append(f"tasks only in some files are left out ({name}: {', '.join(sorted(set(r['tasks']) - set(tasks)))})")
    if not tasks:
        raise UserError("compare: the result files have no task in common")
    k_ref, note = reference_k(files, tasks, k)
    if note:
        notes.append(note)
    if mid is None:
        notes.append(f"no MID given: Plateau and Sustained need an intermediate result; tasks whose pass@{k_ref} did "
                     f"rise by at least {min_gain} are 'Undetermined' (their gain is reported)")
    K = str(k_ref)
    rows = {}
    for task in tasks:
        b, f = base["tasks"][task], final["tasks"][task]
        m = mid["tasks"][task] if mid is not None else None
        row = {
            "domain": f.get("domain", b.get("domain")),
            "base_pass@1": b["pass@k"]["1"], "final_pass@1": f["pass@k"]["1"],
            "base_pass@K": b["pass@k"][K], "final_pass@K": f["pass@k"][K],
            "mid_pass@1": m["pass@k"]["1"] if m else None, "mid_pass@K": m["pass@k"][K] if m else None,
        }
        row["gain@K"] = row["final_pass@K"] - row["base_pass@K"]
        row["gain@1"] = row["final_pass@1"] - row["base_pass@1"]
        row["regime"] = classify(row["base_pass@1"], row["base_pass@K"], row["final_pass@1"], row["final_pass@K"],
                                 row["mid_pass@K"], min_gain=min_gain, plateau_gain=plateau_gain)
        row["problems"] = f.get("count", b.get("count"))
        row["mid_beats_final"] = m is not None and (
            row["mid_pass@K"] - row["final_pass@K"] >= plateau_gain - 1e-9
            or row["mid_pass@1"] - row["final_pass@1"] >= plateau_gain - 1e-9)
        rows[task] = row
    expansion = [t for t in tasks
                 if all(v == 0 for v in base["tasks"][t]["pass@k"].values())
                 and any(v > 0 for v in final["tasks"][t]["pass@k"].values())]
    corr = correlation([rows[t]["base_pass@K"] for t in tasks], [rows[t]["gain@K"] for t in tasks])
    counts = {}
    for row in rows.values():
        counts[row["regime"]] = counts.get(row["regime"], 0) + 1
    return {
        "k": k_ref,
        "thresholds": {"min_gain": min_gain, "plateau_gain": plateau_gain},
        "rules": {
            "Diminish": f"pass@{k_ref} rose by less than {min_gain} (or fell) and pass@1 rose",
            "Decline": f"pass@{k_ref} rose by less than {min_gain} (or fell) and pass@1 did not rise",
            "Plateau": f"otherwise, pass@{k_ref}(FINAL) - pass@{k_ref}(MID) < {plateau_gain} (needs MID)",
            "Sustained": f"otherwise, pass@{k_ref}(FINAL) - pass@{k_ref}(MID) >= {plateau_gain} (needs MID)",
            "Undetermined": "otherwise, when no MID was given",
            "Unsolved": f"pass@{k_ref} is 0 for BASE and FINAL (checked first)",
        },
        "has_mid": mid is not None,
        "notes": notes,
        "regime_counts": counts,
        "tasks": rows,
        "correlation": {"x": f"base pass@{k_ref}", "y": f"pass@{k_ref} gain (FINAL - BASE)", **corr},
        "boundary_expansion": expansion,
        "mid_beats_final": [t for t in tasks if rows[t]["mid_beats_final"]],
    }


# ---------------------------------------------------------------- output


def _json_safe(value):
    """NaN / inf become None so the file is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def format_table(analysis: dict) -> str:
    """The regime table and the boundary-expansion list as plain text (what the command prints)."""
    K = analysis["k"]
    k1, kb, km, kf = "pass@1 base", f"pass@{K} base", f"pass@{K} mid", f"pass@{K} final"
    head = (f"{'task':<28} {'problems':>8} {k1:>11} {'pass@1 final':>12} {kb:>13} {km:>12} {kf:>14} "
            f"{'gain':>7}  regime")
    lines = [head, "-" * len(head)]
    for task, r in analysis["tasks"].items():
        lines.append(f"{task[:28]:<28} {str(r.get('problems', '-')):>8} {_fmt(r['base_pass@1']):>11} "
                     f"{_fmt(r['final_pass@1']):>12} {_fmt(r['base_pass@K']):>13} {_fmt(r['mid_pass@K']):>12} "
                     f"{_fmt(r['final_pass@K']):>14} {r['gain@K']:>+7.3f}  {r['regime']}"
                     + ("  (MID beat FINAL)" if r.get("mid_beats_final") else ""))
    lines.append("")
    lines.append("regimes: " + ", ".join(f"{k} {v}" for k, v in sorted(analysis["regime_counts"].items())))
    exp = analysis["boundary_expansion"]
    lines.append(f"boundary expansion (base pass@k = 0 at every k, final > 0): {', '.join(exp) if exp else 'none'}")
    if analysis["mid_beats_final"]:
        lines.append(f"MID beat FINAL (by >= {analysis['thresholds']['plateau_gain']} at pass@1 or pass@{K}; stop or "
                     f"reset earlier?): {', '.join(analysis['mid_beats_final'])}")
    c = analysis["correlation"]
    lines.append(f"correlation of {c['x']} with the gain over {c['tasks']} tasks: "
                 f"Pearson r={_fmt_nan(c['pearson_r'])} (p={_fmt_nan(c['pearson_p'])}), "
                 f"Spearman rho={_fmt_nan(c['spearman_rho'])} (p={_fmt_nan(c['spearman_p'])})"
                 + (f" [{c['note']}]" if c["note"] else ""))
    lines.extend(f"note: {n}" for n in analysis["notes"])
    return "\n".join(lines)


def _fmt_nan(x) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3g}"


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:60]


def _plot_curves(path: Path, task: str, series: list[tuple[str, dict]], k_ref: int) -> None:
    from matplotlib.figure import Figure  # a Figure without pyplot renders PNG with Agg, no global state

    fig = Figure(figsize=(4.2, 3.0), dpi=100)
    ax = fig.add_subplot()
    for label, passk in series:
        ks = sorted(int(k) for k in passk)
        ax.plot(ks, [passk[str(k)] for k in ks], marker="o", markersize=3, label=label)
    ax.set_xscale("log", base=2)
    ax.axvline(k_ref, color="grey", linestyle=":", linewidth=1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("k")
    ax.set_ylabel("pass@k")
    ax.set_title(task, fontsize=10)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)


def _plot_histograms(path: Path, series: list[tuple[str, list[float]]]) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 3.2), dpi=100)
    ax = fig.add_subplot()
    bins = [i / 20 for i in range(21)]
    for label, values in series:
        ax.hist(values, bins=bins, histtype="step", linewidth=1.5, label=f"{label} ({len(values)} problems)")
    ax.set_xlabel("per-problem pass@1 (correct / n)")
    ax.set_ylabel("problems")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def _plot_scatter(path: Path, analysis: dict) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.2), dpi=100)
    ax = fig.add_subplot()
    colours = {"Diminish": "tab:red", "Decline": "tab:purple", "Plateau": "tab:orange", "Sustained": "tab:green",
               "Undetermined": "tab:grey", "Unsolved": "black"}
    for regime, colour in colours.items():
        pts = [(t, r["base_pass@K"], r["gain@K"]) for t, r in analysis["tasks"].items() if r["regime"] == regime]
        if pts:
            ax.scatter([p[1] for p in pts], [p[2] for p in pts], color=colour, label=regime, s=18)
            for task, x, y in pts:  # every point says which task it is
                ax.annotate(task, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_xlabel(analysis["correlation"]["x"])
    ax.set_ylabel(analysis["correlation"]["y"])
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")


def write_compare(analysis: dict, labelled: list[tuple[str, str, dict]], out_dir: str | Path) -> Path:
    """Write ``compare.json``, the PNGs and ``index.html`` into ``out_dir``; returns the page's path.

    ``labelled``: ``(label, source path, results)`` for BASE, [MID,] FINAL, in that order.
    Images are files beside the page, referenced by relative paths: the folder is self-contained.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = {"curves": {}}
    for i, task in enumerate(analysis["tasks"]):
        name = f"curve_{i:03d}_{_safe_name(task)}.png"
        _plot_curves(out / name, task, [(label, r["tasks"][task]["pass@k"]) for label, _, r in labelled], analysis["k"])
        images["curves"][task] = name
    hist_series = [(label, [p["correct"] / p["n"] for p in r["problems"]])
                   for label, _, r in labelled if isinstance(r.get("problems"), list) and r["problems"]]
    if len(hist_series) == len(labelled):
        _plot_histograms(out / "pass1_histogram.png", hist_series)
        images["histogram"] = "pass1_histogram.png"
    else:
        analysis["notes"].append("some result files have no per-problem records: no pass@1 histogram")
    _plot_scatter(out / "gain_vs_base.png", analysis)
    images["scatter"] = "gain_vs_base.png"
    analysis = dict(analysis, inputs={label: src for label, src, _ in labelled}, images=images)
    (out / "compare.json").write_text(json.dumps(_json_safe(analysis), indent=1) + "\n")
    page = out / "index.html"
    page.write_text(_html(analysis))
    return page


def _html(a: dict) -> str:
    e = html.escape
    K = a["k"]
    rows = "".join(
        f"<tr><td>{e(t)}</td><td>{e(str(r['domain']))}</td><td>{e(str(r.get('problems', '-')))}</td>"
        f"<td>{_fmt(r['base_pass@1'])}</td>"
        f"<td>{_fmt(r['mid_pass@1'])}</td><td>{_fmt(r['final_pass@1'])}</td><td>{_fmt(r['base_pass@K'])}</td>"
        f"<td>{_fmt(r['mid_pass@K'])}</td><td>{_fmt(r['final_pass@K'])}</td><td>{r['gain@K']:+.3f}</td>"
        f"<td class='{e(r['regime'])}'>{e(r['regime'])}</td>"
        f"<td>{'MID beat FINAL' if r.get('mid_beats_final') else ''}</td></tr>"
        for t, r in a["tasks"].items()
    )
    rules = "".join(f"<li><b>{e(k)}</b>: {e(v)}</li>" for k, v in a["rules"].items())
    notes = "".join(f"<li>{e(n)}</li>" for n in a["notes"])
    inputs = "".join(f"<li>{e(k)}: {e(v)}</li>" for k, v in a["inputs"].items())
    exp = ", ".join(e(t) for t in a["boundary_expansion"]) or "none"
    c = a["correlation"]
    curves = "".join(f"<img src='{e(src)}' alt='{e(t)}'>" for t, src in a["images"]["curves"].items())
    hist = f"<img src='{a['images']['histogram']}' alt='pass@1 histogram'>" if "histogram" in a["images"] else \
        "<p>(no per-problem records)</p>"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>prorl compare</title>
<style>body{{font-family:sans-serif;margin:1.5em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}} td:first-child{{text-align:left}}
.Diminish{{color:#c00}} .Decline{{color:#808}} .Sustained{{color:#070}} .Plateau{{color:#b60}} .Unsolved{{color:#666}}
img{{margin:4px;border:1px solid #eee}}</style></head><body>
<h1>Boundary analysis (pass@{K})</h1>
<ul>{inputs}</ul>
<h2>Regimes</h2><p>Thresholds: min_gain = {a['thresholds']['min_gain']},
plateau_gain = {a['thresholds']['plateau_gain']} (absolute pass@{K}).</p><ul>{rules}</ul>
<table><tr><th>task</th><th>domain</th><th>problems</th><th>pass@1 base</th><th>pass@1 mid</th><th>pass@1 final</th>
<th>pass@{K} base</th><th>pass@{K} mid</th><th>pass@{K} final</th><th>pass@{K} gain</th><th>regime</th>
<th>flag</th></tr>{rows}</table>
<p>Flag "MID beat FINAL": the intermediate checkpoint's pass@1 or pass@{K} is higher than the final one's by at
least plateau_gain, the sign to stop or reset earlier.</p>
<h2>Boundary expansion</h2><p>Tasks where the base model's pass@k is 0 at every k and the final model's is not: {exp}</p>
<h2>Base pass@{K} vs gain</h2>
<p>Pearson r = {_fmt_nan(c['pearson_r'])} (p = {_fmt_nan(c['pearson_p'])}), Spearman rho = {_fmt_nan(c['spearman_rho'])}
(p = {_fmt_nan(c['spearman_p'])}) over {c['tasks']} tasks{(' — ' + e(c['note'])) if c['note'] else ''}.</p>
<img src='{a['images']['scatter']}' alt='gain vs base'>
<h2>Per-problem pass@1</h2>{hist}
<h2>Notes</h2><ul>{notes or '<li>none</li>'}</ul>
<h2>pass@k curves</h2><div>{curves}</div>
</body></html>
"""


def add_compare_arguments(parser) -> None:
    """Arguments of ``prorl compare``."""
    parser.add_argument("results", nargs="+", metavar="RESULTS.json",
                        help="BASE.json [MID.json] FINAL.json, written by `prorl eval`")
    parser.add_argument("--out", default="compare", help="output directory (default ./compare)")
    parser.add_argument("--k", type=int, default=DEFAULT_K, help=f"reference k of the boundary (default {DEFAULT_K})")
    parser.add_argument("--min-gain", type=float, default=MIN_GAIN,
                        help=f"pass@K gain over BASE below which a task is Diminish/Decline (default {MIN_GAIN})")
    parser.add_argument("--plateau-gain", type=float, default=PLATEAU_GAIN,
                        help=f"pass@K gain from MID to FINAL below which a task is a Plateau (default {PLATEAU_GAIN})")


def main_compare(args) -> int:
    """``prorl compare``: write DIR/compare.json, the plots and DIR/index.html; print the table."""
    if not 2 <= len(args.results) <= 3:
        raise UserError(f"compare: expected BASE.json [MID.json] FINAL.json, got {len(args.results)} files")
    loaded = [load_results(p) for p in args.results]
    labels = ["base", "final"] if len(loaded) == 2 else ["base", "mid", "final"]
    by_label = dict(zip(labels, loaded))
    analysis = compare_results(by_label["base"], by_label["final"], by_label.get("mid"), k=args.k,
                               min_gain=args.min_gain, plateau_gain=args.plateau_gain)
    page = write_compare(analysis, list(zip(labels, map(str, args.results), loaded)), args.out)
    print(format_table(analysis))
    print(f"wrote {page} and {page.parent / 'compare.json'}", file=sys.stderr)
    return 0
