"""eval/lm: the real lm-eval harness, offline, on local YAML tasks, checked against direct computations.

A tiny hybrid model (attention + Mamba2, so both the KV and the recurrent caches are used) is trained for
a few seconds on short English sentences so its scores are far from chance and it generates text.
Every harness number is then recomputed here without lm-eval: log-softmax of the model's logits on the
whole sequence, one example at a time, and greedy decoding by full recomputation (no cache).
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from eval.lm.cli import main as cli_main
from eval.lm.compare import compare, markdown, read_results
from eval.lm.errors import LMEvalError
from eval.lm.loading import Loaded, load
from eval.lm.run import LMEvalConfig, evaluate
from models.lm import CausalLM, build_lm
from models.spec import ArchSpec
from pretrain.tokenizer import ByteTokenizer
from tests.portability import SEED

EOS = ByteTokenizer.eos_id  # the document separator of pretrain/data.py for the byte tokenizer
MAX_LEN = 48
SPEC = {
    "name": "tiny-hybrid", "pattern": ["attn", "mlp", "mamba2", "mlp"], "d_model": 32, "vocab_size": 256,
    "max_seq_len": MAX_LEN,
    "primitives": {"attn": {"type": "attn", "n_heads": 2}, "mlp": {"type": "mlp", "hidden": 64},
                   "mamba2": {"type": "mamba2", "d_state": 8, "head_dim": 16, "chunk_size": 16}},
}
ANIMALS = ["cat", "dog", "bird", "horse", "fish", "cow"]
SENTENCES = [f"the {a} is {c}." for a in ANIMALS for c in ["red", "big", "small", "happy", "a friend"]]


def _train_tiny() -> CausalLM:
    torch.manual_seed(SEED)
    model = build_lm(ArchSpec.from_dict(SPEC))
    stream = []
    rng = random.Random(SEED)
    for _ in range(200):
        stream += list(rng.choice(SENTENCES).encode()) + [EOS]  # packed as pretrain/data.py does
    data = torch.tensor(stream)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(SEED)
    for _ in range(60):
        starts = torch.randint(0, len(data) - MAX_LEN - 1, (8,), generator=g)
        w = torch.stack([data[s:s + MAX_LEN + 1] for s in starts])
        loss = model(w[:, :-1], w[:, 1:]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


# ---------------------------------------------------------------------------------------------- tasks

def _write_tasks(root: Path, gen_until: list[str]) -> Path:
    rng = random.Random(1)
    mc = []
    for i in range(14):
        animal = ANIMALS[i % len(ANIMALS)]
        # Three answers seen in training and one never seen: the scores are close but not tied.
        choices = rng.sample(["red", "big", "small", "happy", "a friend"], 3) + ["qzx vvk"]
        rng.shuffle(choices)
        mc.append({"question": f"the {animal} is", "choices": choices, "label": rng.randrange(4)})
    ll = [{"text": s} for s in SENTENCES[:10]]
    long_text = " ".join(SENTENCES[:8])  # > MAX_LEN bytes: several rolling windows
    ppl = [{"text": s} for s in [SENTENCES[3], long_text, "the horse is a friend. the cat is red."]]
    gen = [{"prompt": f"the {a} is", "answer": " red."} for a in ANIMALS]
    tasks = {
        "toy_mc": (mc, """output_type: multiple_choice
doc_to_text: "{{question}}"
doc_to_target: label
doc_to_choice: choices
metric_list: [{metric: acc}, {metric: acc_norm}]"""),
        "toy_ll": (ll, """output_type: loglikelihood
doc_to_text: "{{text.split(' ')[:-1]|join(' ')}}"
doc_to_target: "{{' '+text.split(' ')[-1]}}"
metric_list: [{metric: acc}, {metric: perplexity, aggregation: perplexity, higher_is_better: false}]"""),
        "toy_ppl": (ppl, """output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{text}}"
metric_list: [{metric: word_perplexity}, {metric: byte_perplexity}, {metric: bits_per_byte}]"""),
        "toy_gen": (gen, f"""output_type: generate_until
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{answer}}}}"
generation_kwargs: {{until: {json.dumps(gen_until)}, max_gen_toks: 12}}
metric_list: [{{metric: exact_match}}]"""),
    }
    root.mkdir(parents=True, exist_ok=True)
    for name, (rows, body) in tasks.items():
        data = root / f"{name}.jsonl"
        data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        # cache_dir: the datasets cache of these throw-away tasks stays in the test's folder, not ~/.cache
        (root / f"{name}.yaml").write_text(f"task: {name}\ndataset_path: json\ndataset_kwargs:\n"
                                           f"  data_files:\n    test: {data}\n  cache_dir: {root / 'hf-cache'}\n"
                                           f"test_split: test\n{body}\n")
    return root


# ---------------------------------------------------------------------------------------------- direct math

def _ids(text: str) -> list[int]:
    return list(text.encode())


@torch.no_grad()
def _logprobs(model: CausalLM, ids: list[int]) -> torch.Tensor:
    """(len(ids) - 1, vocab) log-probabilities of tokens 1.. given their prefixes, one unpadded forward."""
    return F.log_softmax(model(torch.tensor([ids[:-1]])).logits[0].float(), -1)


def _continuation_ll(model: CausalLM, context: str, continuation: str) -> tuple[float, bool]:
    ctx, cont = [EOS, *_ids(context)], _ids(continuation)
    lp = _logprobs(model, ctx + cont)[len(ctx) - 1:]
    target = torch.tensor(cont)
    return float(lp.gather(-1, target[:, None]).sum()), bool((lp.argmax(-1) == target).all())


def _rolling_ll(model: CausalLM, text: str) -> float:
    """Every token scored once; the first MAX_LEN tokens from the document start, later ones in windows of
    MAX_LEN predicted tokens whose input is the MAX_LEN tokens before each window's last target."""
    toks = _ids(text)
    total, done = 0.0, 0
    while done < len(toks):
        end = min(done + MAX_LEN, len(toks)) if done else min(MAX_LEN, len(toks))
        seq = [EOS, *toks][max(0, end - MAX_LEN): end + 1]  # input = seq[:-1] (<= MAX_LEN tokens)
        lp = _logprobs(model, seq)
        targets = toks[done:end]
        rows = lp[len(seq) - 1 - len(targets):]
        total += float(rows.gather(-1, torch.tensor(targets)[:, None]).sum())
        done = end
    return total


@torch.no_grad()
def _greedy_no_cache(model: CausalLM, prompt: str, until: list[str], max_new: int) -> str:
    ids, new = [EOS, *_ids(prompt)], []
    for _ in range(max_new):
        nxt = int(model(torch.tensor([ids])).logits[0, -1].argmax())
        if nxt == EOS:
            break
        new.append(nxt)
        ids.append(nxt)
        text = bytes(new).decode("utf-8", "replace")
        hits = [text.find(s) for s in until if s in text]
        if hits:
            return text[:min(hits)]
    return bytes(new).decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def tiny() -> CausalLM:
    return _train_tiny()


@pytest.fixture(scope="module")
def gen_until(tiny) -> list[str]:
    """A stop string the model does produce mid-generation: the 3rd and 4th characters of its free output.

    Every continuation it was trained on (" red.", " big.", " a friend.", ...) has at least 5 characters,
    so a stop string there always leaves text after it to cut (seeds 0-4: " big." or " red." at the least).
    """
    free = _greedy_no_cache(tiny, "the cat is", [], 12)
    assert len(free) >= 5, f"the tiny model should continue the prompt, got {free!r}"
    return [free[2:4]]


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory, gen_until) -> Path:
    return _write_tasks(tmp_path_factory.mktemp("lm_tasks"), gen_until)


TASKS = ["toy_mc", "toy_ll", "toy_ppl", "toy_gen"]


def _run(model: CausalLM, task_dir: Path, batch_size: int, **kw) -> dict:
    cfg = LMEvalConfig(model="in-memory", tasks=TASKS, batch_size=batch_size, device="cpu",
                       include_path=str(task_dir), include_defaults=False, log_samples=True, bootstrap_iters=100, **kw)
    loaded = Loaded(model, ByteTokenizer(), EOS, MAX_LEN, {"kind": "in-memory"})
    return evaluate(cfg, loaded=loaded)


@pytest.fixture(scope="module")
def run1(tiny, task_dir) -> dict:
    return _run(tiny, task_dir, batch_size=1)


@pytest.fixture(scope="module")
def run5(tiny, task_dir) -> dict:
    return _run(tiny, task_dir, batch_size=5)


def _docs(task_dir: Path, task: str) -> list[dict]:
    return [json.loads(line) for line in (task_dir / f"{task}.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------------------------------------- tests

@pytest.mark.learning  # through the trained `tiny` fixture: its generation must not be degenerate
def test_multiple_choice_acc_and_acc_norm_match_direct_scoring(tiny, task_dir, run1):
    acc, acc_norm = [], []
    samples = sorted(run1["samples"]["toy_mc"], key=lambda s: s["doc_id"])
    for doc, sample in zip(_docs(task_dir, "toy_mc"), samples, strict=True):
        lls = [_continuation_ll(tiny, doc["question"], " " + c)[0] for c in doc["choices"]]
        assert [float(r[0][0]) for r in sample["resps"]] == pytest.approx(lls, abs=1e-4)
        acc.append(max(range(len(lls)), key=lls.__getitem__) == doc["label"])
        norm = [ll / len(c) for ll, c in zip(lls, doc["choices"], strict=True)]  # lm-eval: per character
        acc_norm.append(max(range(len(norm)), key=norm.__getitem__) == doc["label"])
    res = run1["results"]["toy_mc"]
    assert res["acc,none"] == pytest.approx(sum(acc) / len(acc))
    assert res["acc_norm,none"] == pytest.approx(sum(acc_norm) / len(acc_norm))
    assert 0 < res["acc,none"] < 1 and 0 < res["acc_norm,none"] < 1  # not a degenerate all-or-nothing
    assert run1["aira"]["primary"]["toy_mc"]["metric"] == "acc_norm,none"


def test_loglikelihood_and_greedy_flag_match_direct_scoring(tiny, task_dir, run1):
    samples = sorted(run1["samples"]["toy_ll"], key=lambda s: s["doc_id"])
    greedy = []
    for doc, sample in zip(_docs(task_dir, "toy_ll"), samples, strict=True):
        words = doc["text"].split(" ")
        ll, is_greedy = _continuation_ll(tiny, " ".join(words[:-1]), " " + words[-1])
        got_ll, got_greedy = sample["resps"][0][0]
        assert float(got_ll) == pytest.approx(ll, abs=1e-4)
        assert bool(got_greedy) == is_greedy
        greedy.append(is_greedy)
    assert run1["results"]["toy_ll"]["acc,none"] == pytest.approx(sum(greedy) / len(greedy))


def test_rolling_loglikelihood_matches_full_sequence(tiny, task_dir, run1):
    docs = _docs(task_dir, "toy_ppl")
    assert any(len(d["text"]) > 2 * MAX_LEN for d in docs)  # several windows are exercised
    lls = [_rolling_ll(tiny, d["text"]) for d in docs]
    short = docs[0]["text"]
    assert len(short) < MAX_LEN  # one window: exactly the full-sequence log-likelihood
    full = _logprobs(tiny, [EOS, *_ids(short)])
    assert lls[0] == pytest.approx(float(full.gather(-1, torch.tensor(_ids(short))[:, None]).sum()), abs=1e-4)
    samples = sorted(run1["samples"]["toy_ppl"], key=lambda s: s["doc_id"])
    for ll, sample in zip(lls, samples, strict=True):
        assert float(sample["resps"][0][0]) == pytest.approx(ll, abs=1e-3)
    n_bytes = sum(len(d["text"].encode()) for d in docs)
    bpb = -sum(lls) / n_bytes / math.log(2)
    assert run1["results"]["toy_ppl"]["bits_per_byte,none"] == pytest.approx(bpb, rel=1e-5)


def test_generate_until_equals_uncached_greedy_and_stops(tiny, task_dir, run1, gen_until):
    docs = _docs(task_dir, "toy_gen")
    samples = sorted(run1["samples"]["toy_gen"], key=lambda s: s["doc_id"])
    outs = [s["resps"][0][0] for s in samples]
    expect = [_greedy_no_cache(tiny, d["prompt"], gen_until, 12) for d in docs]
    assert outs == expect
    assert outs[0] == _greedy_no_cache(tiny, "the cat is", [], 12)[:2]  # cut right before the stop string
    assert all(gen_until[0] not in o for o in outs)


def test_batching_gives_the_numbers_of_batch_size_one(run1, run5):
    for task in TASKS:
        a = sorted(run1["samples"][task], key=lambda s: s["doc_id"])
        b = sorted(run5["samples"][task], key=lambda s: s["doc_id"])
        for sa, sb in zip(a, b, strict=True):
            for ra, rb in zip(sa["resps"], sb["resps"], strict=True):
                x, y = ra[0], rb[0]  # a string, a float, or (log-likelihood, is greedy)
                if task == "toy_gen":
                    assert x == y
                else:
                    x, y = (x[0], y[0]) if isinstance(x, (list, tuple)) else (x, y)
                    assert float(x) == pytest.approx(float(y), abs=1e-4)
        for key, value in run1["results"][task].items():
            if isinstance(value, float) and "stderr" not in key:
                assert run5["results"][task][key] == pytest.approx(value, rel=1e-4), (task, key)


def _hand_made_run(model: CausalLM, run_dir: Path) -> Path:
    """A pretrain RUN_DIR as pretrain/train.py leaves it, with a ZeRO-0 checkpoint written by hand."""
    from pretrain.checkpoint import LATEST, tag_of

    run_dir.mkdir(parents=True)
    model.spec.save(run_dir / "spec.yaml")
    (run_dir / "config.yaml").write_text(f"name: tiny\ndata:\n  tokenizer: bytes\n  seq_len: {MAX_LEN}\n")
    ckpt = run_dir / "checkpoints" / tag_of(7)
    ckpt.mkdir(parents=True)
    torch.save({"module": model.state_dict()}, ckpt / "mp_rank_00_model_states.pt")
    files = {f.name: f.stat().st_size for f in ckpt.iterdir()}
    (ckpt / "meta.json").write_text(json.dumps({"step": 7, "tokens": 700, "spec_hash": model.spec.hash(),
                                                "zero_stage": 0, "files": files}))
    (run_dir / "checkpoints" / LATEST).write_text(tag_of(7))
    return run_dir


def test_export_and_run_dir_score_like_the_in_memory_model(tiny, task_dir, run1, tmp_path, monkeypatch):
    from pretrain.export import export_run

    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    run_dir = _hand_made_run(tiny, tmp_path / "run")
    export_run(run_dir, out=tmp_path / "export", hf="no")
    for source in (tmp_path / "export", run_dir):
        loaded = load(source)
        assert loaded.max_length == MAX_LEN and loaded.prefix_id == EOS and loaded.tokenizer.name == "bytes"
        assert loaded.source["step"] == 7
        cfg = LMEvalConfig(model=str(source), tasks=["toy_mc", "toy_ppl"], batch_size=4, device="cpu",
                           include_path=str(task_dir), include_defaults=False, bootstrap_iters=100)
        got = evaluate(cfg, loaded=loaded)["results"]
        for task in ("toy_mc", "toy_ppl"):
            for key, value in run1["results"][task].items():
                if isinstance(value, float):
                    assert got[task][key] == pytest.approx(value, rel=1e-5), (source, task, key)


def test_hf_llama_folder_loads_with_the_same_weights(tmp_path):
    from models.hf import to_hf_llama

    torch.manual_seed(0)
    llama = build_lm(ArchSpec.from_dict({
        "pattern": ["attn", "mlp"], "d_model": 32, "vocab_size": 256, "max_seq_len": MAX_LEN,
        "primitives": {"attn": {"type": "attn", "n_heads": 2}, "mlp": {"type": "mlp", "kind": "swiglu", "hidden": 64}},
        "init_std": 0.3})).eval()
    to_hf_llama(llama).save_pretrained(str(tmp_path / "hf"))
    with pytest.raises(LMEvalError, match="no tokenizer files"):
        load(tmp_path / "hf")
    loaded = load(tmp_path / "hf", tokenizer="bytes")
    assert loaded.source["kind"] == "hf" and loaded.prefix_id == EOS
    ids = torch.tensor([[EOS, *_ids("the cat is red.")]])
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids).logits, llama(ids).logits, atol=1e-5, rtol=1e-5)


def test_cli_writes_results_json_and_markdown(task_dir, tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    ArchSpec.from_dict({**SPEC, "init_std": 0.5}).save(spec)
    out = tmp_path / "out"
    rc = cli_main([str(spec), "--tasks", "toy_mc,toy_ppl", "--include-path", str(task_dir), "--only-local-tasks",
                   "--batch-size", "4", "--device", "cpu", "--name", "rand", "--out", str(out)])
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    assert results["aira"]["name"] == "rand" and results["aira"]["model"]["kind"] == "random-init"
    assert set(results["results"]) == {"toy_mc", "toy_ppl"}
    md = (out / "results.md").read_text()
    acc_norm = results["results"]["toy_mc"]["acc_norm,none"]
    assert f"| toy_mc | 0 | acc_norm * | {acc_norm:.4f} |" in md
    assert "bits_per_byte" in md and "wrote" in capsys.readouterr().out
    # the CLI's random init is seeded: same numbers again
    assert cli_main([str(spec), "--tasks", "toy_mc", "--include-path", str(task_dir), "--only-local-tasks",
                     "--device", "cpu", "--out", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "results.json").read_text())
    assert again["results"]["toy_mc"]["acc_norm,none"] == acc_norm


def test_bad_inputs_name_the_problem(task_dir, tmp_path, capsys):
    assert cli_main(["no-such-preset", "--tasks", "toy_mc", "--include-path", str(task_dir),
                     "--only-local-tasks"]) == 2
    assert "neither a spec file" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(LMEvalError, match="neither an export"):
        load(tmp_path / "empty")
    spec = tmp_path / "s.yaml"
    ArchSpec.from_dict(SPEC).save(spec)
    assert cli_main([str(spec), "--tasks", "toy_nope", "--include-path", str(task_dir), "--only-local-tasks"]) == 2
    assert "unknown lm-eval task(s): toy_nope" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "gone.yaml").write_text((task_dir / "toy_mc.yaml").read_text().replace("toy_mc", "gone"))
    assert cli_main([str(spec), "--tasks", "gone", "--include-path", str(broken), "--only-local-tasks"]) == 2
    assert "could not load a task's data" in capsys.readouterr().err
    with pytest.raises(LMEvalError, match="vocab_size"):
        load(str(spec), tokenizer=str(_tokenizer_json(tmp_path)))


def _tokenizer_json(tmp_path: Path) -> Path:
    from pretrain.tokenizer import train_bpe

    return train_bpe(SENTENCES * 20, 300, tmp_path / "tok")


# ---------------------------------------------------------------------------------------------- compare

def _results_file(path: Path, name: str, scores: dict[str, dict[str, float]]) -> Path:
    path.mkdir(parents=True)
    (path / "results.json").write_text(json.dumps({"results": scores, "aira": {"name": name}}))
    return path / "results.json"


def test_compare_table_math(tmp_path, capsys):
    base = _results_file(tmp_path / "a", "llama", {
        "hellaswag": {"acc,none": 0.30, "acc_norm,none": 0.40}, "arc_easy": {"acc,none": 0.50, "acc_norm,none": 0.1},
        "piqa": {"acc,none": 0.60}})
    new = _results_file(tmp_path / "b", "hybrid", {
        "hellaswag": {"acc,none": 0.31, "acc_norm,none": 0.43}, "arc_easy": {"acc,none": 0.56},
        "boolq": {"acc,none": 0.7}})
    table = compare([read_results(base), read_results(new.parent)], baseline="llama")
    assert table["common_tasks"] == ["hellaswag", "arc_easy"]  # piqa / boolq are missing from one side
    assert table["mean"]["llama"] == pytest.approx((0.40 + 0.50) / 2)  # acc_norm for hellaswag, acc for arc_easy
    assert table["mean"]["hybrid"] == pytest.approx((0.43 + 0.56) / 2)
    assert table["delta_points"]["hybrid"] == pytest.approx(4.5)
    assert table["delta_relative_pct"]["hybrid"] == pytest.approx(100 * 0.045 / 0.45)
    md = markdown(table)
    assert "| hellaswag | acc_norm | 40.00 | 43.00 (+3.00) |" in md
    assert "| **Δ mean vs llama (points)** | | +0.00 | +4.50 |" in md
    assert "| piqa † |" in md and "boolq" in md.split("†")[-1]
    out = tmp_path / "cmp" / "table.md"
    assert cli_main(["compare", str(base), str(new), "--baseline", "hybrid", "--out", str(out)]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["delta_points"]["llama"] == pytest.approx(-4.5)
    assert out.read_text() in capsys.readouterr().out
    assert cli_main(["compare", str(base), "--baseline", "nope"]) == 2
    assert "baseline 'nope' is not one of the results: llama" in capsys.readouterr().err


def test_registered_as_lm_eval_model():
    from lm_eval.api.registry import get_model

    import eval.lm.model as aira_model

    assert get_model("aira") is aira_model.AiraLM
    lm = aira_model.AiraLM.create_from_arg_string("path=llama-proxy,max_length=32", {"batch_size": 2,
                                                                                        "device": "cpu"})
    assert lm.max_length == 32 and lm.batch_size == 2 and lm.tok.name == "bytes"


def test_generation_never_picks_an_id_the_tokenizer_cannot_decode():
    """A model whose vocabulary is larger than its tokenizer's (a preset at random init scored with bytes)."""
    from eval.lm.loading import Loaded
    from eval.lm.model import AiraLM
    from models.lm import build_lm
    from models.spec import ArchSpec
    from pretrain.tokenizer import load_tokenizer

    spec = ArchSpec(pattern=["mlp"], d_model=16, vocab_size=300, max_seq_len=32, tie_embeddings=False)
    model = build_lm(spec)
    with torch.no_grad():  # make the out-of-range ids the most likely ones
        model.head.weight[256:] = 10 * model.head.weight[256:].abs().sum(-1, keepdim=True)
        model.head.weight[:256] *= 0.0
    tok = load_tokenizer("bytes")
    lm = AiraLM(Loaded(model, tok, tok.eos_id, 32), device="cpu")
    text = lm._greedy([(0, tok.encode("ab"), [], 4)])[0]
    assert isinstance(text, str) and len(text.encode()) <= 4
