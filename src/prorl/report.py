"""``prorl report RUN_DIR``: an HTML page of a training run's curves, events and validation results.

Reads the run directory the trainer writes (``metrics.jsonl``, ``events.jsonl``, ``config.yaml``;
formats in ``docs/metrics.md``) and writes ``RUN_DIR/report/index.html`` with PNG plots beside it.

Made to be run while training is still going: the trainer appends and flushes a line at a time, so
the last line may be half written; it is skipped. A malformed line elsewhere is skipped too and
listed on the page (a report should show what it can rather than fail). A plot whose metrics do not
exist (yet, or in this configuration) is left out. Values the trainer logged as ``"nan"``/``"inf"``
strings are plotted as gaps.

Reference resets are drawn as red dashed vertical lines, stage changes as blue dotted ones (not the
first stage's start), resumes as green dash-dotted ones, on every plot. A stage event is logged at the
step before the stage's first step, so its line sits there. Curves with identical points are drawn
once, labelled with every name (a one-domain run's ``reward/mean`` and ``reward/math``); a learning
rate that never changed is stated as a value instead of a flat plot. Legends sit outside the axes.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

from prorl.errors import UserError

PLOTS = [
    # (file name, title, y-axis label, keys; a key ending in "/" selects every metric with that prefix)
    ("reward", "Reward per domain", "mean reward", ["reward/"]),
    ("accuracy", "Accuracy (score >= 1) per domain", "fraction correct", ["accuracy/"]),
    ("val_pass1", "Validation pass@1 per domain", "pass@1", ["val/pass@1/"]),
    ("val_score", "Validation mean score per domain", "mean score", ["val/mean_score/"]),
    ("entropy", "Policy entropy", "nats per token", ["actor/entropy"]),
    ("kl", "KL to the reference", "KL per token", ["actor/kl"]),
    ("kl_share", "KL term's share of the loss", "share", ["actor/kl_share"]),
    ("clip", "Clip fractions", "fraction of tokens", ["actor/clip_frac_low", "actor/clip_frac_high"]),
    ("length", "Response length", "tokens", ["response/length_mean", "response/length_max"]),
    ("truncated", "Truncated response fraction", "fraction of responses", ["response/truncated_frac"]),
    ("zero_var", "Zero-variance group fraction", "fraction of groups", ["batch/zero_var_group_frac"]),
    ("mismatch", "Sampler vs trainer", "per token", ["rollout/logprob_diff", "rollout/mismatch_kl"]),
    ("step_time", "Time per step", "seconds", ["time/step", "time/generate", "time/score", "time/logprobs",
                                               "time/update", "time/weight_push"]),
    ("losses", "Losses", "loss", ["actor/pg_loss", "actor/kl_loss"]),
    ("grad_norm", "Gradient norm", "L2 norm", ["actor/grad_norm"]),
    ("lr", "Learning rate", "learning rate", ["actor/lr"]),
    ("throughput", "Rollout throughput", "tokens/s", ["perf/tokens_per_s"]),
]


def read_log(path: Path) -> tuple[list[dict], list[str]]:
    """The JSON objects of a JSONL log and notes on skipped lines. A missing file gives ``([], [])``.

    A half-written last line is skipped with a note that says it is probably being written.
    """
    if not path.exists():
        return [], []
    rows, notes = [], []
    lines = path.read_text(errors="replace").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict):
            where = "last line (probably still being written)" if number == len(lines) else f"line {number}"
            notes.append(f"{path.name}: skipped {where}: not a JSON object")
            continue
        rows.append(row)
    return rows, notes


def _number(value) -> float | None:
    """A plottable float: numbers as they are, "nan"/"inf" strings as NaN/inf, anything else None.

    >>> _number(2), _number("nan") != _number("nan"), _number("x"), _number(True)
    (2.0, True, None, None)
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.lower() in ("nan", "inf", "-inf"):
        return float(value)
    return None


def select_keys(rows: list[dict], patterns: list[str]) -> list[str]:
    """Metric names matched by ``patterns`` (exact names, or prefixes ending in "/"), in a stable order.

    >>> select_keys([{"reward/math": 1, "reward/mean": 1, "actor/kl": 0}], ["reward/", "actor/kl"])
    ['reward/math', 'reward/mean', 'actor/kl']
    """
    present = {k for row in rows for k in row}
    keys = []
    for pattern in patterns:
        if pattern.endswith("/"):
            keys += sorted(k for k in present if k.startswith(pattern))
        elif pattern in present:
            keys.append(pattern)
    return keys


def series(rows: list[dict], key: str) -> tuple[list[float], list[float]]:
    """``(steps, values)`` for the rows that hold ``key``; non-finite values stay (plotted as gaps)."""
    steps, values = [], []
    for row in rows:
        if key in row and _number(row.get("step")) is not None:
            v = _number(row[key])
            if v is not None:
                steps.append(_number(row["step"]))
                values.append(v)
    return steps, values


def distinct_curves(curves: list[tuple[str, list[float], list[float]]]) -> list[tuple[str, list[float], list[float]]]:
    """Curves with identical points merged into one, labelled with every name (``reward/mean = reward/math``
    in a one-domain run), so no curve hides under its duplicate.

    >>> [c[0] for c in distinct_curves([("a", [1], [2.0]), ("b", [1], [2.0]), ("c", [1], [3.0])])]
    ['a = b', 'c']
    """
    out: list[tuple[str, list[float], list[float]]] = []
    for label, xs, ys in curves:
        for i, (other, oxs, oys) in enumerate(out):
            if oxs == xs and oys == ys:
                out[i] = (f"{other} = {label}", oxs, oys)
                break
        else:
            out.append((label, xs, ys))
    return out


def constant_value(curves) -> float | None:
    """The value when every curve is one constant (a learning rate without warm-up), else None."""
    values = {y for _, _, ys in curves for y in ys}
    return values.pop() if len(values) == 1 else None


def _plot(path: Path, title: str, ylabel: str, curves: list[tuple[str, list[float], list[float]]],
          resets: list[float], stages: list[tuple[float, str]], resumes: list[float]) -> None:
    from matplotlib.figure import Figure  # a Figure without pyplot renders PNG with Agg, no global state

    fig = Figure(figsize=(7.2, 3.4), dpi=100)
    ax = fig.add_subplot()
    for label, xs, ys in curves:
        marker = "o" if len(xs) < 30 else None
        ax.plot(xs, [y if math.isfinite(y) else float("nan") for y in ys], label=label, marker=marker, markersize=3)
    for i, step in enumerate(resets):
        ax.axvline(step, color="tab:red", linestyle="--", linewidth=1, label="reference reset" if i == 0 else None)
    for i, (step, name) in enumerate(stages):
        ax.axvline(step, color="tab:blue", linestyle=":", linewidth=1.2, label="stage change" if i == 0 else None)
    for i, step in enumerate(resumes):
        ax.axvline(step, color="tab:green", linestyle="-.", linewidth=1, label="resumed" if i == 0 else None)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel, fontsize=8)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)  # outside the data
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")  # the legend beside the axes stays in the image


def build_report(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write the report of ``run_dir`` (default into ``run_dir/report``); returns the path of index.html."""
    run = Path(run_dir)
    if not run.is_dir():
        raise UserError(f"run directory {run}: no such directory")
    out = Path(out_dir) if out_dir is not None else run / "report"
    out.mkdir(parents=True, exist_ok=True)
    metrics, notes = read_log(run / "metrics.jsonl")
    events, event_notes = read_log(run / "events.jsonl")
    notes += event_notes
    if not metrics:
        notes.append("metrics.jsonl is missing or empty: no training step has been logged yet")

    resets = [float(e["step"]) for e in events if e.get("event") == "reset" and _number(e.get("step")) is not None]
    stages = [(float(e["step"]), str(e.get("name", e.get("stage", "")))) for e in events
              if e.get("event") == "stage" and _number(e.get("step")) is not None and float(e["step"]) > 0]
    resumes = [float(e["step"]) for e in events if e.get("event") == "resume" and _number(e.get("step")) is not None]
    images = []
    for name, title, ylabel, patterns in PLOTS:
        curves = [(k, *series(metrics, k)) for k in select_keys(metrics, patterns)]
        curves = distinct_curves([c for c in curves if c[1]])
        if not curves:
            continue
        constant = constant_value(curves) if len(curves[0][1]) > 1 else None
        if constant is not None and name == "lr":
            notes.append(f"learning rate: {constant:g} at every step (constant, so not plotted)")
            continue
        _plot(out / f"{name}.png", title, ylabel, curves, resets, stages, resumes)
        images.append((f"{name}.png", title))
    config = (run / "config.yaml").read_text(errors="replace") if (run / "config.yaml").exists() else None
    page = out / "index.html"
    page.write_text(_html(run, metrics, events, images, notes, config))
    return page


def validation_table(metrics: list[dict]) -> tuple[list[str], list[list]]:
    """Columns and rows of the validation table: one row per step that logged ``val/`` metrics.

    >>> validation_table([{"step": 0, "val/pass@1/math": 0.5}, {"step": 1}, {"step": 2, "val/pass@1/math": 0.75}])
    (['step', 'val/pass@1/math'], [[0, 0.5], [2, 0.75]])
    """
    keys = select_keys(metrics, ["val/"])
    rows = [[row.get("step")] + [row.get(k) for k in keys] for row in metrics if any(k in row for k in keys)]
    return ["step", *keys], rows


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape("" if value is None else str(value))


def _html(run: Path, metrics, events, images, notes, config) -> str:
    e = html.escape
    last = metrics[-1] if metrics else {}
    counts = {}
    for ev in events:
        counts[ev.get("event", "?")] = counts.get(ev.get("event", "?"), 0) + 1
    summary = (f"<p>Steps logged: {len(metrics)}; last step: {e(str(last.get('step', '-')))}; "
               f"stage: {e(str(last.get('stage', '-')))}; events: "
               + (", ".join(f"{e(k)} {v}" for k, v in sorted(counts.items())) or "none") + "</p>")
    plots = "".join(f"<figure><img src='{src}' alt='{e(title)}'><figcaption>{e(title)}</figcaption></figure>"
                    for src, title in images) or "<p>(no metrics to plot yet)</p>"
    cols, rows = validation_table(metrics)
    if rows:
        val = ("<table><tr>" + "".join(f"<th>{e(c)}</th>" for c in cols) + "</tr>"
               + "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in r) + "</tr>" for r in rows) + "</table>")
    else:
        val = ("<p>Validation has not run in this run (validation.every is 0, or there are no validation problems, "
               "or the first validation step has not been reached).</p>")
    shown = [ev for ev in events if ev.get("event") in ("reset", "stage", "skip", "resume")]
    ev_rows = "".join(
        f"<tr><td>{_cell(ev.get('step'))}</td><td>{e(str(ev.get('event')))}</td><td>"
        + e(", ".join(f"{k}={v}" for k, v in ev.items() if k not in ("step", "time", "event"))) + "</td></tr>"
        for ev in shown
    )
    ev_table = (f"<table><tr><th>step</th><th>event</th><th>details</th></tr>{ev_rows}</table>" if shown
                else "<p>(no resets, stage changes, skips or resumes)</p>")
    note_list = "".join(f"<li>{e(n)}</li>" for n in notes)
    cfg = f"<h2>Config</h2><pre>{e(config)}</pre>" if config is not None else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>prorl report: {e(run.name)}</title>
<style>body{{font-family:sans-serif;margin:1.5em;max-width:none}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}
.plots{{display:grid;grid-template-columns:repeat(auto-fill,minmax(620px,1fr));gap:8px}}
figure{{margin:0}} figure img{{width:100%;height:auto}}
figcaption{{font-size:small;text-align:center}} pre{{background:#f6f6f6;padding:1em}}</style></head><body>
<h1>Run {e(str(run))}</h1>
{summary}
<p>Red dashed lines: reference resets. Blue dotted lines: stage changes. Green dash-dotted lines: resumes.</p>
{'<ul>' + note_list + '</ul>' if notes else ''}
<h2>Training curves</h2><div class="plots">{plots}</div>
<h2>Validation</h2>{val}
<h2>Events</h2>{ev_table}
{cfg}
</body></html>
"""


def add_report_arguments(parser) -> None:
    """Arguments of ``prorl report``."""
    parser.add_argument("run_dir", help="a run directory written by `prorl train` (may still be running)")
    parser.add_argument("--out", default=None, help="output directory (default RUN_DIR/report)")


def main_report(args) -> int:
    """``prorl report``: write the page and print its path."""
    page = build_report(args.run_dir, args.out)
    print(f"wrote {page}")
    return 0
