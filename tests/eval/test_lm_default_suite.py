"""The default suites' real lm-eval task definitions, run offline on a few rows in each dataset's hub schema.

Each task is lm-eval's own YAML (prompt, choices, target, process_docs, metrics) pulled in with `include:` by
eval.lm.tasks.local_task_yaml; only the data source changes (local JSON lines instead of the hub). The model
is the llama-proxy preset at random init, so the scores are near chance, but they are still exact: arc_easy
and winogrande accuracies are recomputed here from the model's logits without lm-eval.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from eval.lm.errors import LMEvalError
from eval.lm.loading import Loaded, load
from eval.lm.run import LMEvalConfig, evaluate
from eval.lm.tasks import (
    DEFAULT_TASKS,
    INSTALLED_YAML,
    PRIMARY_METRIC,
    SUITES,
    installed_yaml,
    local_task_yaml,
    parse_tasks,
    primary_metric,
    scored_split,
    task_splits,
)

ALL_TASKS = sorted({t for s in SUITES.values() for t in s.tasks})


def _arc(q: str, texts: list[str], labels: str, key: str) -> dict:
    return {"id": q[:8], "question": q, "choices": {"text": texts, "label": list(labels)}, "answerKey": key}


def _swag(label: str, ctx_a: str, ctx_b: str, endings: list[str], gold: int) -> dict:
    return {"ind": gold, "activity_label": label, "ctx_a": ctx_a, "ctx_b": ctx_b, "ctx": f"{ctx_a} {ctx_b}",
            "endings": endings, "source_id": "x", "split": "val", "split_type": "indomain", "label": str(gold)}


def _sciq(q: str, wrong: list[str], right: str, support: str) -> dict:
    return {"question": q, "distractor1": wrong[0], "distractor2": wrong[1], "distractor3": wrong[2],
            "correct_answer": right, "support": support}


def _obqa(q: str, texts: list[str], key: str) -> dict:
    return {"id": q[:8], "question_stem": q, "choices": {"text": texts, "label": list("ABCD")}, "answerKey": key}


# A handful of rows per task, in the field names of the hub dataset its YAML points at.
ROWS = {
    "arc_easy": [
        _arc("Which of these is hot?", ["ice", "fire", "snow"], "ABC", "B"),
        _arc("What do plants need to grow?", ["sunlight", "plastic", "metal", "glass"], "1234", "1"),
        _arc("Which animal can fly?", ["a cat", "a fish", "a bird", "a dog"], "ABCD", "C"),
        _arc("What is frozen water called?", ["steam", "ice", "sand", "air"], "ABCD", "B"),
    ],
    "arc_challenge": [
        _arc("Which force pulls objects toward Earth?", ["gravity", "friction", "magnetism", "light"], "ABCD", "A"),
        _arc("What gas do plants take in?", ["oxygen", "helium", "carbon dioxide", "neon"], "ABCD", "C"),
        _arc("Which is a mammal?", ["shark", "whale", "trout"], "123", "2"),
    ],
    "hellaswag": [
        _swag("Cooking", "A man cuts onions on a board.", "he", ["starts to cry.", "flies [title] away.",
                                                                   "sings a song.", "runs to the car."], 0),
        _swag("Sports", "A girl kicks a ball.", "the ball", ["eats lunch.", "rolls into the goal.",
                                                            "reads a book.", "turns blue."], 1),
        _swag("Home", "A woman opens the fridge.", "she", ["takes out the milk.", "drives away.",
                                                          "swims.", "climbs a tree."], 0),
    ],
    "piqa": [
        {"goal": "To boil water,", "sol1": "put it in a pot on the stove.", "sol2": "put it in the freezer.",
         "label": 0},
        {"goal": "To dry wet hands,", "sol1": "dip them in water.", "sol2": "use a towel.", "label": 1},
        {"goal": "To see in the dark,", "sol1": "turn on a lamp.", "sol2": "close your eyes.", "label": 0},
    ],
    "sciq": [
        _sciq("What is the center of an atom called?", ["electron", "shell", "orbit"], "nucleus",
              " Atoms have a small dense center called the nucleus."),
        _sciq("Which planet is closest to the sun?", ["Mars", "Venus", "Earth"], "Mercury",
              "Mercury orbits nearest to the sun."),
        _sciq("What do bees make?", ["milk", "silk", "wax paper"], "honey", ""),
    ],
    "winogrande": [
        {"sentence": "The trophy did not fit in the case because the _ was too big.", "option1": "trophy",
         "option2": "case", "answer": "1"},
        {"sentence": "Anna gave Beth a gift because _ was having a birthday.", "option1": "Anna",
         "option2": "Beth", "answer": "2"},
        {"sentence": "The cup fell off the table because the _ was slanted.", "option1": "cup",
         "option2": "table", "answer": "2"},
    ],
    "boolq": [
        {"question": "is the sun a star", "passage": "The Sun is the star at the center of the Solar System.",
         "idx": 0, "label": 1},
        {"question": "do fish live on land", "passage": "Fish are animals that live in water.", "idx": 1,
         "label": 0},
        {"question": "is ice cold", "passage": "Ice is frozen water and feels cold.", "idx": 2, "label": 1},
    ],
    "lambada_openai": [
        {"text": "She opened the door and let the cat out of the house"},
        {"text": "He poured the milk into a glass and drank the milk"},
        {"text": "The children ran to the park to play on the swings"},
    ],
    "openbookqa": [
        _obqa("The sun is a source of", ["light", "rain", "snow", "rocks"], "A"),
        _obqa("A magnet attracts", ["wood", "glass", "iron", "paper"], "C"),
        _obqa("Plants make food using", ["sound", "sunlight", "wind", "sand"], "B"),
    ],
}


def _have_lm_eval_tasks() -> bool:
    try:
        import lm_eval
    except ImportError:
        return False
    root = Path(lm_eval.__file__).parent / "tasks"
    return all((root / rel).is_file() for rel in INSTALLED_YAML.values())


needs_task_files = pytest.mark.skipif(not _have_lm_eval_tasks(), reason="lm-eval's installed task YAMLs "
                                      "(lm_eval/tasks/arc, hellaswag, ...) are missing; nothing to run")


def test_every_suite_task_has_rows_and_a_primary_metric():
    assert set(ROWS) == set(ALL_TASKS)
    assert set(PRIMARY_METRIC) >= set(ALL_TASKS)
    assert parse_tasks(None) == DEFAULT_TASKS == list(SUITES["composer"].tasks)
    assert parse_tasks("", "small-8") == list(SUITES["small-8"].tasks)
    assert parse_tasks("piqa, boolq", "small-8") == ["piqa", "boolq"]
    with pytest.raises(LMEvalError, match="unknown suite 'nope'; suites: composer, small-8"):
        parse_tasks(None, "nope")


@pytest.fixture(scope="module")
def local_tasks(tmp_path_factory) -> Path:
    """DIR/<task>.yaml for every suite task, each reading ROWS[task] from DIR/<task>.jsonl."""
    if not _have_lm_eval_tasks():
        pytest.skip("lm-eval's installed task YAMLs are missing")
    root = tmp_path_factory.mktemp("suite_tasks")
    for task, rows in ROWS.items():
        data = root / f"{task}.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        split = scored_split(task_splits(task))
        (root / f"{task}.yaml").write_text(local_task_yaml(task, {split: data}, cache_dir=root / "hf-cache"))
    return root


@pytest.fixture(scope="module")
def proxy() -> Loaded:
    return load("llama-proxy", seed=0)


@pytest.fixture(scope="module")
def suite_run(local_tasks, proxy) -> dict:
    cfg = LMEvalConfig(model="llama-proxy", tasks=ALL_TASKS, batch_size=8, device="cpu", num_fewshot=0,
                       include_path=str(local_tasks), include_defaults=False, log_samples=True,
                       bootstrap_iters=10)
    return evaluate(cfg, loaded=proxy)


@needs_task_files
def test_every_suite_task_runs_and_reports_its_primary_metric(suite_run):
    results = suite_run["results"]
    assert sorted(results) == ALL_TASKS
    for task in ALL_TASKS:
        found = primary_metric(task, results[task])
        assert found is not None, f"{task}: no {PRIMARY_METRIC[task]} in {results[task]}"
        key, value, _ = found
        assert key == f"{PRIMARY_METRIC[task]},none"
        assert 0.0 <= value <= 1.0
        assert results[task]["sample_len"] == len(ROWS[task])  # our rows, every one of them
        assert suite_run["aira"]["primary"][task]["metric"] == key
    assert 0.0 <= suite_run["aira"]["mean_primary"] <= 1.0
    assert results["lambada_openai"]["perplexity,none"] > 1.0  # a real loglikelihood task, not multiple choice
    # The real definitions were used: lm-eval's own prompts and configs came through `include:`.
    configs = suite_run["configs"]
    assert configs["arc_easy"]["doc_to_text"] == "Question: {{question}}\nAnswer:"
    assert configs["hellaswag"]["dataset_path"] == "json" and "process_docs" in configs["hellaswag"]
    assert configs["boolq"]["doc_to_choice"] == ["no", "yes"]


def _loglik(model: torch.nn.Module, prefix: int, context: str, continuation: str) -> float:
    """Sum of log-probabilities (nats) of continuation's bytes after [prefix] + context, one full forward."""
    ctx, cont = list(context.encode()), list(continuation.encode())
    ids = torch.tensor([[prefix, *ctx, *cont]])
    with torch.no_grad():
        logp = F.log_softmax(model(ids[:, :-1]).logits.float(), dim=-1)[0]
    n = ids.shape[1] - 1
    targets = ids[0, n - len(cont) + 1:]
    return float(logp[n - len(cont):].gather(-1, targets[:, None]).sum())


def _accuracies(lls: list[list[float]], choices: list[list[str]], gold: list[int]) -> tuple[float, float]:
    acc = [max(range(len(ll)), key=ll.__getitem__) == g for ll, g in zip(lls, gold, strict=True)]
    norm = [max(range(len(ll)), key=lambda i, ll=ll, ch=ch: ll[i] / len(ch[i])) == g
            for ll, ch, g in zip(lls, choices, gold, strict=True)]
    return sum(acc) / len(acc), sum(norm) / len(norm)


@needs_task_files
def test_arc_easy_accuracy_equals_an_independent_computation(suite_run, proxy):
    """arc_easy: context 'Question: q\\nAnswer:', continuation ' ' + choice (lm-eval's target delimiter)."""
    lls, choices, gold = [], [], []
    for doc in ROWS["arc_easy"]:
        texts = doc["choices"]["text"]
        lls.append([_loglik(proxy.model, proxy.prefix_id, f"Question: {doc['question']}\nAnswer:", " " + t)
                    for t in texts])
        choices.append(texts)
        gold.append(doc["choices"]["label"].index(doc["answerKey"]))
    assert all(len(set(ll)) == len(ll) for ll in lls)  # no ties, so argmax is well defined
    # Per choice: the harness's log-likelihoods are the ones computed here (samples keep the doc order).
    samples = sorted(suite_run["samples"]["arc_easy"], key=lambda s: s["doc_id"])
    harness = [[float(r[0][0]) for r in s["resps"]] for s in samples]
    assert [s["doc"]["question"] for s in samples] == [d["question"] for d in ROWS["arc_easy"]]
    for mine, theirs in zip(lls, harness, strict=True):
        assert theirs == pytest.approx(mine, rel=1e-5, abs=1e-4)
    acc, acc_norm = _accuracies(lls, choices, gold)
    scores = suite_run["results"]["arc_easy"]
    assert scores["acc,none"] == pytest.approx(acc)
    assert scores["acc_norm,none"] == pytest.approx(acc_norm)


@needs_task_files
def test_winogrande_accuracy_equals_an_independent_computation(suite_run, proxy):
    """winogrande varies the context per choice (sentence up to the blank + option) and scores the rest."""
    lls, gold = [], []
    for doc in ROWS["winogrande"]:
        cut = doc["sentence"].index("_")
        rest = " " + doc["sentence"][cut + 1:].strip()
        lls.append([_loglik(proxy.model, proxy.prefix_id, doc["sentence"][:cut] + opt, rest)
                    for opt in (doc["option1"], doc["option2"])])
        gold.append(int(doc["answer"]) - 1)
    acc, _ = _accuracies(lls, [["x", "x"]] * len(lls), gold)
    assert suite_run["results"]["winogrande"]["acc,none"] == pytest.approx(acc)


@needs_task_files
def test_local_task_yaml_refuses_data_without_the_scored_split(tmp_path):
    assert installed_yaml("arc_challenge").name == "arc_challenge.yaml"
    assert scored_split(task_splits("arc_challenge")) == "test"  # via include: of arc_easy.yaml
    assert scored_split(task_splits("hellaswag")) == "validation"
    with pytest.raises(LMEvalError, match="hellaswag scores its 'validation' split: data_files needs"):
        local_task_yaml("hellaswag", {"test": tmp_path / "x.jsonl"})
    with pytest.raises(LMEvalError, match="piqa has no split\\(s\\) dev; its splits: train, validation"):
        local_task_yaml("piqa", {"validation": tmp_path / "x.jsonl", "dev": tmp_path / "y.jsonl"})
    with pytest.raises(LMEvalError, match="no YAML for task 'no_such_task_xyz'"):
        installed_yaml("no_such_task_xyz")


@needs_task_files
def test_hub_data_that_cannot_be_loaded_names_the_task_and_the_local_way(tmp_path, proxy, monkeypatch):
    """The real arc_easy (its hub dataset) with the hub switched off: the error says what to do instead."""
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    (tmp_path / "arc_easy.yaml").write_text(f"include: {installed_yaml('arc_easy')}\ntask: arc_easy\n")
    cfg = LMEvalConfig(model="llama-proxy", tasks=["arc_easy"], device="cpu", include_path=str(tmp_path),
                       include_defaults=False)
    with pytest.raises(LMEvalError) as err:
        evaluate(cfg, loaded=proxy)
    text = str(err.value)
    assert "could not load a task's data: arc_easy (dataset allenai/ai2_arc)" in text
    assert "HF_DATASETS_CACHE" in text and "local_task_yaml('arc_easy'" in text
    assert "--include-path DIR --only-local-tasks" in text
