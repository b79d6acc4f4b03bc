"""Direct tests of train/cache.py (resizing, unreadable images, the written cache), crowd/io.py
(read_annotations) and train/runtime.py (thread pools, precision, strategy: with stand-in
`tensorflow`/`keras` modules, so TensorFlow is never imported here)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pandera.errors
import pytest
from PIL import Image

from crowdskin.crowd.io import read_annotations
from crowdskin.tables import ANNOTATIONS
from crowdskin.train import runtime
from crowdskin.train.cache import (
    CacheError,
    CacheSpaceError,
    build_image_cache,
    load_resized,
    manifest_path,
    read_cache,
    write_cache,
)

# --- train/cache.py -----------------------------------------------------------------------------

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def solid(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (48, 40), **save) -> Path:
    Image.new("RGB", size, colour).save(path, **save)
    return path


@pytest.fixture
def mixed(tmp_path: Path) -> tuple[pd.DataFrame, Path]:
    """Five images: red, missing, corrupt, green (smaller than the cache size), blue."""
    solid(tmp_path / "a.png", RED)
    (tmp_path / "c.jpg").write_bytes(b"not an image at all")
    solid(tmp_path / "d.png", GREEN, size=(8, 6))
    solid(tmp_path / "e.png", BLUE)
    images = pd.DataFrame({"image_id": ["A", "B", "C", "D", "E"],
                           "image_path": ["a.png", "b.png", "c.jpg", "d.png", "e.png"]})
    return images, tmp_path


def test_unreadable_images_get_row_minus_one_and_a_reason(mixed):
    """Break: `rows.append(-1)` -> `rows.append(next_row)` (a broken image points at a real row)."""
    images, root = mixed
    array, index = build_image_cache(images, 16, root=root)
    assert array.shape == (3, 16, 16, 3) and array.dtype == np.uint8  # readable images only
    assert list(index.columns) == ["image_id", "row", "reason"]
    assert index["image_id"].tolist() == ["A", "B", "C", "D", "E"]  # every image reported, in input order
    assert index["row"].tolist() == [0, -1, -1, 1, 2]
    missing, corrupt = root / "b.png", root / "c.jpg"
    assert index["reason"].tolist()[1:3] == [
        f"cannot read image {missing}: cannot read (No such file or directory)",
        f"cannot read image {corrupt}: not a decodable image "
        f"(UnidentifiedImageError: cannot identify image file '{corrupt}')",
    ]
    assert index["reason"].isna().tolist() == [True, False, False, True, True]


def test_readable_images_land_in_their_rows_with_their_colour(mixed):
    """Break: `rows.append(next_row)` -> `rows.append(len(rows))` (rows counted over unreadable images)."""
    images, root = mixed
    array, index = build_image_cache(images, 16, root=root)
    rows = dict(zip(index["image_id"], index["row"], strict=True))
    for image_id, colour in (("A", RED), ("D", GREEN), ("E", BLUE)):  # D is upscaled from 8 x 6
        assert (array[rows[image_id]] == colour).all(), image_id


def test_threads_do_not_change_the_cache(mixed):
    """Break: `list(pool.map(read, paths))` -> `[f.result() for f in as_completed(...)]` (completion order)."""
    images, root = mixed
    images = pd.concat([images] * 4, ignore_index=True).assign(image_id=lambda d: [f"i{k}" for k in range(len(d))])
    one, index_one = build_image_cache(images, 16, root=root, threads=1)
    many, index_many = build_image_cache(images, 16, root=root, threads=8)
    np.testing.assert_array_equal(one, many)
    pd.testing.assert_frame_equal(index_one, index_many)


def test_truncated_file_is_reported_not_crashing(tmp_path):
    """Break: `except (OSError, ValueError, cv2.error)` -> `except (ValueError, cv2.error)` (truncation crashes)."""
    data = (solid(tmp_path / "full.jpg", (200, 30, 90), size=(300, 200), quality=95)).read_bytes()
    (tmp_path / "half.jpg").write_bytes(data[: len(data) // 2])
    images = pd.DataFrame({"image_id": ["full", "half"], "image_path": ["full.jpg", "half.jpg"]})
    array, index = build_image_cache(images, 32, root=tmp_path)
    assert array.shape == (1, 32, 32, 3)
    assert index["row"].tolist() == [0, -1]
    assert index["reason"].iloc[1].startswith(
        f"cannot read image {tmp_path / 'half.jpg'}: cannot decode its pixels (OSError: image file is truncated")
    # The JPEG is decoded at reduced scale (draft) and stays the same colour within JPEG error.
    assert np.abs(array[0].astype(int) - (200, 30, 90)).max() <= 3


def test_nothing_readable_gives_an_empty_array(tmp_path):
    """Break: `np.zeros((sum(...), ...))` -> `np.zeros((len(results), ...))` (zero rows for missing images)."""
    images = pd.DataFrame({"image_id": ["x", "y"], "image_path": ["x.png", "y.png"]})
    array, index = build_image_cache(images, 8, root=tmp_path)
    assert array.shape == (0, 8, 8, 3)
    assert index["row"].tolist() == [-1, -1] and index["reason"].notna().all()


def test_non_square_image_is_squashed_not_padded(tmp_path):
    """Break: resize the longer side to `size` and pad the other (letterbox) instead of squashing."""
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20], pixels[:, 20:] = RED, BLUE
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    out = load_resized(tmp_path / "wide.png", 10)
    assert out.shape == (10, 10, 3)
    assert (out[:, :5] == RED).all() and (out[:, 5:] == BLUE).all()  # no black bars, RGB not BGR


def test_downscaling_averages_pixels(tmp_path):
    """Break: `cv2.INTER_AREA if ...` -> `cv2.INTER_NEAREST if ...` (aliasing: a 1 px checkerboard stays 0/255)."""
    board = ((np.indices((64, 64)).sum(axis=0) % 2) * 255).astype(np.uint8)
    Image.fromarray(board, mode="L").save(tmp_path / "board.png")
    out = load_resized(tmp_path / "board.png", 16)  # grey input: 3 channels out
    assert out.shape == (16, 16, 3)
    assert np.abs(out.astype(int) - 128).max() <= 1


def test_written_cache_reads_back(mixed, tmp_path):
    """Break: drop `os.replace(tmp, array_path)` in write_cache (the array stays under its temp name)."""
    images, root = mixed
    array, index = build_image_cache(images, 16, root=root)
    out = tmp_path / "cache"
    write_cache(array, index, out / "c16.npy", out / "c16.parquet")
    assert sorted(p.name for p in out.iterdir()) == ["c16.manifest.json", "c16.npy", "c16.parquet"]
    back, back_index = read_cache(out / "c16.npy", out / "c16.parquet")
    assert isinstance(back, np.memmap)
    np.testing.assert_array_equal(back, array)
    pd.testing.assert_frame_equal(back_index, index)
    assert back_index["row"].dtype == np.int64 and back_index["reason"].dtype == "string"


def _written(mixed, tmp_path: Path) -> tuple[Path, Path]:
    images, root = mixed
    array, index = build_image_cache(images, 16, root=root)
    out = tmp_path / "cache"
    write_cache(array, index, out / "c16.npy", out / "c16.parquet", labels={"A": 1, "B": 0, "C": 0, "D": 0, "E": 1})
    return out / "c16.npy", out / "c16.parquet"


def test_a_truncated_cache_is_refused_naming_the_file_the_lesions_and_the_fix(mixed, tmp_path):
    array_path, index_path = _written(mixed, tmp_path)
    whole = array_path.read_bytes()
    array_path.write_bytes(whole[:-10])  # into the last row, lesion E's
    with pytest.raises(CacheError, match=rf"cache {array_path} is {len(whole) - 10} bytes, its manifest .*c16"
                                         r".manifest.json says \d+ \(truncated or replaced: the images of lesion\(s\) "
                                         r"'E' lie past its end\): .*--forcerun train_cache"):
        read_cache(array_path, index_path)


def test_a_cache_whose_pixels_changed_is_refused_naming_the_lesion(mixed, tmp_path):
    array_path, index_path = _written(mixed, tmp_path)
    pixels = np.load(array_path, mmap_mode="r+")
    pixels[1, 0, 0, 0] ^= 1  # row 1 is lesion D (B and C are unreadable)
    pixels.flush()
    del pixels
    with pytest.raises(CacheError, match=rf"cache {array_path}: the image of lesion\(s\) 'D' differs"):
        read_cache(array_path, index_path)


def test_a_label_that_differs_from_the_images_table_is_refused_naming_the_lesion(mixed, tmp_path):
    array_path, index_path = _written(mixed, tmp_path)
    read_cache(array_path, index_path, labels=pd.Series({"A": 1, "D": 0, "E": 1, "Z": 0}))
    with pytest.raises(CacheError, match=rf"cache {array_path} was built with label 0 for lesion 'D', the images "
                                         r"table now says 1 \(1 lesion\(s\) differ"):
        read_cache(array_path, index_path, labels=pd.Series({"A": 1, "D": 1, "E": 1}))


def test_an_edited_index_or_a_missing_manifest_is_refused(mixed, tmp_path):
    array_path, index_path = _written(mixed, tmp_path)
    index = pd.read_parquet(index_path)
    index.loc[index["image_id"] == "A", "row"], index.loc[index["image_id"] == "E", "row"] = 2, 0
    index.to_parquet(index_path)
    with pytest.raises(CacheError, match=rf"cache index {index_path} gives lesion 'A' row 2, its manifest .* row 0"):
        read_cache(array_path, index_path)
    manifest_path(array_path).unlink()
    with pytest.raises(CacheError, match=rf"cache {array_path} has no manifest .*--forcerun train_cache"):
        read_cache(array_path, index_path)


def test_a_leftover_temporary_array_is_removed_by_the_next_build(mixed, tmp_path, caplog):
    out = tmp_path / "cache"
    out.mkdir()
    (out / "c16.npy.tmp.npy").write_bytes(b"half an array")
    (out / "c16.parquet.tmp").write_bytes(b"half an index")
    with caplog.at_level(logging.WARNING, logger="crowdskin.train.cache"):
        array_path, _ = _written(mixed, tmp_path)
    assert sorted(p.name for p in out.iterdir()) == ["c16.manifest.json", "c16.npy", "c16.parquet"]
    assert f"removing {out / 'c16.npy.tmp.npy'}, left by an interrupted cache build" in caplog.text
    assert f"removing {out / 'c16.parquet.tmp'}, left by an interrupted cache build" in caplog.text


def test_a_cache_too_big_for_the_disk_is_refused_before_writing(mixed, tmp_path, monkeypatch):
    from crowdskin.train import cache

    monkeypatch.setattr(cache.shutil, "disk_usage", lambda path: SimpleNamespace(free=2**19))
    images, root = mixed
    array, index = build_image_cache(images, 16, root=root)
    out = tmp_path / "cache"
    with pytest.raises(CacheSpaceError, match=rf"no room for the image cache in {out}: it needs 0.0 MiB "
                                              r"\(2304 bytes\) \(\+1 MiB margin\), 0.5 MiB \(524288 bytes\) free"):
        write_cache(array, index, out / "c16.npy", out / "c16.parquet")
    assert list(out.iterdir()) == []


def test_a_disk_that_fills_while_writing_leaves_no_partial_cache(mixed, tmp_path, monkeypatch):
    import errno

    from crowdskin.train import cache

    def save_half_then_fill(path, array):
        Path(path).write_bytes(array.tobytes()[:100])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache.np, "save", save_half_then_fill)
    images, root = mixed
    array, index = build_image_cache(images, 16, root=root)
    out = tmp_path / "cache"
    with pytest.raises(CacheSpaceError, match=rf"no room for the image cache in {out}: .* the disk filled up"):
        write_cache(array, index, out / "c16.npy", out / "c16.parquet")
    assert list(out.iterdir()) == []


def test_the_cache_rule_logs_a_full_disk_with_the_space_it_needs(mixed, tmp_path, monkeypatch):
    import runpy

    from crowdskin.train import cache

    images, root = mixed
    images.assign(abnormal=[1, 0, 0, 0, 1], image_path=[str(root / p) for p in images["image_path"]]).to_parquet(
        tmp_path / "images.parquet")
    pd.DataFrame({"image_id": ["A", "D", "E"], "fold": 0, "split": ["train", "val", "test"],
                  "split_hash": "x"}).to_parquet(tmp_path / "folds.parquet")
    monkeypatch.setattr(cache.shutil, "disk_usage", lambda path: SimpleNamespace(free=2**19))
    out = tmp_path / "cache"
    rule = SimpleNamespace(
        input=SimpleNamespace(images=str(tmp_path / "images.parquet"), folds=str(tmp_path / "folds.parquet")),
        output=SimpleNamespace(array=str(out / "images_16px.npy"), index=str(out / "images_16px.parquet")),
        log=[str(tmp_path / "cache.log")], wildcards=SimpleNamespace(size="16"), threads=1, rule="train_cache")
    script = Path(__file__).resolve().parents[1] / "workflow/scripts/train_cache.py"
    stderr = sys.stderr
    try:
        with pytest.raises(CacheSpaceError):
            runpy.run_path(str(script), init_globals={"snakemake": rule})
    finally:
        sys.stderr = stderr
        logging.getLogger().handlers.clear()
    logged = (tmp_path / "cache.log").read_text()
    assert f"ERROR no room for the image cache in {out}: it needs 0.0 MiB (2304 bytes) (+1 MiB margin), " in logged
    assert "0.5 MiB (524288 bytes) free" in logged
    assert not out.exists() or list(out.iterdir()) == []


# --- crowd/io.py --------------------------------------------------------------------------------

def annotations(source: str, values: list[float], *, annotator: str = "w1") -> pd.DataFrame:
    n = len(values)
    return pd.DataFrame({
        "image_id": [f"L{k}" for k in range(n)], "dataset": "d", "source": source, "feature": "asymmetry",
        "annotator_group": f"{source}/d", "annotator": annotator, "value": values,
        "origin_file": f"{source}.csv", "origin_row": pd.array(range(n), dtype="Int64"), "origin_column": None,
    })


def test_read_annotations_concatenates_in_order_with_a_fresh_index(tmp_path):
    """Break: `pd.concat(frames, ignore_index=True)` -> `pd.concat(frames)` (index 0, 1, 0 repeats)."""
    annotations("crowd", [1, 2]).to_parquet(tmp_path / "ingest.parquet")
    annotations("automated", [0]).to_parquet(tmp_path / "automated.parquet")
    out = read_annotations(tmp_path / "ingest.parquet", str(tmp_path / "automated.parquet"))
    assert out.index.tolist() == [0, 1, 2]
    assert out["source"].tolist() == ["crowd", "crowd", "automated"]
    assert out["value"].tolist() == [1.0, 2.0, 0.0] and out["value"].dtype == float  # ints coerced
    assert list(out.columns) == list(ANNOTATIONS.columns)
    assert out["origin_row"].dtype == "Int64"


@pytest.mark.filterwarnings("error")
def test_empty_files_are_skipped_and_keep_dtypes(tmp_path):
    """Break: `return tables.empty(tables.ANNOTATIONS)` -> `return pd.DataFrame()` (all-empty input loses columns)."""
    annotations("crowd", []).to_parquet(tmp_path / "empty.parquet")
    annotations("crowd", [3, 4]).to_parquet(tmp_path / "full.parquet")
    out = read_annotations(tmp_path / "empty.parquet", tmp_path / "full.parquet")
    pd.testing.assert_frame_equal(out, ANNOTATIONS.validate(annotations("crowd", [3, 4])))
    none = read_annotations(tmp_path / "empty.parquet")
    assert none.empty and list(none.columns) == list(ANNOTATIONS.columns)
    assert none["value"].dtype == float and none["origin_row"].dtype == "Int64"


def test_no_paths_gives_the_empty_table():
    """Break: `if not frames: return tables.empty(...)` removed (pd.concat of nothing raises)."""
    out = read_annotations()
    assert out.empty and list(out.columns) == list(ANNOTATIONS.columns)


@pytest.mark.parametrize("change", [
    {"source": "robot"},  # not a known source
    {"value": float("inf")},
    {"extra": 1},  # strict schema
])
def test_each_file_is_validated(tmp_path, change):
    """Break: `tables.read_table(p, tables.ANNOTATIONS)` -> `pd.read_parquet(p)` (no validation)."""
    annotations("crowd", [1]).to_parquet(tmp_path / "good.parquet")
    annotations("crowd", [1, 2]).assign(**change).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises((pandera.errors.SchemaError, pandera.errors.SchemaErrors)):
        read_annotations(tmp_path / "good.parquet", tmp_path / "bad.parquet")


# --- train/runtime.py ---------------------------------------------------------------------------

class FakeTF:
    """Records the calls `configure` makes on `tensorflow` and `keras`."""

    def __init__(self, gpus: int = 0, started: bool = False):
        self.calls: list[tuple] = []
        record = self._record

        def threads(kind):
            def set_threads(n):
                if started:
                    raise RuntimeError("already initialised")
                record(kind, n)
            return set_threads

        def growth(gpu, on):
            if started:
                raise RuntimeError("already initialised")
            record("growth", gpu, on)

        self.tf = SimpleNamespace(
            config=SimpleNamespace(
                threading=SimpleNamespace(set_intra_op_parallelism_threads=threads("intra"),
                                          set_inter_op_parallelism_threads=threads("inter")),
                list_physical_devices=lambda kind: [f"{kind}:{i}" for i in range(gpus)],
                experimental=SimpleNamespace(set_memory_growth=growth,
                                             enable_op_determinism=lambda: record("determinism")),
            ),
            distribute=SimpleNamespace(MirroredStrategy=lambda: "mirrored", get_strategy=lambda: "default"),
        )
        self.keras = SimpleNamespace(
            mixed_precision=SimpleNamespace(set_global_policy=lambda p: record("policy", p)),
            utils=SimpleNamespace(set_random_seed=lambda s: record("seed", s)),
        )

    def _record(self, *call):
        self.calls.append(call)

    def of(self, name: str) -> list[tuple]:
        return [c[1:] for c in self.calls if c[0] == name]


@pytest.fixture
def fake_tf(monkeypatch):
    def install(**kwargs) -> FakeTF:
        fake = FakeTF(**kwargs)
        monkeypatch.setitem(sys.modules, "tensorflow", fake.tf)
        monkeypatch.setitem(sys.modules, "keras", fake.keras)
        return fake
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    return install


@pytest.mark.parametrize(("threads", "intra", "inter"), [(1, 1, 1), (2, 2, 2), (8, 8, 2)])
def test_thread_pools_follow_the_job_threads(fake_tf, threads, intra, inter):
    """Break: `max(1, min(threads, 2))` -> `threads` (inter-op pool as large as the intra-op one)."""
    fake = fake_tf()
    runtime.configure(threads=threads)
    assert fake.of("intra") == [(intra,)] and fake.of("inter") == [(inter,)]


def test_cpu_defaults(fake_tf):
    """Break: drop the `else: set_global_policy("float32")` branch (a previous job's float16 policy stays)."""
    fake = fake_tf()
    result = runtime.configure(seed=7)
    assert fake.of("policy") == [("float32",)] and fake.of("seed") == [(7,)]
    assert fake.of("determinism") == [] and fake.of("growth") == []
    assert result == runtime.Runtime(strategy="default", n_gpus=0, jit_compile=False, mixed_precision=False)
    assert runtime.os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"


def test_log_level_already_set_is_kept(fake_tf, monkeypatch):
    """Break: `os.environ.setdefault(...)` -> `os.environ[...] = "2"` (overrides the user's choice)."""
    fake_tf()
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    runtime.configure()
    assert runtime.os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"


@pytest.mark.parametrize(("gpus", "strategy"), [(1, "default"), (2, "mirrored")])
def test_gpus_grow_memory_and_only_several_mirror(fake_tf, gpus, strategy):
    """Break: `MirroredStrategy() if len(gpus) > 1` -> `if gpus` (one GPU mirrored onto itself)."""
    fake = fake_tf(gpus=gpus)
    result = runtime.configure(mixed_precision=True, xla=True, deterministic=True, seed=3)
    assert fake.of("growth") == [(f"GPU:{i}", True) for i in range(gpus)]
    assert fake.of("policy") == [("mixed_float16",)] and fake.of("determinism") == [()]
    assert result == runtime.Runtime(strategy=strategy, n_gpus=gpus, jit_compile=True, mixed_precision=True)


def test_mixed_precision_on_cpu_warns(fake_tf, caplog):
    """Break: drop the `if not gpus: log.warning(...)` in configure (float16 on CPU without a word)."""
    fake = fake_tf()
    with caplog.at_level(logging.WARNING, logger=runtime.__name__):
        runtime.configure(mixed_precision=True)
    assert fake.of("policy") == [("mixed_float16",)]
    assert "mixed precision asked for on a CPU-only machine" in caplog.text


def test_an_already_started_runtime_is_kept(fake_tf):
    """Break: drop the `try/except RuntimeError` around the thread-pool calls (a second job in-process fails)."""
    fake = fake_tf(gpus=1, started=True)
    result = runtime.configure(threads=4, seed=1)
    assert fake.of("intra") == [] and fake.of("growth") == []
    assert fake.of("seed") == [(1,)] and result.n_gpus == 1
