"""crowdskin.synthetic's ambiguous lesions: drawn apart from everything else, more often abnormal,
blurred at the border only, and spreading the raters' scores.

Each test names in its docstring a deliberate break of synthetic.py that makes it fail (each was
tried and seen failing before the code was restored).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crowdskin import synthetic
from crowdskin.config import load_config, section
from crowdskin.ingest import ingest_all
from crowdskin.synthetic import (
    AMBIGUOUS_LEVELS,
    AmbiguitySettings,
    SyntheticSettings,
    blur_border,
    draw_ambiguity,
    generate,
)

OFF = {"rate_abnormal": 0.0, "rate_normal": 0.0}


def _generate(root: Path, ambiguity: dict[str, float], **values: object) -> pd.DataFrame:
    """A small set (seed 5) with the given ambiguity settings; returns its truth/images.csv."""
    settings = section("synthetic", {"n_images": 40, "image_size": 64, "ambiguity": ambiguity, **values})
    generate(root, SyntheticSettings.from_config(settings, seed=5))
    return pd.read_csv(root / "truth/images.csv")


def _rows(path: Path, delimiter: str = ",") -> dict[str, list[str]]:
    """A CSV's rows by their first cell (the lesion id), with the header under its own first cell."""
    with open(path, encoding="utf-8-sig", newline="") as fh:
        return {row[0]: row[1:] for row in csv.reader(fh, delimiter=delimiter)}


@pytest.fixture(scope="module")
def off_and_on(tmp_path_factory) -> tuple[Path, Path, pd.DataFrame]:
    """The same seed generated with ambiguity off (both rates 0) and on (high rates, for many
    ambiguous lesions among 40); the truth of the second."""
    off, on = (Path(tmp_path_factory.mktemp(name)) for name in ("off", "on"))
    truth_off = _generate(off, OFF)
    truth_on = _generate(on, {"rate_abnormal": 0.8, "rate_normal": 0.5})
    assert (truth_off["ambiguity"] == 0).all()
    assert truth_on.drop(columns="ambiguity").equals(truth_off.drop(columns="ambiguity"))
    return off, on, truth_on


def test_ambiguity_changes_only_the_ambiguous_lesions(off_and_on):
    """Every file but the ambiguous lesions' images and scores is byte-identical with ambiguity off:
    an ambiguous lesion scales its raters' noise draws rather than drawing more. Break: the extra
    noise drawn only where needed (`+ (rng.normal(0, 1) if r.ambiguity else 0)` added to the crowd's
    `getattr(r, feature)` in generate) -> every later draw shifts: clear lesions' scores and the
    MTurk batch differ."""
    off, on, truth = off_and_on
    ambiguous = set(truth.loc[truth["ambiguity"] > 0, "image_id"])
    assert 10 <= len(ambiguous) <= 30
    files = sorted(p.relative_to(off).as_posix() for p in off.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(on).as_posix() for p in on.rglob("*") if p.is_file())
    changed_images = set()
    for name in files:
        same = (off / name).read_bytes() == (on / name).read_bytes()
        if name.startswith("images/"):
            if not same:
                changed_images.add(Path(name).stem)
        elif name.startswith("enhance/"):
            delimiter = ";" if "/student/" in name else ","
            rows_off, rows_on = _rows(off / name, delimiter), _rows(on / name, delimiter)
            assert rows_off.keys() == rows_on.keys()
            for lesion, cells in rows_off.items():
                # a skipped score stays skipped: the missing draws are the same
                assert [c == "" for c in cells] == [c == "" for c in rows_on[lesion]], (name, lesion)
                if lesion not in ambiguous:
                    assert cells == rows_on[lesion], (name, lesion)
        elif name != "truth/images.csv":
            assert same, name
    assert changed_images == ambiguous  # every ambiguous lesion's border is blurred, no other image


def test_ambiguity_off_is_the_generator_without_ambiguity(tmp_path, monkeypatch):
    """With both rates 0 every file is byte-identical to what a generator that draws no ambiguity at
    all writes (the generator as it was before ambiguity, but for the zero column of truth/images.csv):
    the ambiguity has its own random stream. Break: draw it from the main stream
    (`draw_ambiguity(rng, ...)` in generate) -> every later draw shifts: images, masks, scores and
    the MTurk batch differ."""
    _generate(tmp_path / "off", OFF)
    monkeypatch.setattr(synthetic, "draw_ambiguity", lambda rng, abnormal, settings: np.zeros(len(abnormal)))
    _generate(tmp_path / "none", OFF)
    files = sorted(p.relative_to(tmp_path / "off").as_posix() for p in (tmp_path / "off").rglob("*") if p.is_file())
    assert len(files) > 80
    for name in files:
        assert (tmp_path / "off" / name).read_bytes() == (tmp_path / "none" / name).read_bytes(), name


def test_ambiguity_raises_the_scores_spread_on_ambiguous_lesions_only(off_and_on):
    """Some ambiguous lesion's scores differ from the ambiguity-off scores (the noise is scaled, not
    redrawn: the same draws, so a clear lesion's scores stay). Break: `noise_gain` ignored for the
    students (`students[slot_student[i]][1]` without `* gain`) -> no student score changes."""
    off, on, truth = off_and_on
    ambiguous = set(truth.loc[truth["ambiguity"] > 0, "image_id"])
    for name, delimiter in (("enhance/student/2020-2021/group01.csv", ";"), ("enhance/crowd/border.csv", ",")):
        rows_off, rows_on = _rows(off / name, delimiter), _rows(on / name, delimiter)
        changed = {lesion for lesion in rows_off if rows_off[lesion] != rows_on[lesion]}
        assert changed and changed <= ambiguous, name


def test_ambiguity_is_more_frequent_in_abnormal_lesions():
    """Rates by diagnosis as configured, levels 0 or within AMBIGUOUS_LEVELS, and a higher rate keeps
    every lesion ambiguous at a lower one at the same level. Break: the rates swapped (`settings.
    rate_normal, settings.rate_abnormal` in draw_ambiguity's np.where) -> abnormal 0.15."""
    abnormal = np.repeat([0, 1], 20_000)
    low = AmbiguitySettings(rate_abnormal=0.5, rate_normal=0.15, noise_gain=2.0, blur=4.0)
    high = AmbiguitySettings(rate_abnormal=0.7, rate_normal=0.3, noise_gain=2.0, blur=4.0)
    levels = draw_ambiguity(np.random.default_rng(0), abnormal, low)
    ambiguous = levels > 0
    assert ambiguous[abnormal == 1].mean() == pytest.approx(0.5, abs=0.02)
    assert ambiguous[abnormal == 0].mean() == pytest.approx(0.15, abs=0.02)
    assert (levels[ambiguous] >= AMBIGUOUS_LEVELS[0]).all() and (levels[ambiguous] < AMBIGUOUS_LEVELS[1]).all()
    higher = draw_ambiguity(np.random.default_rng(0), abnormal, high)
    assert (higher[ambiguous] == levels[ambiguous]).all() and (higher > 0).sum() > ambiguous.sum()


def test_blur_border_fades_the_lesion_outward_and_keeps_its_inside():
    """A square lesion on skin (220), its left half painted 40, its right half 120, sigma 2: inside
    the mask every pixel is kept (the painted colours stay what the colour truth says); at d pixels
    straight out from the right edge the lesion's nearby colour weighs exp(-d^2 / 8): 220 - 100 *
    exp(-1/8) = 131.8 at d = 1, 187.5 at d = 3; far away nothing moves. Break: fade inside the mask too
    (`weight > 1e-3` alone, without `(mask == 0) &`, in blur_border) -> the two halves mix at their
    shared edge."""
    image = np.full((40, 40, 3), 220.0)
    mask = np.zeros((40, 40), np.uint8)
    mask[10:30, 10:30] = 255
    image[10:30, 10:20], image[10:30, 20:30] = 40.0, 120.0
    blurred = blur_border(image, mask, 2.0)
    assert np.array_equal(blurred[mask > 0], image[mask > 0])
    assert blurred[20, 30, 0] == pytest.approx(220 - 100 * np.exp(-1 / 8), rel=1e-4)
    assert blurred[20, 32, 0] == pytest.approx(220 - 100 * np.exp(-9 / 8), rel=1e-4)
    assert np.allclose(blurred[20, 39], 220.0, atol=1.0) and np.array_equal(blurred[0, 0], image[0, 0])


@pytest.mark.parametrize(("gain", "raised"), [(2.0, True), (0.0, False)])
def test_raw_spread_is_larger_on_ambiguous_lesions(tmp_path, repo, gain, raised):
    """The raw scores' spread (population std over a lesion's raters, lesions scored at least twice,
    averaged over the ABC features) is at least 1.3 times larger on ambiguous lesions for students
    and crowd with the default noise gain (measured on 200 lesions, seeds 42, 1, 3: 1.55-1.95), and
    not with noise gain 0 (0.97-1.13: the blur alone leaves the raters as they were). Break: the
    crowd's gain without the ambiguity (`s * (1 + ambiguity.noise_gain)` in generate) -> every crowd
    lesion's noise tripled alike, crowd ratio 1.03."""
    settings = section("synthetic", {"n_images": 200, "image_size": 32, "ambiguity": {"noise_gain": gain}})
    generate(tmp_path / "synthetic", SyntheticSettings.from_config(settings, seed=42))
    annotations = ingest_all(load_config(repo / "config" / "config.yaml")["ingest"], tmp_path).annotations
    truth = pd.read_csv(tmp_path / "synthetic/truth/images.csv").set_index("image_id")
    scores = annotations[annotations["source"].isin(["student", "crowd"])]
    per_feature = scores.groupby(["source", "feature", "image_id"])["value"]
    spread = per_feature.std(ddof=0)[per_feature.count() >= 2].groupby(["source", "image_id"]).mean().reset_index()
    spread["ambiguous"] = spread["image_id"].map(truth["ambiguity"]) > 0
    means = spread.groupby(["source", "ambiguous"])["value"].mean().unstack()
    ratio = means[True] / means[False]
    assert set(ratio.index) == {"student", "crowd"}
    assert ((ratio >= 1.3) == raised).all(), ratio.to_dict()
