"""crowdskin.synthetic's ambiguous lesions (drawn apart from everything else, more often abnormal,
blurred at the border only, and spreading the raters' scores) and its shortcut trap (a marker off
the lesion, agreeing with the diagnosis at a chosen rate, drawn apart from everything else).

Each test names in its docstring a deliberate break of synthetic.py that makes it fail (each was
tried and seen failing before the code was restored).
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from crowdskin import synthetic
from crowdskin.config import ConfigError, load_config, section
from crowdskin.ingest import ingest_all
from crowdskin.synthetic import (
    AMBIGUOUS_LEVELS,
    MARKER_COLOR,
    AmbiguitySettings,
    ShortcutSettings,
    SyntheticSettings,
    blur_border,
    draw_ambiguity,
    draw_shortcut,
    generate,
    marker_gap,
    place_marker,
)
from crowdskin.train.cache import load_resized

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


# --- the shortcut trap ---------------------------------------------------------------------------

SHORTCUT_TRUTH = ("clean", "trap", "marker")


def _generate_shortcut(root: Path, shortcut: dict[str, object] | None, *, n_images: int = 60,
                       image_size: int = 64) -> list[str]:
    """A set (seed 5) with the given `shortcut` section, or none at all; returns generate's list."""
    values: dict[str, object] = {"n_images": n_images, "image_size": image_size}
    if shortcut is not None:
        values["shortcut"] = shortcut
    return generate(root, SyntheticSettings.from_config(section("synthetic", values), seed=5))


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def _purple(rgb: np.ndarray) -> np.ndarray:
    """Where a pixel is the marker's ink: blue and red well above green. No reference colour, skin
    or blend of them comes near (the closest, white and blue-gray, have blue - green of about 30)."""
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return (b - g > 60) & (r - g > 30)


@pytest.fixture(scope="module")
def shortcut_runs(tmp_path_factory) -> tuple[Path, Path, pd.DataFrame, list[str]]:
    """Seed 5, 60 lesions of 64 px, generated without the `shortcut` key and with it on (rate 0.9,
    reversed); the second's truth/shortcut.csv and generate's list of written files."""
    off, on = (Path(tmp_path_factory.mktemp(name)) for name in ("shortcut_off", "shortcut_on"))
    _generate_shortcut(off, None)
    written = _generate_shortcut(on, {"enabled": True})
    return off, on, pd.read_csv(on / "truth/shortcut.csv"), written


def test_shortcut_section_defaults_and_bounds():
    """The schema fills the section in (off, rate 0.9, reversed, radius 0.09) and rejects a rate
    below 0.5 (a marker agreeing with the diagnosis less than by chance). Break: `minimum: 0.5`
    dropped from `rate` in synthetic.schema.yaml -> no error."""
    settings = SyntheticSettings.from_config(section("synthetic"), seed=0)
    assert settings.shortcut == ShortcutSettings(enabled=False, rate=0.9, test="reversed", radius=0.09)
    with pytest.raises(ConfigError, match=r"synthetic.shortcut.rate"):
        section("synthetic", {"shortcut": {"rate": 0.4}})
    with pytest.raises(ConfigError, match=r"synthetic.shortcut.test"):
        section("synthetic", {"shortcut": {"test": "swapped"}})


def test_shortcut_changes_only_the_marked_images(shortcut_runs):
    """With the shortcut on, every file of the run without it is still there, byte-identical but for
    the images that show the marker, and the only new files are the shortcut's truth, all of them
    in generate's list: the shortcut has its own random stream. Break: the shortcut drawn from the
    main stream (`draw_shortcut(rng, ...)` in generate) -> every later draw shifts: the masks, the
    scores and the MTurk batch differ."""
    off, on, truth, written = shortcut_runs
    ids = truth["image_id"].tolist()
    new = ["truth/shortcut.csv"] + [f"truth/shortcut/{kind}/{i}.png" for kind in SHORTCUT_TRUTH for i in ids]
    assert _files(on) == sorted(_files(off) + new)
    assert sorted(written) == _files(on)
    marked = set(truth.loc[truth["marker_train"] == 1, "image_id"])
    changed = set()
    for name in _files(off):
        if (off / name).read_bytes() != (on / name).read_bytes():
            assert name.startswith("images/"), name
            changed.add(Path(name).stem)
    assert changed == marked and 10 <= len(marked) <= 50


def test_shortcut_off_is_the_generator_without_it(shortcut_runs, tmp_path):
    """`enabled: false` ignores the other settings: every file is byte-identical to the run without
    the `shortcut` key, and no shortcut truth is written. Break: the `if shortcut.enabled` dropped
    from generate's draw (`... if True else None`) -> the marked images and the truth files."""
    off = shortcut_runs[0]
    written = _generate_shortcut(tmp_path, {"enabled": False, "rate": 0.6, "test": "independent", "radius": 0.05})
    assert _files(tmp_path) == _files(off) == sorted(written)
    assert not any(name.startswith("truth/shortcut") for name in written)
    for name in _files(off):
        assert (off / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_clean_rendering_is_the_image_without_the_shortcut(shortcut_runs):
    """truth/shortcut/clean/ holds, byte for byte, the images generated with the option off. Break:
    the clean rendering written with the marker (`marked` for `image` in generate) -> fails."""
    off, on, truth, _ = shortcut_runs
    for image_id in truth["image_id"]:
        clean = (on / f"truth/shortcut/clean/{image_id}.png").read_bytes()
        assert clean == (off / f"images/{image_id}.png").read_bytes(), image_id


def test_marker_lies_off_the_lesion_and_inside_the_image(shortcut_runs):
    """Each marker region (truth/shortcut/marker/) is the disc of truth/shortcut.csv's geometry
    (pixel centres within marker_radius + 0.5 of its centre), whole (as many pixels as a disc
    away from any border), and shares no pixel with the lesion mask dilated by marker_gap. Break:
    place_marker taking any centre off the lesion (`clearance > 0` for `clearance >= radius + 0.5`)
    -> markers on the lesion and cut by the border."""
    off, on, truth, _ = shortcut_runs
    size, gap = 64, marker_gap(64)
    assert gap == 2
    radius = truth["marker_radius"].iloc[0]
    assert (truth["marker_radius"] == radius).all() and radius == pytest.approx(0.09 * size)
    yy, xx = np.mgrid[0:size, 0:size]
    offsets = np.mgrid[-size:size, -size:size]
    whole = int((np.hypot(*offsets) < radius + 0.5).sum())
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * gap + 1, 2 * gap + 1))
    for row in truth.itertuples():
        marker = cv2.imread(str(on / f"truth/shortcut/marker/{row.image_id}.png"), cv2.IMREAD_GRAYSCALE) > 0
        lesion = cv2.imread(str(on / f"masks/{row.image_id}_segmentation.png"), cv2.IMREAD_GRAYSCALE)
        disc = np.hypot(xx - row.marker_x, yy - row.marker_y) < row.marker_radius + 0.5
        assert np.array_equal(marker, disc), row.image_id
        assert marker.sum() == whole, row.image_id
        assert not (marker & (cv2.dilate(lesion, kernel) > 0)).any(), row.image_id


def test_place_marker_finds_the_nearest_free_centre_or_says_there_is_none():
    """A 40-px mask free only in its top-left 12 x 12 corner, gap 2: a disc of radius 3 (pixels within
    3.5 of its centre) fits with its centre in [3, 6] on both axes, so the nearest centre to the far
    corner is (6, 6) and to the image's own corner (3, 3); a disc of radius 5 fits nowhere. Break: no
    forbidden frame around the image (`~forbidden` unpadded, no crop) -> (0, 0), a disc cut by the
    border."""
    mask = np.full((40, 40), 255, np.uint8)
    mask[:12, :12] = 0
    assert place_marker(mask, 3.0, 2, (39.0, 39.0)) == (6, 6)
    assert place_marker(mask, 3.0, 2, (0.0, 0.0)) == (3, 3)
    with pytest.raises(ValueError, match="no room for a shortcut marker"):
        place_marker(mask, 5.0, 2, (0.0, 0.0))


def test_marker_agrees_with_the_diagnosis_at_the_rate(tmp_path):
    """On 200 lesions (32 px), rate 0.9: marker_train agrees with the diagnosis in 0.9 +- 0.065 of
    them (3 standard errors of a proportion over 200, sqrt(0.9 x 0.1 / 200) = 0.021; measured 0.89,
    and 0.87 to 0.95 with seeds 1, 2, 3, 42),
    and the reversed trap shows the marker exactly where images/ does not. Break: the rates swapped
    in draw_shortcut (`1 - settings.rate, settings.rate`) -> agreement 0.1."""
    _generate_shortcut(tmp_path, {"enabled": True, "rate": 0.9}, n_images=200, image_size=32)
    truth = pd.read_csv(tmp_path / "truth/shortcut.csv")
    assert len(truth) == 200 and set(truth["marker_train"]) | set(truth["marker_trap"]) == {0, 1}
    assert (truth["marker_train"] == truth["abnormal"]).mean() == pytest.approx(0.9, abs=0.065)
    assert (truth["marker_trap"] == 1 - truth["marker_train"]).all()


def test_draw_shortcut_rates_trap_kinds_and_fixed_geometry():
    """On 20,000 lesions (standard error at most 0.005): P(marker | abnormal) = rate and
    P(marker | normal) = 1 - rate; `independent` shows the trap's marker on half of each diagnosis;
    the geometry's target and a lesion's draws do not depend on the settings, so a higher rate keeps
    every agreeing marker of a lower one. Break: the trap's independent chance compared with the
    rate (`chance_trap < settings.rate`) -> 0.7 of the lesions at rate 0.7."""
    abnormal = np.repeat([0, 1], 10_000)

    def draw(rate: float, test: str) -> pd.DataFrame:
        settings = ShortcutSettings(enabled=True, rate=rate, test=test, radius=0.09)
        return draw_shortcut(np.random.default_rng(0), abnormal, settings, 128)

    low, high = draw(0.7, "independent"), draw(0.9, "independent")
    for marks, rate in ((low, 0.7), (high, 0.9)):
        assert marks["marker_train"][abnormal == 1].mean() == pytest.approx(rate, abs=0.02)
        assert marks["marker_train"][abnormal == 0].mean() == pytest.approx(1 - rate, abs=0.02)
        for label in (0, 1):
            assert marks["marker_trap"][abnormal == label].mean() == pytest.approx(0.5, abs=0.02)
    assert low[["target_x", "target_y", "marker_trap"]].equals(high[["target_x", "target_y", "marker_trap"]])
    agree_low = low["marker_train"] == abnormal.astype(bool)
    assert (high["marker_train"] == abnormal.astype(bool))[agree_low].all()
    reversed_trap = draw(0.9, "reversed")
    assert (reversed_trap["marker_trap"] == ~reversed_trap["marker_train"]).all()
    # inside the image and in the four corners' squares, each about as often
    targets = high[["target_x", "target_y"]].to_numpy()
    assert ((targets >= 0.09 * 128 + 0.5 - 1e-9) & (targets <= 127 - 0.09 * 128 - 0.5 + 1e-9)).all()
    corner = (targets[:, 0] > 64).astype(int) + 2 * (targets[:, 1] > 64)
    assert np.bincount(corner, minlength=4) / len(corner) == pytest.approx([0.25] * 4, abs=0.02)


def test_marker_pixels_are_present_exactly_where_marked(shortcut_runs):
    """In images/ and in the trap rendering, most of the marker region is the ink's purple where the
    rendering is marked (the soft one-pixel rim aside: measured 0.80 or more at 64 px) and none of it
    where not; no purple anywhere else, nor in the clean rendering. Break: images/ marked by the trap's
    draw (`if mark.marker_trap` for `if mark.marker_train`) -> every image wrong."""
    _, on, truth, _ = shortcut_runs
    for row in truth.itertuples():
        region = cv2.imread(str(on / f"truth/shortcut/marker/{row.image_id}.png"), cv2.IMREAD_GRAYSCALE) > 0
        for folder, present in (("images", row.marker_train), ("truth/shortcut/trap", row.marker_trap),
                                ("truth/shortcut/clean", 0)):
            purple = _purple(_rgb(on / f"{folder}/{row.image_id}.png"))
            share = purple[region].mean()
            assert (share >= 0.6) if present else (share == 0), (folder, row.image_id, share)
            assert not purple[~region].any(), (folder, row.image_id)


def test_marker_survives_the_training_cache(tmp_path):
    """At the default 128 px (radius 11.52 px), the training cache's 32-px image (load_resized:
    INTER_AREA) still shows the marker as a disc of radius 2.9 px: every pixel wholly inside its
    region (the mask's own area average 255) is the ink's colour within 16 per channel (measured at
    most 10, the soft rim's share), at least 12 of them (measured 18 to 21 on 100 lesions), and the
    clean rendering shows none. Break: a faint ink (MARKER_COLOR blended at a
    third, `alpha[..., None] / 3` in paint_marker) -> a pink-grey disc."""
    _generate_shortcut(tmp_path, {"enabled": True, "rate": 0.5}, n_images=8, image_size=128)
    truth = pd.read_csv(tmp_path / "truth/shortcut.csv")
    assert truth["marker_radius"].iloc[0] == pytest.approx(11.52)
    for row in truth.itertuples():
        # reversed: exactly one of the two renderings shows the marker
        shown = "images" if row.marker_train else "truth/shortcut/trap"
        small = load_resized(tmp_path / f"{shown}/{row.image_id}.png", 32).astype(int)
        marker = cv2.imread(str(tmp_path / f"truth/shortcut/marker/{row.image_id}.png"), cv2.IMREAD_GRAYSCALE)
        inside = cv2.resize(marker, (32, 32), interpolation=cv2.INTER_AREA) == 255
        assert inside.sum() >= 12, row.image_id
        assert (np.abs(small[inside] - MARKER_COLOR) <= 16).all(), row.image_id
        assert _purple(small).sum() >= inside.sum()
        clean = load_resized(tmp_path / f"truth/shortcut/clean/{row.image_id}.png", 32)
        assert not _purple(clean).any(), row.image_id


@pytest.mark.parametrize("abnormal_fraction", [0.0, 0.1, 0.35, 0.5, 0.77, 1.0])
def test_the_abnormal_count_is_known_from_the_settings_before_any_draw(abnormal_fraction):
    """The start-up check of the folds counts the positives from the settings: the count must be
    the generator's for every size and seed."""
    from crowdskin.synthetic import _lesion_truth, abnormal_count

    for n in (8, 9, 12, 37, 60, 101, 500):
        for seed in (0, 1):
            drawn = int(_lesion_truth(np.random.default_rng(seed), n, abnormal_fraction)["abnormal"].sum())
            assert abnormal_count(n, abnormal_fraction, seed) == drawn, (n, seed)
