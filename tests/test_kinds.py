"""Task kinds without Keras: the registry, each new kind's examples, and the promise that nothing
outside the kinds compares kind names."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crowdskin.config import section
from crowdskin.train.examples import ExamplesError, balanced_class_weights, job_examples
from crowdskin.train.kinds import kind_of, kind_order, registered_kinds
from crowdskin.train.settings import job_settings
from crowdskin.train.splits import make_folds
from crowdskin.train.tasks import task_grid

REPO = Path(__file__).resolve().parents[1]
TRAIN = section("train", {"multihead": {"sources": ["crowd"]}, "disagreement": {"sources": ["crowd"]},
                          "crowdsim": {"soft": {"enabled": True}}})
TASKS = {task.name: task for task in task_grid(TRAIN)}
FEATURES = ("asymmetry", "border", "color")


@pytest.fixture
def data():
    """50 lesions; crowd targets for each feature where i % 5 != 0, a spread where also i % 3 != 0
    (one annotator elsewhere), 0.0 as a real target on every even lesion; a crowd pool of every
    fourth lesion with votes, one of them tied."""
    n = 50
    ids = [f"I{i:03d}" for i in range(n)]
    lesions = pd.DataFrame({"image_id": ids, "abnormal": [int(i % 3 == 0) for i in range(n)], "group_id": pd.NA})
    folds = make_folds(lesions, scheme="kfold", n_folds=5, seed=0)
    rows = []
    for k, feature in enumerate(FEATURES):
        for i in range(n):
            available = i % 5 != 0
            rows.append({"image_id": ids[i], "source": "crowd", "feature": feature,
                         "target": (0.0 if i % 2 == 0 else float(i + k)) if available else np.nan,
                         "available": available,
                         "std": 0.1 * i + k if available and i % 3 != 0 else np.nan})
    targets = pd.DataFrame(rows)
    pool = [i for i in range(0, n, 4)]
    votes = [(3, 2), (4, 0), (2, 1), (4, 2)]  # (n_votes, votes_abnormal); (4, 2) is a tie
    crowd = pd.DataFrame({
        "image_id": [ids[i] for i in pool],
        "n_votes": [votes[j % 4][0] for j in range(len(pool))],
        "votes_abnormal": [votes[j % 4][1] for j in range(len(pool))],
        "label_majority": pd.array([1, 0, 1, None] * 4, dtype="Int8")[: len(pool)],
        "p_abnormal": np.linspace(0.05, 0.95, len(pool)),
    })
    return lesions, folds, targets, crowd


def _examples(data, name, train=TRAIN, fold=0):
    lesions, folds, targets, crowd = data
    task = {task.name: task for task in task_grid(train)}[name]
    return job_examples(folds, lesions, task, fold, settings=job_settings(train, task, "vgg16"), targets=targets,
                        crowd_labels=crowd)


def test_every_kind_is_registered_once_in_table_order():
    names = [kind.name for kind in registered_kinds()]
    assert names == ["baseline", "multitask", "multihead", "disagreement", "annotators", "annotators-expertise",
                     "random", "crowdsim-retrain", "crowdsim-soft", "crowdsim-incremental", "crowdsim-annotators",
                     "crowdsim-annotators-expertise"]
    order = kind_order()
    assert order["multitask"] < order["ensemble"] < order["random"]
    with pytest.raises(KeyError, match="known kinds"):
        kind_of("multitask2")


def test_multihead_learns_every_feature_of_its_source_with_a_real_zero_counted(data):
    examples, notes = _examples(data, "multihead-crowd")
    assert kind_of("multihead").heads(TASKS["multihead-crowd"]) == FEATURES
    _, _, targets, _ = data
    for feature in FEATURES:
        expected = targets[targets["feature"] == feature].set_index("image_id")
        got = examples.set_index("image_id")
        assert (got[f"available_{feature}"] == expected.loc[got.index, "available"]).all()
        on = got[got[f"available_{feature}"]]
        assert np.array_equal(on[f"target_{feature}"], expected.loc[on.index, "target"])
        assert (on[f"target_{feature}"] == 0.0).any()  # a real 0 is a target, not a missing one
        assert notes.counts[f"train_with_{feature}"] > 0


def test_disagreement_heads_are_consensus_and_spread_where_two_annotators_scored(data):
    examples, _ = _examples(data, "disagreement-crowd")
    heads = kind_of("disagreement").heads(TASKS["disagreement-crowd"])
    assert heads == ("asymmetry", "asymmetry_std", "border", "border_std", "color", "color_std")
    _, _, targets, _ = data
    border = targets[targets["feature"] == "border"].set_index("image_id")
    got = examples.set_index("image_id")
    spread = got[got["available_border_std"]]
    assert np.allclose(spread["target_border_std"], border.loc[spread.index, "std"])
    # a spread exists only with a consensus and two annotators; elsewhere it is out of the loss
    assert not (got["available_border_std"] & ~got["available_border"]).any()
    assert set(got.index[~got["available_border_std"] & got["available_border"]]) == {
        i for i in got.index if int(i[1:]) % 3 == 0 and int(i[1:]) % 5 != 0}
    assert (got.loc[~got["available_border_std"], "target_border_std"] == 0.0).all()


def test_crowdsim_soft_trains_on_the_vote_share_and_keeps_the_ties(data):
    """Fails if the soft label is rounded, or taken from the majority column (which drops ties)."""
    soft, notes = _examples(data, "crowdsim-soft")
    hard, _ = _examples(data, "crowdsim-retrain")
    _, _, _, crowd = data
    crowd_rows = soft[soft["label_source"] == "crowd"].set_index("image_id")
    share = (crowd["votes_abnormal"] / crowd["n_votes"]).set_axis(crowd["image_id"])
    assert np.allclose(crowd_rows["label"], share.loc[crowd_rows.index])
    assert (crowd_rows["label"] == 0.5).any()  # the tied images train here ...
    assert len(crowd_rows) > (hard["label_source"] == "crowd").sum()  # ... and not with hard labels
    assert set(soft.query("split == 'test'")["image_id"]) == set(hard.query("split == 'test'")["image_id"])
    assert notes.counts["crowd_train"] == len(crowd_rows)
    posterior_train = section("train", {"crowdsim": {"soft": {"enabled": True, "label": "posterior"}}})
    posterior, _ = _examples(data, "crowdsim-soft", train=posterior_train)
    rows = posterior[posterior["label_source"] == "crowd"].set_index("image_id")
    assert np.allclose(rows["label"], crowd.set_index("image_id").loc[rows.index, "p_abnormal"])
    # class weights count a soft label by its side of 0.5
    assert balanced_class_weights(np.array([0.2, 0.7, 1.0, 0.0])) == {0: 1.0, 1: 1.0}


def test_a_kind_reads_only_its_settings():
    """The soft label setting reaches crowdsim-soft alone; the loss weights only models with heads."""
    changed = section("train", {**TRAIN, "crowdsim": {**TRAIN["crowdsim"], "soft": {"enabled": True,
                                                                                    "label": "posterior"}}})
    for name, task in TASKS.items():
        before, after = job_settings(TRAIN, task, "vgg16"), job_settings(changed, task, "vgg16")
        assert (before != after) == (name == "crowdsim-soft"), name
        assert ("loss_weights" in before) == bool(kind_of(task.kind).heads(task)), name


def test_missing_targets_or_soft_label_columns_are_named(data):
    lesions, folds, targets, crowd = data
    task = TASKS["disagreement-crowd"]
    with pytest.raises(ExamplesError, match="std"):
        job_examples(folds, lesions, task, 0, settings=job_settings(TRAIN, task, "vgg16"),
                     targets=targets.drop(columns="std"))
    task = TASKS["crowdsim-soft"]
    with pytest.raises(ExamplesError, match="votes_abnormal"):
        job_examples(folds, lesions, task, 0, settings=job_settings(TRAIN, task, "vgg16"),
                     crowd_labels=crowd.drop(columns="votes_abnormal"))


def test_no_code_outside_the_kinds_compares_kind_names():
    """Fails when a rule, script or module outside crowdskin/train/kinds/ branches on a task kind's
    name (`kind == "multitask"`, `kind.startswith("crowdsim")`, `kind in ("multitask", ...)`)."""
    names = "|".join(re.escape(kind.name) for kind in registered_kinds())
    comparison = re.compile(rf"""kind\w*\s*(==|!=|\bin\b)\s*[(\[{{]?\s*["']({names})["']|kind\w*\.startswith""")
    sources = [*REPO.glob("src/crowdskin/**/*.py"), *REPO.glob("workflow/**/*.smk"), *REPO.glob("workflow/**/*.py")]
    offending = [f"{path.relative_to(REPO)}:{n}" for path in sources if "kinds" not in path.parts
                 for n, line in enumerate(path.read_text().splitlines(), 1) if comparison.search(line)]
    assert len(sources) > 40 and offending == []
    assert comparison.search('if task.kind == "crowdsim-incremental":')  # what it looks for
    assert comparison.search('return self.kind.startswith("crowdsim")')


def test_new_kinds_are_ensembled_over_backbones_and_compared_with_what_they_name():
    """With two backbones every new task gets its average over the backbones; the source ensembles
    keep ENHANCE's single-feature models only; each new kind's comparisons are planned."""
    from crowdskin.evaluate.ensemble import extra_comparisons, plan_ensembles

    tasks = task_grid(TRAIN)
    plan = {e.name: e for e in plan_ensembles(tasks, ["vgg16", "resnet50"], section("evaluate"))}
    for name in ("multihead-crowd", "disagreement-crowd", "crowdsim-soft"):
        assert plan[name].members == (name,) and plan[name].backbones == ("all",)
    assert plan["ensemble-crowd"].members == ("multitask-crowd-asymmetry", "multitask-crowd-border",
                                              "multitask-crowd-color")
    pairs = extra_comparisons(tasks, list(plan.values()))
    assert {("multihead-crowd", "ensemble-crowd"), ("disagreement-crowd", "multihead-crowd"),
            ("crowdsim-soft", "crowdsim-retrain"), ("crowdsim-retrain", "crowdsim-incremental")} <= set(pairs)
    # a reference the grid lacks is no comparison
    assert ("multihead-crowd", "ensemble-crowd") not in extra_comparisons(tasks, [])


def test_a_plugin_kinds_jobs_import_its_module(tmp_path, monkeypatch):
    """A kind registered by a `train.plugins` module joins the grid, and its jobs' settings name the
    module, so that a job process (or the warm worker) imports it before asking for the kind."""
    from crowdskin.train.kinds import base

    (tmp_path / "my_kinds.py").write_text(
        "from crowdskin.train.kinds import TaskKind, register\n"
        "from crowdskin.train.tasks import Task\n\n\n"
        "@register\n"
        "class Mine(TaskKind):\n"
        "    name = 'mine'\n"
        "    order = 36\n\n"
        "    @classmethod\n"
        "    def tasks(cls, train):\n"
        "        return [Task('mine', cls.name)]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(base, "_KINDS", dict(base._KINDS))  # the registry as it was, after the test
    train = section("train", {"plugins": ["my_kinds"]})
    mine = [task for task in task_grid(train) if task.kind == "mine"]
    assert [task.name for task in mine] == ["mine"]
    assert job_settings(train, mine[0], "vgg16")["kind_module"] == "my_kinds"
    assert "kind_module" not in job_settings(train, TASKS["baseline"], "vgg16")
    with pytest.raises(ImportError, match="train.plugins names 'no_such_module'"):
        task_grid(section("train", {"plugins": ["no_such_module"]}))
