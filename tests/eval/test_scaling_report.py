"""Reading runs (pretrain metrics + config, compose ladder points, CSV), the comparison math on
hand-checkable laws, and `aira eval scaling` writing its report and figures."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from agents.journal import Journal, Node
from aira.config import save_config
from compose.ladder import write_points
from eval.scaling.analysis import ArchFit
from eval.scaling.cli import main
from eval.scaling.compare import compare, compute_multiplier, slope_ratio
from eval.scaling.errors import ScalingError
from eval.scaling.points import ReadOptions, read_points
from eval.scaling.powerlaw import PowerLaw
from eval.scaling.report import comparison_sentence
from models.accounting import count_params, non_embedding_params, train_flops_per_token
from models.lm import build_lm
from models.spec import ArchSpec
from pretrain.config import RunConfig

SEQ_LEN = 64


def spec_dict(name: str, d_model: int, pattern: list[str]) -> dict:
    return {"name": name, "pattern": pattern, "d_model": d_model, "vocab_size": 256, "max_seq_len": SEQ_LEN,
            "primitives": {"attn": {"type": "attn", "n_heads": 4, "n_kv_heads": 2},
                           "mlp": {"type": "mlp", "kind": "swiglu", "hidden": 2 * d_model}}}


def write_run(run_dir: Path, spec: dict, vals: list[tuple[int, float]]) -> ArchSpec:
    """A pretrain RUN_DIR as pretrain/train.py leaves it: config.yaml + metrics.jsonl (train and val lines)."""
    cfg = RunConfig(name=run_dir.name, run_dir=str(run_dir))
    cfg.model.spec = spec
    cfg.data.seq_len = SEQ_LEN
    save_config(cfg, run_dir / "config.yaml")
    lines = [{"kind": "val", "step": 0, "tokens": 0, "val_loss": 5.6, "val_bpb": 8.0}]
    for step, (tokens, loss) in enumerate(vals, 1):
        lines.append({"kind": "train", "step": step, "tokens": tokens, "loss": loss + 0.05, "lr": 1e-3,
                      "grad_norm": 1.0, "tokens_per_s": 1e4, "mfu": 0.1, "mem_bytes": 1, "elapsed_s": 1.0})
        lines.append({"kind": "val", "step": step, "tokens": tokens, "val_loss": loss,
                      "val_bpb": loss / math.log(2)})
    (run_dir / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return ArchSpec.from_dict(spec)


# ---------------------------------------------------------------- reading


def test_pretrain_run_points_count_flops_from_the_spec(tmp_path):
    spec = write_run(tmp_path / "run", spec_dict("tiny-llama", 64, ["attn", "mlp"] * 2),
                     [(16384, 4.0), (32768, 3.5), (65536, 3.2)])
    points = read_points([tmp_path / "run"])
    n = build_lm(spec).num_params()  # the model itself is the oracle for the parameter count
    assert [p.tokens for p in points] == [16384, 32768, 65536]  # the tokens = 0 line and train lines skipped
    assert all(p.params == n == count_params(spec) for p in points)
    assert points[0].compute == pytest.approx(train_flops_per_token(spec, SEQ_LEN) * 16384)
    # attention's seq_len^2 terms and the LM head make C/(N D) differ from the dense 6; it stays close
    assert 4 < points[0].compute / (n * 16384) < 12
    assert [p.loss for p in points] == [4.0, 3.5, 3.2] and {p.arch for p in points} == {"tiny-llama"}

    bpb = read_points([tmp_path / "run"], ReadOptions(loss="val_bpb", params="non_embedding",
                                                      names=[("ru*", "mine")]))
    assert bpb[0].loss == pytest.approx(4.0 / math.log(2)) and bpb[0].params == non_embedding_params(spec)
    assert bpb[0].arch == "mine"


def test_pretrain_run_with_a_diverged_loss_or_no_val_lines_is_a_clear_error(tmp_path):
    write_run(tmp_path / "nan", spec_dict("t", 32, ["attn", "mlp"]), [(1000, 3.0), (2000, float("nan"))])
    with pytest.raises(ScalingError, match=r"metrics.jsonl line 5: val_loss must be a positive finite number"):
        read_points([tmp_path / "nan"])
    write_run(tmp_path / "empty", spec_dict("t", 32, ["attn", "mlp"]), [])
    with pytest.raises(ScalingError, match="no validation lines"):
        read_points([tmp_path / "empty"])
    with pytest.raises(ScalingError, match="not a pretrain run"):
        read_points([tmp_path / "missing"])


def test_compose_ladder_journal_gives_one_architecture_per_node(tmp_path):
    run = tmp_path / "compose"
    rungs = [{"d_model": w, "params": 1000 * w, "train_flops": 1e12 * w, "val_bpb": 3.0 - w / 100, "test_bpb": 3.0}
             for w in (64, 96, 128)]
    with Journal(run / "journal.db") as j:
        with pytest.raises(ScalingError, match="no ladder_points.csv"):  # a journal alone is not read
            read_points([run], ReadOptions(loss="val_bpb"))
        done = j.add(Node("draft", "a0", {"pattern": ["attn", "mlp"]}, status="done",
                          metrics={"ladder": rungs, "pred_bpb": 2.0}))
        j.add(Node("draft", "a1", {"pattern": ["mlp"]}, status="failed", error="OOM"))
        j.add(Node("draft", "a2", {"pattern": ["mlp"]}, status="done", metrics={"val_bpb": 2.5}))  # no ladder
        write_points(run, j.nodes())  # what a ladder search does as each node finishes
    points = read_points([run], ReadOptions(loss="val_bpb"))
    assert [p.params for p in points] == [64000, 96000, 128000]
    assert [p.compute for p in points] == [64e12, 96e12, 128e12]
    assert {p.arch for p in points} == {f"compose/{done.id}"} and all(math.isnan(p.tokens) for p in points)
    named = read_points([run], ReadOptions(loss="val_bpb", names=[(done.id, "hybrid")]))
    assert {p.arch for p in named} == {"hybrid"}
    with pytest.raises(ScalingError, match="--loss val_bpb"):
        read_points([run])


def test_csv_points_and_bad_csv(tmp_path):
    good = tmp_path / "pub.csv"
    good.write_text("arch,N,D,C,loss\nchin,1e9,2e10,1.2e20,2.5\nchin,2e9,,2.4e20,2.4\n")
    points = read_points([good])
    assert points[0].compute == 1.2e20 and math.isnan(points[1].tokens)
    bad = tmp_path / "bad.csv"
    bad.write_text("arch,N,C,loss\nx,1,2,3\n")
    with pytest.raises(ScalingError, match="missing column"):
        read_points([bad])
    bad.write_text("arch,N,D,C,loss\nx,1e9,1e10,6e19,-2\n")
    with pytest.raises(ScalingError, match="line 2: loss must be a positive"):
        read_points([bad])


# ---------------------------------------------------------------- comparison math


def law(e: float, a: float, b: float) -> PowerLaw:
    return PowerLaw(E=e, log_a=math.log(a), b=b)


def arch_fit(name: str, power: PowerLaw, boot: list[PowerLaw] | None = None) -> ArchFit:
    return ArchFit(name, [], np.array([], dtype=np.int64), power, boot or [])


def test_pure_power_laws_give_exact_slope_ratio_and_compute_multiplier():
    # base L = 10 C^-0.1, X L = 10 C^-0.15 (E = 0): b ratio - 1 = 0.5 exactly; X reaches 10 C0^-0.1 at
    # C_X = C0^(0.1/0.15), so C_X / C0 = C0^(-1/3) = 0.01 at C0 = 1e6
    base, x = law(1e-300, 10.0, 0.1), law(1e-300, 10.0, 0.15)
    assert slope_ratio(x, base) == pytest.approx(0.5, rel=1e-12)
    assert compute_multiplier(x, base, 1e6) == pytest.approx(0.01, rel=1e-9)
    c = compare(arch_fit("x", x), arch_fit("base", base), budget=1e6, target=1e9)
    assert c.reachable and c.saved.value == pytest.approx(0.99)
    assert c.loss.value == pytest.approx(10 * 1e9 ** -0.15) and c.baseline_loss.value == pytest.approx(10 * 1e9 ** -0.1)
    assert "scales 50.0% faster" in comparison_sentence(c) and "99.0% less compute" in comparison_sentence(c)


def test_intervals_pair_bootstrap_replicates_and_unreachable_losses_are_reported_as_such():
    base = law(2.0, 100.0, 0.2)
    boots_x = [law(2.0, 100.0, b) for b in (0.22, 0.24, 0.26, 0.28, 0.30)]
    c = compare(arch_fit("x", law(2.0, 100.0, 0.26), boots_x), arch_fit("base", base, [base] * 5), 1e10, 1e12)
    assert c.slope_ratio.value == pytest.approx(0.3)
    assert c.slope_ratio.lo == pytest.approx(0.1) and c.slope_ratio.hi == pytest.approx(0.5)
    # X's floor E = 3 is above the baseline's loss at C0 (2 + 100 * 1e10^-0.2 = 3.0 + ... < 3.01)
    stuck = compare(arch_fit("stuck", law(3.05, 100.0, 0.3)), arch_fit("base", base), 1e10, 1e12)
    assert not stuck.reachable and stuck.multiplier.value == math.inf
    assert "unreachable" in comparison_sentence(stuck)


# ---------------------------------------------------------------- the CLI end to end


def chinchilla_loss(n: float, d: float, alpha: float) -> float:
    return 1.5 + 40.0 / n ** alpha + 300.0 / d ** 0.28


def test_cli_writes_report_with_tables_intervals_and_plots(tmp_path, capsys):
    runs = []
    for arch, pattern, alpha in (("llama", ["attn", "mlp"], 0.30), ("hybrid", ["attn", "mlp", "mlp"], 0.40)):
        for width in (32, 64, 128):
            spec = spec_dict(f"{arch}-{width}", width, pattern * 2)
            n = count_params(ArchSpec.from_dict(spec))
            tokens = np.unique(np.geomspace(2e5, 2e8, 14).astype(int))
            run = tmp_path / f"{arch}-{width}"
            write_run(run, spec, [(int(t), chinchilla_loss(n, t, alpha)) for t in tokens])
            runs.append(str(run))
    out = tmp_path / "report"
    rc = main([*runs, "--baseline", "llama", "--out", str(out), "--name", "*llama-*=llama", "--name", "*hybrid-*=hybrid",
               "--bootstrap", "30", "--chinchilla-points", "all", "--target-flops", "1e16"])
    assert rc == 0, capsys.readouterr().err
    text = (out / "report.md").read_text()
    for needed in ("| llama | 3 | 42 |", "| hybrid | 3 | 42 |", "b_X / b_base - 1", "## Chinchilla fits",
                   "scales", "C_t = 1e+16", "train_flops_per_token", "![IsoFLOP curves](isoflop.png)"):
        assert needed in text, needed
    for png in ("loss_vs_compute.png", "residuals.png", "isoflop.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fits = json.loads((out / "fits.json").read_text())
    # noise-free data from L(N, D) with known exponents: the Chinchilla fits recover them
    assert fits["fits"]["llama"]["chinchilla"]["alpha"]["value"] == pytest.approx(0.30, abs=0.01)
    assert fits["fits"]["hybrid"]["chinchilla"]["alpha"]["value"] == pytest.approx(0.40, abs=0.01)
    cmp = fits["comparisons"]["hybrid"]
    assert cmp["slope_ratio"]["lo"] <= cmp["slope_ratio"]["value"] <= cmp["slope_ratio"]["hi"]
    assert cmp["difference_at_target"]["value"] < 0  # the faster-scaling hybrid is ahead at 1e16 FLOPs


def test_cli_rejects_an_unknown_baseline_and_empty_input(tmp_path, capsys):
    path = tmp_path / "p.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch", "N", "D", "C", "loss"])
        for c in np.geomspace(1e18, 1e21, 6):
            w.writerow(["a", 1e9, 1e10, c, 2 + 50 * c ** -0.1])
    assert main(["--csv", str(path), "--baseline", "nope", "--out", str(tmp_path / "o")]) == 2
    assert "baseline 'nope' is not among the architectures read: a" in capsys.readouterr().err
    assert main(["--baseline", "a"]) == 2
    assert "nothing to read" in capsys.readouterr().err
    assert main(["--csv", str(path), "--baseline", "a", "--out", str(tmp_path / "o"), "--bootstrap", "0"]) == 0
    assert "Only the baseline was read" in (tmp_path / "o" / "report.md").read_text()


def test_cli_reports_a_point_fit_without_intervals_when_the_frontier_is_too_small(tmp_path, capsys):
    # "small" has 4 frontier points (n_params + 1 for L(C) = E + a C^-b), "big" 12: the report still
    # comes out, with small's point fit, and says in report.md, fits.json and on stdout why small has no
    # intervals; the comparison with it has none either.
    path = tmp_path / "p.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch", "N", "D", "C", "loss"])
        for arch, cs, b in (("small", np.geomspace(1e18, 1e21, 4), 0.12), ("big", np.geomspace(1e18, 1e21, 12), 0.1)):
            for c in cs:
                w.writerow([arch, 1e9, 1e10, c, 2 + 50 * c ** -b * (1 + 0.002 * math.sin(c))])
    out = tmp_path / "o"
    assert main(["--csv", str(path), "--baseline", "big", "--out", str(out), "--bootstrap", "40"]) == 0
    stdout = capsys.readouterr().out
    why = "4 distinct points for a law of 3 parameters"
    assert f"small: compute-frontier law: intervals unavailable: {why}" in stdout
    assert "big:" not in stdout
    text = (out / "report.md").read_text()
    assert f"- small: intervals unavailable: {why}" in text
    assert "- small: intervals unavailable: the compute-frontier law of small has none" in text
    fits = json.loads((out / "fits.json").read_text())
    small, big = fits["fits"]["small"], fits["fits"]["big"]
    assert why in small["power_intervals_unavailable"] and big["power_intervals_unavailable"] is None
    assert small["power"]["b"]["value"] == pytest.approx(0.12, rel=0.05) and small["power"]["b"]["lo"] is None
    assert big["power"]["b"]["lo"] < big["power"]["b"]["value"] < big["power"]["b"]["hi"]
    cmp = fits["comparisons"]["small"]
    assert cmp["slope_ratio"]["lo"] is None and "small" in cmp["intervals_unavailable"]


def test_a_floor_driven_to_its_bound_prints_as_about_zero():
    from eval.scaling.report import fmt

    assert fmt(1.9e-9) == "≈0 (1.9e-09)"
    assert fmt(8.1e-188).startswith("≈0")
    assert fmt(1.0823) == "1.082"
    assert fmt(0.0) == "0"
