"""prorl compare on synthetic result files whose regimes are known by construction.

With n = 128 samples, a problem's pass@128 is 1 when it has any correct sample and 0 otherwise, so a
task's pass@128 is the fraction of its problems with c > 0, and its pass@1 the mean of c / 128:
both are set exactly by the per-problem counts below.
"""

import argparse
import json
import math

import numpy as np
import pytest

from prorl.errors import UserError
from prorl.eval import compare as cmp
from prorl.eval.evaluate import summarize
from prorl.eval.passk import default_ks


def make_result(counts: dict[str, list[int]], n: int = 128) -> dict:
    """A results dict as `prorl eval` writes it, from per-task lists of per-problem correct counts."""
    recs = []
    for task, cs in counts.items():
        for c in cs:
            recs.append(dict(index=len(recs), id=f"{task}-{len(recs)}", domain="logic", task=task, n=n, correct=c,
                             mean_score=c / n, truncated=0, errors=0))
    return summarize(recs, default_ks(n), {"n": n})


def problems(*groups: tuple[int, int]) -> list[int]:
    """``problems((3, 1), (7, 0))`` -> 3 problems with c=1, then 7 with c=0."""
    return [c for how_many, c in groups for _ in range(how_many)]


# task: (base, mid, final) per-problem counts; pass@128 in the comment.
CASES = {
    # 0.2 -> 0.5 -> 0.9: still +0.4 after MID
    "sustained": (problems((2, 1), (8, 0)), problems((5, 2), (5, 0)), problems((9, 5), (1, 0))),
    # 0.3 -> 0.8 -> 0.8: no gain after MID (pass@1 still rises: 10/128 -> 20/128 on 8 problems)
    "plateau": (problems((3, 1), (7, 0)), problems((8, 10), (2, 0)), problems((8, 20), (2, 0))),
    # 0.9 -> 0.7 -> 0.5 while pass@1 goes 9*5/1280 -> 5*60/1280
    "diminish": (problems((9, 5), (1, 0)), problems((7, 30), (3, 0)), problems((5, 60), (5, 0))),
    # 0.0 -> 0.1 -> 0.3: the base model never solves anything
    "expand": (problems((10, 0)), problems((1, 1), (9, 0)), problems((3, 4), (7, 0))),
    # 0.9 -> 0.6 -> 0.5 and pass@1 falls too: 90/1280 -> 10/1280
    "decline": (problems((9, 10), (1, 0)), problems((6, 4), (4, 0)), problems((5, 2), (5, 0))),
}
EXPECTED = {"sustained": "Sustained", "plateau": "Plateau", "diminish": "Diminish", "expand": "Sustained",
            "decline": "Decline"}
BASE_K = {"sustained": 0.2, "plateau": 0.3, "diminish": 0.9, "expand": 0.0, "decline": 0.9}
FINAL_K = {"sustained": 0.9, "plateau": 0.8, "diminish": 0.5, "expand": 0.3, "decline": 0.5}


@pytest.fixture
def three():
    return tuple(make_result({t: v[i] for t, v in CASES.items()}) for i in range(3))


def test_regimes_values_and_expansion(three):
    base, mid, final = three
    a = cmp.compare_results(base, final, mid)
    assert a["k"] == 128 and a["has_mid"]
    for task, regime in EXPECTED.items():
        row = a["tasks"][task]
        assert row["regime"] == regime, task
        assert row["base_pass@K"] == pytest.approx(BASE_K[task], abs=1e-12)
        assert row["final_pass@K"] == pytest.approx(FINAL_K[task], abs=1e-12)
        assert row["gain@K"] == pytest.approx(FINAL_K[task] - BASE_K[task], abs=1e-12)
    assert a["tasks"]["diminish"]["final_pass@1"] == pytest.approx(300 / 1280, rel=1e-12)
    assert a["boundary_expansion"] == ["expand"]
    assert a["regime_counts"] == {"Sustained": 2, "Plateau": 1, "Diminish": 1, "Decline": 1}
    # Correlation over the 5 tasks agrees with numpy's Pearson coefficient.
    xs = [a["tasks"][t]["base_pass@K"] for t in a["tasks"]]
    ys = [a["tasks"][t]["gain@K"] for t in a["tasks"]]
    assert a["correlation"]["pearson_r"] == pytest.approx(np.corrcoef(xs, ys)[0, 1], rel=1e-9)
    assert a["correlation"]["pearson_r"] < 0 and 0 < a["correlation"]["pearson_p"] < 1
    assert -1 <= a["correlation"]["spearman_rho"] < 0


@pytest.mark.parametrize("final_k,mid_k,expected", [
    (0.80, 0.785, "Plateau"),     # MID->FINAL gain 0.015 < 0.02
    (0.80, 0.78, "Sustained"),    # gain 0.02 is not below the threshold
    (0.47, 0.6, "Diminish"),      # fell by 0.03 from base 0.5, pass@1 up
    (0.51, 0.3, "Diminish"),      # rose after MID, but only 0.01 over base: the boundary did not widen
    (0.52, 0.3, "Sustained"),     # 0.02 over base reaches the threshold; still rising after MID
    (0.52, 0.51, "Plateau"),      # widened, but no gain after MID
])
def test_thresholds(final_k, mid_k, expected):
    assert cmp.classify(0.1, 0.5, 0.2, final_k, mid_k) == expected


def test_an_unchanged_boundary_without_a_pass1_gain_is_decline():
    assert cmp.classify(0.2, 0.5, 0.2, 0.51, 0.3) == "Decline"


def test_without_mid_regimes_are_undetermined_and_said_so(three):
    base, _, final = three
    a = cmp.compare_results(base, final)
    assert a["tasks"]["diminish"]["regime"] == "Diminish" and a["tasks"]["decline"]["regime"] == "Decline"
    assert {a["tasks"][t]["regime"] for t in ("sustained", "plateau", "expand")} == {"Undetermined"}
    assert any("Plateau and Sustained need an intermediate result" in n for n in a["notes"])


def test_small_n_uses_largest_k_and_says_so():
    base = make_result({"a": [0, 1, 0, 0], "b": [2, 2, 0, 0], "c": [0, 0, 0, 0]}, n=16)
    final = make_result({"a": [3, 1, 2, 0], "b": [2, 2, 1, 0], "c": [0, 1, 0, 0]}, n=16)
    a = cmp.compare_results(base, final)
    assert a["k"] == 16
    assert any("pass@128 is not available" in n and "uses pass@16" in n for n in a["notes"])
    assert a["tasks"]["a"]["base_pass@K"] == pytest.approx(0.25, abs=1e-12)  # 1 of 4 problems has c > 0
    assert a["boundary_expansion"] == ["c"]


@pytest.mark.parametrize("counts_base,counts_final,note", [
    ({"a": [1], "b": [2]}, {"a": [3], "b": [4]}, "fewer than 3 tasks"),
    # every base pass@128 is 1.0: constant input
    ({"a": [1], "b": [2], "c": [3]}, {"a": [3], "b": [0], "c": [9]}, "the same for every task"),
])
def test_correlation_undefined_is_nan_with_a_note(counts_base, counts_final, note):
    a = cmp.compare_results(make_result(counts_base), make_result(counts_final))
    c = a["correlation"]
    assert math.isnan(c["pearson_r"]) and math.isnan(c["spearman_p"]) and note in c["note"]


def run_cli(paths, out, capsys):
    parser = argparse.ArgumentParser()
    cmp.add_compare_arguments(parser)
    rc = cmp.main_compare(parser.parse_args([*map(str, paths), "--out", str(out)]))
    return rc, capsys.readouterr().out


def test_command_writes_json_html_and_images(three, tmp_path, capsys):
    paths = []
    for name, result in zip(("base", "mid", "final"), three):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(result))
    out = tmp_path / "cmp"
    rc, stdout = run_cli(paths, out, capsys)
    assert rc == 0
    saved = json.loads((out / "compare.json").read_text())
    assert {t: r["regime"] for t, r in saved["tasks"].items()} == EXPECTED
    assert saved["thresholds"] == {"min_gain": 0.02, "plateau_gain": 0.02}
    assert saved["boundary_expansion"] == ["expand"]
    page = (out / "index.html").read_text()
    images = saved["images"]
    assert len(images["curves"]) == 5 and "histogram" in images and "scatter" in images
    for name in [*images["curves"].values(), images["histogram"], images["scatter"]]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"src='{name}'" in page
    assert "http" not in page  # no network resources
    for task, regime in EXPECTED.items():
        assert any(line.startswith(task) and line.rstrip().removesuffix("  (MID beat FINAL)").endswith(regime)
                   for line in stdout.splitlines())
    # MID was better than FINAL on these two (pass@128 0.7 vs 0.5 and 0.6 vs 0.5): flagged on the page and here
    assert saved["mid_beats_final"] == ["decline", "diminish"]
    assert page.count("MID beat FINAL</td>") == 2 and "MID beat FINAL (by >= 0.02" in stdout
    assert "<th>pass@1 mid</th>" in page and "<th>pass@128 final</th>" in page and "<th>problems</th>" in page
    assert all(r["problems"] == 10 for r in saved["tasks"].values())
    assert "boundary expansion (base pass@k = 0 at every k, final > 0): expand" in stdout


def test_undefined_correlation_is_null_in_the_json(tmp_path, capsys):
    base, final = make_result({"a": [0], "b": [1]}), make_result({"a": [2], "b": [1]})
    paths = [tmp_path / "b.json", tmp_path / "f.json"]
    paths[0].write_text(json.dumps(base))
    paths[1].write_text(json.dumps(final))
    rc, stdout = run_cli(paths, tmp_path / "o", capsys)
    saved = json.loads((tmp_path / "o" / "compare.json").read_text())
    assert rc == 0 and saved["correlation"]["pearson_r"] is None and "fewer than 3 tasks" in stdout


@pytest.mark.parametrize("content,error", [
    (None, "no such file"),
    ("{not json", "not valid JSON"),
    ('{"tasks": {}}', "field 'tasks'"),
    ('{"tasks": {"a": {"pass@k": {"2": 0.5}}}}', "without k=1"),
])
def test_bad_inputs_are_clear_errors(tmp_path, capsys, content, error):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(make_result({"a": [1]})))
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    with pytest.raises(UserError, match=error):
        run_cli([good, bad], tmp_path / "o", capsys)


def test_wrong_number_of_files(tmp_path, capsys):
    with pytest.raises(UserError, match="BASE.json"):
        run_cli([tmp_path / "a.json"], tmp_path / "o", capsys)


def test_a_task_never_solved_by_either_is_unsolved_not_decline():
    never = problems((10, 0))
    base, final = make_result({"hard": never, "ok": problems((5, 1), (5, 0))}), \
        make_result({"hard": never, "ok": problems((8, 3), (2, 0))})
    a = cmp.compare_results(base, final)
    assert a["tasks"]["hard"]["regime"] == "Unsolved" and a["tasks"]["ok"]["regime"] != "Unsolved"
    assert a["mid_beats_final"] == [] and a["tasks"]["hard"]["problems"] == 10
