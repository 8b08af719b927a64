"""The configurable setting: a candidate's RECIPE is read without running it, bounded, and applied to its run only."""

import random

import pytest

from agents.journal import Node
from agents.policies import Action
from design import recipe, templates
from design.search import DesignTask

BOUNDS = {"lr": [1e-4, 1e-2], "steps": [10, 400], "n_layers": [1, 3]}
CHILD = {"task": "listops", "seq_len": 64, "train_budget_s": 60,
         "skeleton": {"n_layers": 1, "d_model": 32, "mlp_hidden": 64, "pooling": "mean"},
         "train": {"steps": 300, "batch_size": 32, "lr": 3e-3, "warmup": 30, "weight_decay": 0.01, "seed": 0}}


def _source(recipe_line: str = "") -> str:
    return templates.render("linear", templates.complete("linear")) + recipe_line


def test_recipe_is_read_as_a_literal_and_applied_to_that_candidate_only():
    task = DesignTask(CHILD, {}, configurable=BOUNDS)
    prop = task.check(_source('\nRECIPE = {"lr": 0.001, "steps": 50, "n_layers": 2}\n'), {})
    assert not prop.error
    payload = task.job_payload(Node("draft", "a", prop.payload))["child"]
    assert payload["train"]["lr"] == 0.001 and payload["train"]["steps"] == 50
    assert payload["skeleton"]["n_layers"] == 2 and isinstance(payload["skeleton"]["n_layers"], int)
    assert CHILD["train"]["lr"] == 3e-3 and CHILD["skeleton"]["n_layers"] == 1  # the fixed recipe is untouched


@pytest.mark.parametrize("line, message", [
    ('RECIPE = {"lr": 0.5}', "outside [0.0001, 0.01]"),
    ('RECIPE = {"batch_size": 64}', "RECIPE['batch_size']: not open in this task"),
    ('RECIPE = {"n_layers": 1.5}', "must be an integer"),
    ('RECIPE = {"lr": float("1e-3")}', "literal dict"),
    ('RECIPE = [1, 2]', "must be a dict"),
])
def test_a_recipe_out_of_bounds_or_not_literal_is_an_invalid_proposal_naming_the_knob(line, message):
    prop = DesignTask(CHILD, {}, configurable=BOUNDS).check(_source("\n" + line + "\n"), {})
    assert prop.error.startswith("[recipe]") and message in prop.error
    assert prop.key is None  # never evaluated


def test_a_fixed_recipe_task_refuses_a_recipe():
    prop = DesignTask(CHILD, {}).check(_source('\nRECIPE = {"lr": 0.001}\n'), {})
    assert "fixes the training recipe" in prop.error


def test_config_bounds_are_checked():
    assert recipe.check_bounds(BOUNDS) == []
    problems = recipe.check_bounds({"dropout": [0, 1], "lr": [0, 1], "steps": [5, 2]})
    assert any("unknown knob 'dropout'" in p for p in problems)
    assert any("configurable.lr: the low bound must be > 0" in p for p in problems)
    assert any("configurable.steps must be [low, high]" in p for p in problems)


def test_builtin_operators_change_the_recipe_within_bounds_and_keep_it_across_generations():
    task = DesignTask(CHILD, {}, configurable=BOUNDS)
    rng = random.Random(0)
    draft = task.propose(Action("draft"), rng)
    assert draft.payload["recipe"] == {"lr": 3e-3, "steps": 300, "n_layers": 1}  # the fixed recipe's values
    node = Node("draft", "a", draft.payload)
    seen = set()
    for _ in range(30):
        prop = task.propose(Action("improve", [node]), rng)
        assert not prop.error, prop.error
        r = prop.payload["recipe"]
        assert recipe.check_recipe(r, BOUNDS) == []
        seen.add(tuple(sorted(r.items())) != tuple(sorted(draft.payload["recipe"].items())))
        node = Node("improve", "a", prop.payload)
    assert seen == {True, False}  # some improvements move the recipe, others only the mechanism


def test_a_configurable_run_trains_each_candidate_with_its_own_recipe(tmp_path):
    from pathlib import Path

    from agents.journal import Journal
    from design.cli import main

    smoke = Path(__file__).resolve().parents[2] / "configs/design/smoke.yaml"
    run_dir = tmp_path / "run"
    # Open only `steps`, with bounds below the fixed 300: every candidate must train its RECIPE's count.
    assert main(["run", str(smoke), f"run_dir={run_dir}", "search.max_evals=3", "configurable.steps=[20,60]",
                 "lra.data.num_train=300", "lra.data.num_val=100", "lra.data.num_test=100"]) == 0
    with Journal(run_dir / "journal.db") as j:
        done = j.nodes("done")
        assert len(done) == 3
        for n in done:
            assert 20 <= n.payload["recipe"]["steps"] <= 60
            assert "RECIPE = " in n.payload["source"]
            assert n.metrics["steps"] == n.payload["recipe"]["steps"]


def test_every_shipped_design_config_loads_and_its_bounds_hold_the_fixed_recipe():
    """Paper configs need data and an endpoint to run, but they must parse and check here."""
    from pathlib import Path

    import yaml

    from aira.config import load_config
    from design.config import DesignConfig

    configs = [p for p in sorted((Path(__file__).resolve().parents[2] / "configs/design").glob("*.yaml"))
               if yaml.safe_load(p.read_text()).get("task") != "script"]  # part 2's configs are ScriptConfigs
    assert any("configurable" in p.name for p in configs)
    for path in configs:
        cfg = load_config(DesignConfig, path, [])
        cfg.lra.data.root = cfg.lra.data.root or "/nonexistent"  # resolve() checks names, not files
        cfg.check()
        t = cfg.lra.train
        fixed = {"lr": t.lr, "weight_decay": t.weight_decay, "warmup": t.warmup_steps, "batch_size": t.batch_size,
                 "steps": t.max_steps, "n_layers": cfg.lra.model.n_layers}
        for knob, (low, high) in cfg.configurable.items():
            assert low <= fixed[knob] <= high, f"{path.name}: the fixed {knob} {fixed[knob]} is outside its bounds"
