"""Training stage without TensorFlow: examples per task, weights handling, AUC, task grid, config."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from crowdskin.config import SCHEMA_DIR, section
from crowdskin.train.backbones import BACKBONES
from crowdskin.train.examples import ExamplesError, balanced_class_weights, job_examples
from crowdskin.train.loop import auc
from crowdskin.train.settings import job_settings
from crowdskin.train.splits import make_folds
from crowdskin.train.tasks import Task, input_size, task_grid
from crowdskin.train.weights import WeightsError, resolve_weights

SETTINGS = section("train")
TASKS = {task.name: task for task in task_grid(SETTINGS)}


@pytest.fixture
def data():
    n = 50
    lesions = pd.DataFrame({"image_id": [f"I{i:03d}" for i in range(n)],
                            "abnormal": [int(i % 3 == 0) for i in range(n)], "group_id": pd.NA})
    folds = make_folds(lesions, scheme="kfold", n_folds=5, seed=0)
    targets = pd.DataFrame({
        "image_id": lesions["image_id"], "source": "crowd", "feature": "asymmetry",
        "target": [0.0 if i % 2 == 0 else float(i) for i in range(n)],
        "available": [i % 5 != 0 for i in range(n)],
    })
    pool = lesions["image_id"].iloc[::4]
    crowd = pd.DataFrame({"image_id": pool, "label_majority": pd.array([1 - int(i % 3 == 0) if i % 8 else None
                                                                         for i in range(0, n, 4)], dtype="Int8")})
    return lesions, folds, targets, crowd


def _examples(data, name, fold=0, settings=SETTINGS, **kwargs):
    lesions, folds, targets, crowd = data
    task = {task.name: task for task in task_grid(settings)}[name]
    return job_examples(folds, lesions, task, fold, settings=job_settings(settings, task, "vgg16"), targets=targets,
                        crowd_labels=crowd, **kwargs)


def test_the_pool_shown_to_the_crowd_is_left_out_whether_or_not_it_has_a_label(data):
    """The expert-only tasks leave out the candidate pool as given (every image shown to the crowd),
    not only the images the funnel left a label for: a stricter filter must not add training images.
    Catches: job_examples taking the pool from the crowd labels when a pool is given."""
    from crowdskin.crowd.labels import candidate_pool

    lesions, folds, _, crowd = data
    assignments = pd.DataFrame({"candidate_a_id": ["I001", "I002", None], "candidate_b_id": ["I002", "I003", "I005"]})
    shown = candidate_pool(assignments)
    assert list(shown["image_id"]) == ["I001", "I002", "I003", "I005"]
    pool = pd.concat([crowd[["image_id"]], shown]).drop_duplicates()
    unlabelled_only = set(pool["image_id"]) - set(crowd["image_id"])
    assert unlabelled_only
    for name in ("baseline", "multitask-crowd-asymmetry"):
        examples, notes = _examples(data, name, crowd_pool=pool)
        assert not set(pool["image_id"]) & set(examples.query("split != 'test'")["image_id"]), name
        in_fold = folds.query("fold == 0")["image_id"]
        assert notes.counts["crowd_pool_in_fold"] == int(in_fold.isin(pool["image_id"]).sum())
    # crowdsim-retrain adds the labelled pool images only; the others in the pool have nothing to learn
    retrain, _ = _examples(data, "crowdsim-retrain", crowd_pool=pool)
    assert not unlabelled_only & set(retrain.query("split != 'test'")["image_id"])


def test_test_set_is_the_same_for_every_task(data):
    names = ("baseline", "multitask-crowd-asymmetry", "random", "crowdsim-retrain", "crowdsim-incremental")
    tests = {name: set(_examples(data, name)[0].query("split == 'test'")["image_id"]) for name in names}
    assert len({frozenset(t) for t in tests.values()}) == 1
    _, folds, _, _ = data
    assert tests["baseline"] == set(folds.query("fold == 0 and split == 'test'")["image_id"])


def test_crowd_pool_trains_only_in_crowdsim_tasks(data):
    _, folds, _, crowd = data
    pool = set(crowd["image_id"])
    baseline, notes = _examples(data, "baseline")
    assert not pool & set(baseline.query("split != 'test'")["image_id"])
    assert notes.counts["crowd_pool_left_out_of_train_val"] > 0
    retrain, _ = _examples(data, "crowdsim-retrain")
    crowd_rows = retrain[retrain["label_source"] == "crowd"]
    labelled = crowd.dropna(subset=["label_majority"]).set_index("image_id")["label_majority"]
    train_pool = set(folds.query("fold == 0 and split == 'train'")["image_id"]) & set(labelled.index)
    assert set(crowd_rows["image_id"]) == train_pool
    assert (crowd_rows.set_index("image_id")["label"] == labelled.reindex(crowd_rows["image_id"]).astype(float)).all()
    incremental, notes = _examples(data, "crowdsim-incremental")
    assert set(incremental.query("split == 'train'")["image_id"]) == train_pool
    assert notes.counts["crowd_train_without_crowd_label"] == len(
        set(folds.query("fold == 0 and split == 'train'")["image_id"])
        & set(crowd.loc[crowd["label_majority"].isna(), "image_id"]))


def test_availability_flag_not_the_value_marks_an_annotation(data):
    """The notes count annotated training images, recounted from the folds, pool and targets tables.
    Fails if job_examples keeps crowd-pool images in a multitask training set."""
    examples, notes = _examples(data, "multitask-crowd-asymmetry")
    indexed = examples.set_index("image_id")
    # I000: target 0.0 and available -> counts; I005: flagged unavailable
    zero = indexed.loc[[i for i in indexed.index if int(i[1:]) % 2 == 0 and int(i[1:]) % 5 != 0]]
    assert (zero["target_asymmetry"] == 0.0).all() and zero["available_asymmetry"].all()
    assert not indexed.loc[[i for i in indexed.index if int(i[1:]) % 5 == 0], "available_asymmetry"].any()
    _, folds, targets, crowd = data
    train = set(folds.query("fold == 0 and split == 'train'")["image_id"]) - set(crowd["image_id"])
    annotated = set(targets.query("source == 'crowd' and feature == 'asymmetry' and available")["image_id"])
    assert notes.counts["train_with_annotation"] == len(train & annotated) > 0
    assert notes.counts["n_train"] == len(train)


def test_missing_target_rows_are_unavailable_and_a_flag_without_value_is_an_error(data):
    lesions, folds, targets, crowd = data
    task = TASKS["multitask-crowd-asymmetry"]
    examples, _ = job_examples(folds, lesions, task, 0, targets=targets.iloc[:10])
    without_row = examples[~examples["image_id"].isin(targets["image_id"].iloc[:10])]
    assert len(without_row) and not without_row["available_asymmetry"].any()
    broken = targets.copy()
    broken.loc[1, "target"] = np.nan  # I001: flagged available, no value
    with pytest.raises(ExamplesError, match="I001"):
        job_examples(folds, lesions, task, 0, targets=broken)


def test_random_control_targets_are_uniform_and_available(data):
    examples, _ = _examples(data, "random", seed=3)
    assert examples["available_uniform"].all()
    assert examples["target_uniform"].between(0, 1).all() and examples["target_uniform"].nunique() == len(examples)
    again, _ = _examples(data, "random", seed=3)
    assert np.array_equal(examples["target_uniform"], again["target_uniform"])


def test_balanced_class_weights_match_sklearn():
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.array([0, 0, 0, 1, 0, 1, 0])
    expected = compute_class_weight("balanced", classes=np.array([0, 1]), y=labels)
    assert balanced_class_weights(labels) == pytest.approx({0: expected[0], 1: expected[1]})


def test_auc_equals_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"label": rng.integers(0, 2, 200), "score": rng.integers(0, 10, 200) / 10})
    assert auc(frame) == pytest.approx(roc_auc_score(frame["label"], frame["score"]))
    assert auc(frame.assign(label=1)) is None


def test_missing_imagenet_file_says_which_file_to_put_where(tmp_path):
    with pytest.raises(WeightsError) as error:
        resolve_weights("imagenet", "resnet50", weights_dir=tmp_path)
    message = str(error.value)
    name = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert name in message and str(tmp_path) in message and "never download" in message
    (tmp_path / name).write_bytes(b"h5")
    assert resolve_weights("imagenet", "resnet50", weights_dir=tmp_path) == tmp_path / name
    assert resolve_weights("none", "vgg16") is None
    with pytest.raises(WeightsError, match="does not exist"):
        resolve_weights(str(tmp_path / "nope.h5"), "vgg16")


@pytest.mark.parametrize(("backbone", "url"), [
    ("densenet121", "https://storage.googleapis.com/tensorflow/keras-applications/densenet/"
                    "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    ("efficientnetv2b0", "https://storage.googleapis.com/tensorflow/keras-applications/efficientnet_v2/"
                         "efficientnetv2-b0_notop.h5"),
])
def test_imagenet_weights_of_the_new_backbones_are_the_files_keras_names(tmp_path, backbone, url):
    """The include_top=False file names and URLs as keras.applications (3.15) builds them."""
    name = url.rsplit("/", 1)[1]
    with pytest.raises(WeightsError) as error:
        resolve_weights("imagenet", backbone, weights_dir=tmp_path)
    assert str(tmp_path / name) in str(error.value) and f"(from {url})" in str(error.value)
    (tmp_path / name).write_bytes(b"h5")
    assert resolve_weights("imagenet", backbone, weights_dir=tmp_path) == tmp_path / name


def test_the_schema_accepts_exactly_the_registrys_backbones(monkeypatch):
    """A backbone is one entry of crowdskin.train.backbones.BACKBONES: the schema's three backbone
    lists (the grid, the checks, the per-backbone input sizes) take their names from it. Fails if
    the schema lists names of its own again."""
    from dataclasses import replace

    from crowdskin.config import ConfigError
    from crowdskin.train import backbones

    train = yaml.safe_load((SCHEMA_DIR / "train.schema.yaml").read_text())["properties"]
    for node in (train["backbones"]["items"], train["backbone_checks"]["items"],
                 train["input_size_by_backbone"]["propertyNames"]):
        assert node.get("x-registry") == "backbones" and "enum" not in node
    new = replace(BACKBONES["vgg16"], name="vgg16plus")
    monkeypatch.setitem(backbones.BACKBONES, "vgg16plus", new)
    settings = section("train", {"backbones": ["vgg16plus"], "backbone_checks": ["vgg16plus"],
                                 "input_size_by_backbone": {"vgg16plus": 64}})
    assert input_size(settings, "vgg16plus") == 64
    monkeypatch.delitem(backbones.BACKBONES, "vgg16plus")
    with pytest.raises(ConfigError, match="vgg16plus"):
        section("train", {"backbones": ["vgg16plus"]})
    assert all(name == backbone.name for name, backbone in BACKBONES.items())


def test_an_input_below_a_backbones_minimum_is_refused():
    # The schema's floor is 32 px, so a plain dict reaches below it.
    for backbone in ("densenet121", "efficientnetv2b0"):
        assert input_size({"input_size": 32, "input_size_by_backbone": {}}, backbone) == 32
        with pytest.raises(ValueError, match=f"below {backbone}'s minimum 32"):
            input_size({"input_size": 31, "input_size_by_backbone": {}}, backbone)
    with pytest.raises(ValueError, match="below inceptionv3's minimum 75"):
        input_size(section("train", {"input_size_by_backbone": {"inceptionv3": 74}}), "inceptionv3")


def test_the_registry_and_what_reads_it_at_dag_time_import_no_keras():
    """common.smk imports tasks and weights (and so the registry) while Snakemake builds the DAG."""
    code = ("import sys, crowdskin.train.backbones, crowdskin.train.tasks, crowdskin.train.weights, "
            "crowdskin.train.settings; print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('keras', 'tensorflow', 'jax', 'torch')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_job_stops_at_start_when_imagenet_weights_are_missing(tmp_path):
    from crowdskin.train.job import run_request

    train = section("train", {"weights": "imagenet"})
    request = {"task": "baseline", "backbone": "vgg16", "fold": 0, "seed": 0, "save_model": False,
               "settings": job_settings(train, TASKS["baseline"], "vgg16"), "out_dir": str(tmp_path / "out"),
               "inputs": {"images": str(tmp_path / "absent.parquet")}, "execution": {"weights_dir": str(tmp_path)}}
    with pytest.raises(WeightsError, match="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"):
        run_request(request)


def test_task_grid_has_the_study_grid():
    names = [task.name for task in task_grid(SETTINGS)]
    assert len(names) == 1 + 9 + 1 + 2  # the schema's defaults: the study's grid, no new kind
    assert "multitask-automated-color" in names and names[0] == "baseline"
    assert TASKS["random"] == Task("random", "random", "random", "uniform")
    with pytest.raises(ValueError, match="inceptionv3"):
        input_size(SETTINGS, "inceptionv3")  # default 32 px is below InceptionV3's 75


def test_config_files_validate_and_paper_asks_for_gpus(repo, tmp_path):
    from crowdskin.config import ConfigError, load_config

    # Snakemake layers --configfile on top of config/config.yaml: the tiny defaults must not leak.
    paper_config = load_config(repo / "config/config.yaml", repo / "config/paper.yaml")
    paper, paper_execution = paper_config["train"], paper_config["execution"]["train"]
    assert (paper_execution["gpus"], paper["batch_size"], paper["epochs"], paper["steps_per_epoch"]) == (1, 20, 30, 100)
    assert {input_size(paper, b) for b in paper["backbones"]} == {384}
    assert (paper["weights"], paper["run_eagerly"], paper_execution["warm_worker"]) == ("imagenet", False, False)
    study_augment = {"enabled": True, "rotation_degrees": 360, "width_shift": 0.1, "height_shift": 0.1,
                     "shear_degrees": 0.2, "zoom": 0.2, "channel_shift": 20, "horizontal_flip": True,
                     "vertical_flip": True}
    assert (paper["optimizer"], paper["learning_rate"], paper["deterministic"]) == ("rmsprop", 2e-5, False)
    assert {k: paper["augment"][k] for k in study_augment} == study_augment
    assert (paper["backbones"], paper["backbone_checks"]) == (["vgg16", "resnet50", "inceptionv3"], [])
    no_mirror = tmp_path / "no_mirror.yaml"  # ../shared/data need not exist here
    no_mirror.write_text("mirror: null\n")
    sample = load_config(repo / "config/config.yaml", repo / "config/real-sample.yaml", no_mirror)["train"]
    assert (sample["backbones"], sample["backbone_checks"], sample["optimizer"]) == (paper["backbones"], [], "rmsprop")
    assert {k: sample["augment"][k] for k in study_augment} == study_augment
    # The default trains the small CNN on the full grid and checks every other backbone once; the
    # DVC train stage names each check's target, since its cmd cannot expand a wildcard.
    default = load_config(repo / "config/config.yaml")["train"]
    assert default["weights"] == "none" and default["backbones"] == ["smallcnn"]
    assert sorted(default["backbone_checks"]) == sorted(set(BACKBONES) - {"smallcnn"})
    dvc_cmd = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]["train"]["cmd"]
    dvc_checks = re.findall(r"train/checks/baseline/(\w+)/fold0/metrics.json", dvc_cmd)
    assert sorted(dvc_checks) == sorted(default["backbone_checks"])
    with pytest.raises(ConfigError, match="train.optimizer"):
        section("train", {"optimizer": "adagrad"})


def test_a_jobs_settings_are_the_slice_that_changes_its_result():
    """Adding a multi-task source leaves the baseline's settings alone; the crowd label column reaches only
    the crowdsim jobs; the input size is the backbone's own; no execution setting is in any slice."""
    wider = section("train", {"multitask": {"sources": ["student", "crowd", "automated", "expert"]},
                              "crowdsim": {"label": "label_reliability"},
                              "input_size_by_backbone": {"inceptionv3": 80}})
    wider_tasks = {task.name: task for task in task_grid(wider)}
    assert job_settings(wider, wider_tasks["baseline"], "vgg16") == job_settings(SETTINGS, TASKS["baseline"], "vgg16")
    retrain = job_settings(wider, wider_tasks["crowdsim-retrain"], "vgg16")
    default = job_settings(SETTINGS, TASKS["crowdsim-retrain"], "vgg16")
    assert retrain["crowd_label"] == "label_reliability" != default["crowd_label"]
    assert "crowd_label" not in job_settings(wider, wider_tasks["multitask-expert-border"], "vgg16")
    assert job_settings(wider, wider_tasks["baseline"], "inceptionv3")["input_size"] == 80
    incremental = section("train", {"crowdsim": {"incremental_learning_rate": 1e-3}})
    assert job_settings(incremental, TASKS["crowdsim-incremental"], "vgg16")["learning_rate"] == 1e-3
    assert job_settings(incremental, TASKS["crowdsim-retrain"], "vgg16")["learning_rate"] == SETTINGS["learning_rate"]
    execution_keys = set(section("execution")["train"])
    assert not execution_keys & set(job_settings(SETTINGS, TASKS["crowdsim-incremental"], "resnet50"))


def test_summary_averages_test_auc_over_folds_and_counts_folds_with_an_auc():
    from crowdskin.train.summary import auc_summary, runs_table

    jobs = [{"task": "baseline", "backbone": "vgg16", "fold": k, "test_auc": auc, "warnings": w}
            for k, (auc, w) in enumerate([(0.6, []), (0.8, ["a", "b"]), (None, [])])]
    runs = runs_table(jobs)
    assert runs["warnings"].tolist() == ["", "a; b", ""] and runs["mlflow_run_id"].isna().all()
    summary = auc_summary(runs).iloc[0]
    assert summary["mean_test_auc"] == pytest.approx(0.7) and summary["folds"] == 2
    assert summary["std_test_auc"] == pytest.approx(np.std([0.6, 0.8], ddof=1))


def test_a_checkpoint_survives_any_change_of_execution_settings(tmp_path):
    """The resume fingerprint is the job's science settings, data and split: threads, GPUs, steps
    per call or the warm worker leave it (and so the checkpoint) alone; a science setting or other data does not."""
    from dataclasses import replace

    from crowdskin.train.loop import JobSpec, fingerprint

    examples = pd.DataFrame({"image_id": ["a", "b"], "split": ["train", "test"], "label": [0.0, 1.0], "row": [0, 1]})
    spec = JobSpec(task=TASKS["baseline"], backbone="vgg16", fold=0, settings=job_settings(SETTINGS, TASKS["baseline"],
                   "vgg16"), seed=42, split_hash="abc", out_dir=tmp_path, data_version="v1")
    same = replace(spec, threads=8, steps_per_execution=4,
                   execution_tags={"threads": "8", "warm_worker": "false", "slurm_job_id": "17"})
    assert fingerprint(same, examples) == fingerprint(spec, examples)
    other_rate = replace(spec, settings={**spec.settings, "learning_rate": 1e-3})
    assert fingerprint(other_rate, examples) != fingerprint(spec, examples)
    assert fingerprint(replace(spec, data_version="v2"), examples) != fingerprint(spec, examples)
    assert fingerprint(spec, examples.assign(label=[1.0, 1.0])) != fingerprint(spec, examples)


# --- what a job reads: folds and cache, checked -------------------------------------------------------


def _job_request(tmp_path, folds: pd.DataFrame | None = None) -> dict:
    from crowdskin.train.cache import write_cache

    n = 30
    images = pd.DataFrame({"image_id": [f"J{i:03d}" for i in range(n)], "dataset": "test", "image_path": "x.png",
                           "abnormal": pd.array([i % 3 == 0 for i in range(n)], dtype="Int8"), "group_id": pd.NA})
    images.to_parquet(tmp_path / "images.parquet")
    if folds is None:
        folds = make_folds(images.assign(abnormal=images["abnormal"].astype(int)), scheme="kfold", n_folds=5, seed=0)
    folds.to_parquet(tmp_path / "folds.parquet")
    index = pd.DataFrame({"image_id": images["image_id"], "row": np.arange(n),
                          "reason": pd.array([None] * n, dtype="string")})
    write_cache(np.zeros((n, 8, 8, 3), np.uint8), index, tmp_path / "cache.npy", tmp_path / "cache.parquet",
                labels=images.set_index("image_id")["abnormal"])
    train = section("train", {"weights": "none", "backbones": ["smallcnn"]})
    inputs = {"images": "images.parquet", "folds": "folds.parquet", "cache_array": "cache.npy",
              "cache_index": "cache.parquet", "cache_manifest": "cache.manifest.json"}
    return {"task": "baseline", "backbone": "smallcnn", "fold": 0, "seed": 0, "save_model": False,
            "split_scheme": "kfold", "settings": job_settings(train, TASKS["baseline"], "smallcnn"),
            "out_dir": str(tmp_path / "out"), "inputs": {k: str(tmp_path / v) for k, v in inputs.items()}}


@pytest.fixture
def captured_spec(monkeypatch):
    """run_request up to training: the JobSpec and notes it would train with."""
    from crowdskin.train import job

    seen = {}

    def train_job(spec, examples, notes, cache_array, cache_index, annotators=None):
        seen.update(spec=spec, notes=notes)
        return {"test_auc": 0.5, "mlflow_run_id": "", "mlflow_error": ""}

    monkeypatch.setattr(job, "train_job", train_job)
    return seen


def test_a_job_records_the_split_hash_of_the_folds_it_read_not_the_one_written_in_them(tmp_path, captured_spec):
    from crowdskin.train.job import run_request
    from crowdskin.train.splits import split_hash

    request = _job_request(tmp_path)
    folds = pd.read_parquet(tmp_path / "folds.parquet")
    stale = folds["split_hash"].iloc[0]
    first_train = folds.index[(folds["fold"] == 1) & (folds["split"] == "train")][0]
    folds.loc[first_train, "split"] = "val"  # edited by hand, the old hash kept
    folds.to_parquet(tmp_path / "folds.parquet")
    run_request(request)
    assert captured_spec["spec"].split_hash == split_hash(folds) != stale
    assert any(f"records split_hash {stale} but its assignment hashes to {split_hash(folds)}" in warning
               for warning in captured_spec["notes"].warnings)


def test_a_job_refuses_folds_with_a_lesion_in_train_and_test(tmp_path, captured_spec):
    from crowdskin.train.job import run_request
    from crowdskin.train.splits import SplitError

    request = _job_request(tmp_path)
    folds = pd.read_parquet(tmp_path / "folds.parquet")
    lesion = folds.loc[(folds["fold"] == 0) & (folds["split"] == "test"), "image_id"].iloc[0]
    leaked = pd.concat([folds, folds[(folds["fold"] == 0) & (folds["image_id"] == lesion)].assign(split="train")])
    leaked.to_parquet(tmp_path / "folds.parquet")
    with pytest.raises(SplitError, match=rf"folds file {tmp_path / 'folds.parquet'}: lesion '{lesion}' is in fold 0 "
                                         r"more than once \(splits \['test', 'train'\]\)"):
        run_request(request)
    assert "spec" not in captured_spec


def test_a_job_refuses_a_cache_built_with_another_label(tmp_path, captured_spec):
    from crowdskin.train.cache import CacheError
    from crowdskin.train.job import run_request

    request = _job_request(tmp_path)
    images = pd.read_parquet(tmp_path / "images.parquet")
    images.loc[images["image_id"] == "J004", "abnormal"] = 1  # relabelled after the cache was built
    images.to_parquet(tmp_path / "images.parquet")
    with pytest.raises(CacheError, match=rf"cache {tmp_path / 'cache.npy'} was built with label 0 for lesion 'J004'"):
        run_request(request)


def test_the_explanation_job_refuses_a_cache_built_with_another_label(tmp_path):
    """The explanation stage reads the training cache too; it refuses it as a training job does,
    before any model is loaded. Catches the labels left unchecked there."""
    from crowdskin.explain.job import run_request
    from crowdskin.train.cache import CacheError

    inputs = _job_request(tmp_path)["inputs"]
    images = pd.read_parquet(tmp_path / "images.parquet").assign(mask_path=None)
    images.loc[images["image_id"] == "J004", "abnormal"] = 1  # relabelled after the cache was built
    images.to_parquet(tmp_path / "images.parquet")
    request = {"task": "baseline", "backbone": "smallcnn", "size": 8, "layer": "block3_conv", "threads": 1,
               "inputs": {**inputs, "models": [str(tmp_path / "absent.keras")], "predictions": [str(tmp_path / "p")]},
               "out_dir": str(tmp_path / "explain")}
    with pytest.raises(CacheError, match=rf"cache {tmp_path / 'cache.npy'} was built with label 0 for lesion 'J004'"):
        run_request(request)


@pytest.mark.parametrize(("requested", "steps_per_epoch", "backend", "runs"), [
    (1, 7, "jax", 1), (4, 100, "jax", 4), (8, 100, "tensorflow", 5), (16, 100, "jax", 10),
    (4, 6, "tensorflow", 3), (3, 7, "jax", 1), (50, 10, "jax", 10), (4, 100, "torch", 1),
])
def test_steps_per_call_keep_every_epoch_at_its_steps(requested, steps_per_epoch, backend, runs):
    """Keras runs whole calls: a number of steps per call that does not divide the epoch's steps
    would train more steps than the epoch has; it runs as the largest divisor below it, and a
    reason is given whenever the number run is not the one asked for."""
    from crowdskin.train.loop import steps_per_call

    ran, reason = steps_per_call(requested, steps_per_epoch, backend)
    assert ran == runs and steps_per_epoch % ran == 0
    assert (reason is None) == (ran == requested)
    if backend == "torch":
        assert "torch" in reason


def test_steps_per_call_refuses_less_than_one():
    from crowdskin.train.loop import steps_per_call

    with pytest.raises(ValueError, match="steps_per_execution must be at least 1, not 0"):
        steps_per_call(0, 10, "jax")
