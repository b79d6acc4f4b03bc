"""The embedded default: a seeded synthetic dataset in the *same file formats* as the real data.

Lesions are drawn in polar form r(θ) = R·(1 + a·cos(kθ + φ) + b·cos θ + c·sin 2θ), stretched into an
ellipse and rotated, so their properties are known by construction:
- asymmetry class 0 (φ = b = c = 0, k even: symmetric about both principal axes), 1 (b ≠ 0: an egg,
  symmetric about one axis), 2 (φ, c ≠ 0: no symmetry axis);
- border: k lobes (k = 0 is a smooth ellipse);
- color: angular sectors painted with a chosen subset of the six reference colors.
The label depends on these (and abnormal lesions mostly show blue-gray or black, see DARK_RATE),
so annotations carry signal as in the real data. Simulated students and
crowd workers score them with per-annotator bias and noise and skip some; a simulated MTurk batch
mixes careful workers and fast spammers. Some lesions are ambiguous (more often abnormal ones, see
`draw_ambiguity`): their border is blurred and every student's and crowd worker's noise on them is
raised, so the annotators' disagreement on a lesion carries signal too. Ground truth is written to
`truth/` beside the data.

Optionally (`synthetic.shortcut`, off by default) a shortcut trap: a filled disc of surgical-ink
purple (`MARKER_COLOR`) off the lesion, whose presence in images/ agrees with the diagnosis at
`rate` (P(marker | abnormal) = rate, P(marker | normal) = 1 - rate), as ink markings raise a CNN's
melanoma scores and as a trap set reverses a spurious correlation at test. Every lesion gets a marker
geometry (`place_marker`: near a random corner, wholly inside the image, and no pixel of it on the
lesion mask dilated by `marker_gap` pixels); whether the disc is drawn is decided per rendering.
Its truth:
- `truth/shortcut.csv`, one row per lesion, header
  `image_id,abnormal,marker_train,marker_trap,marker_x,marker_y,marker_radius`: abnormal,
  marker_train (the disc is in images/<id>.png) and marker_trap (it is in the trap rendering) as
  0/1; marker_x (column) and marker_y (row) the disc's centre, integer pixels of the written image
  from its top-left pixel; marker_radius in pixels (a float, `radius` x image_size). A pixel is
  marker where its centre lies within marker_radius + 0.5 of the centre: its ink weighs
  clip(marker_radius + 0.5 - distance, 0, 1), a one-pixel soft edge;
- `truth/shortcut/clean/<id>.png`: the image with no marker, byte-identical to images/<id>.png with
  the option off;
- `truth/shortcut/trap/<id>.png`: the image with the disc where marker_trap (`test: reversed`:
  exactly where images/ has none; `independent`: with probability 0.5 whatever the diagnosis);
- `truth/shortcut/marker/<id>.png`: the marker's region as a 0/255 mask, the same whether or not a
  rendering shows the disc, so attention to it can be measured on the clean image too.
The shortcut draws from its own random stream, so with it off every file is as without the option,
and with it on only the marked images/ files and these truth files differ.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

REFERENCE_COLORS: dict[str, tuple[int, int, int]] = {
    "white": (197, 188, 217), "red": (118, 21, 17), "light_brown": (163, 82, 16),
    "dark_brown": (135, 44, 5), "blue_gray": (113, 108, 139), "black": (41, 31, 30),
}
SKIN = np.array([226, 178, 152], dtype=np.float64)
CANDIDATE_FRACTION = 0.2  # share of the lesions in the MTurk candidate pool
CONFIDENCE = ("very uncertain", "uncertain", "neutral", "confident", "very confident")
# An ambiguous lesion is clearly so: its ambiguity starts well above 0, so that "ambiguous" is a
# difference an annotator's spread and an image can show, not a sliver of extra noise.
AMBIGUOUS_LEVELS = (0.4, 1.0)
# The ambiguity's own random stream (with the seed): drawing it from the main stream would shift
# every later draw, so no other file could stay the same when ambiguity is switched off.
AMBIGUITY_STREAM = 0xA3B1
# The config's border blur is given in pixels of an image of this size and scales with image_size.
BLUR_REFERENCE_SIZE = 128
# The shortcut's own random stream, for the same reason as the ambiguity's: with the option on, only
# the marked images and the shortcut's truth may differ from the data drawn without it.
SHORTCUT_STREAM = 0x5C0A
# Gentian violet, the surgical skin marker's ink: far from the skin and every reference colour.
MARKER_COLOR = np.array([110, 50, 150], dtype=np.float64)
# The marker's centre is drawn in a square of this side (a fraction of image_size) in a random
# corner, inset so that a disc there lies inside the image. Small, because a lesion reaches into a
# wider square often enough to move the marker out of it (measured on 1000 lesions at 128 px: 16 %
# of the markers moved off the drawn point at 0.1, 43 % at 0.2); 6 % of the lesions fill the drawn
# corner, and their marker goes to the nearest free spot, at the border toward a neighbouring corner.
MARKER_CORNER = 0.1


@dataclass(frozen=True)
class AmbiguitySettings:
    """The `synthetic.ambiguity` section (defaults and meaning in synthetic.schema.yaml)."""

    rate_abnormal: float
    rate_normal: float
    noise_gain: float
    blur: float


@dataclass(frozen=True)
class ShortcutSettings:
    """The `synthetic.shortcut` section (defaults and meaning in synthetic.schema.yaml)."""

    enabled: bool
    rate: float
    test: str
    radius: float

    @classmethod
    def off(cls) -> ShortcutSettings:
        """No marker: what a `synthetic` section without `shortcut` means (the synthesize rule
        leaves the section out of its params when it is off, so that no run re-generates for it)."""
        return cls(enabled=False, rate=0.5, test="independent", radius=0.0)


@dataclass(frozen=True)
class SyntheticSettings:
    """The config's `synthetic` section (defaults in synthetic.schema.yaml) and the seed."""

    n_images: int
    image_size: int
    abnormal_fraction: float
    crowd_fraction: float
    student_groups: int
    students_per_group: int
    missing_rate: float
    n_hits: int
    assignments_per_hit: int
    n_workers: int
    spammer_fraction: float
    ambiguity: AmbiguitySettings
    shortcut: ShortcutSettings
    seed: int

    @classmethod
    def from_config(cls, section: dict, seed: int) -> SyntheticSettings:
        nested = ("enabled", "mturk", "ambiguity", "shortcut")
        values = {key: value for key, value in section.items() if key not in nested}
        return cls(**values, **section["mturk"], ambiguity=AmbiguitySettings(**section["ambiguity"]),
                   shortcut=ShortcutSettings(**section["shortcut"]) if "shortcut" in section
                   else ShortcutSettings.off(), seed=seed)


def draw_lesion(rng: np.random.Generator, size: int, asymmetry: int, lobes: int,
                colors: list[str], border_blur: float) -> tuple[np.ndarray, np.ndarray]:
    """An RGB uint8 image and a uint8 {0,255} mask of one lesion with the given true properties.

    `border_blur` > 0 fades the lesion's colours outward into the skin (`blur_border`, sigma in
    pixels); the mask stays sharp, as a segmentation of an ill-defined lesion still draws one line.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    cx, cy = size * rng.uniform(0.42, 0.58), size * rng.uniform(0.42, 0.58)
    angle = rng.uniform(0, np.pi)
    aspect = rng.uniform(1.15, 1.5)
    radius = size * rng.uniform(0.22, 0.3)
    dx, dy = xx - cx, yy - cy
    u = (dx * np.cos(angle) + dy * np.sin(angle)) / aspect
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    theta, r = np.arctan2(v, u), np.hypot(u, v)
    a = 0.14 if lobes else 0.0
    phase = rng.uniform(0.4, 1.2) if asymmetry == 2 else 0.0
    b = 0.0 if asymmetry == 0 else 0.28
    c = 0.22 if asymmetry == 2 else 0.0
    boundary = radius * (1 + a * np.cos(lobes * theta + phase) + b * np.cos(theta) + c * np.sin(2 * theta))
    mask = r < boundary
    image = np.broadcast_to(SKIN, (size, size, 3)).copy()
    sectors = (np.floor((theta + np.pi) / (2 * np.pi) * len(colors)).astype(int)) % len(colors)
    for i, name in enumerate(colors):
        image[mask & (sectors == i)] = REFERENCE_COLORS[name]
    mask_u8 = (mask * 255).astype(np.uint8)
    # Before the noise and the camera's blur, so that the fading border has the skin's texture;
    # skipped rather than a no-op, so a clear lesion's pixels are exactly as before.
    if border_blur > 0:
        image = blur_border(image, mask_u8, border_blur)
    image += rng.normal(0, 4, image.shape)
    image = cv2.GaussianBlur(np.clip(image, 0, 255), (3, 3), 0)
    return image.astype(np.uint8), mask_u8


def blur_border(image: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """`image` (float, H x W x 3) with the lesion of `mask` (uint8 {0,255}) fading into the skin
    outside it: the lesion's nearby colours (a Gaussian average of `sigma` pixels over the lesion)
    blend into each outside pixel with weight exp(-d^2 / 2 sigma^2) at distance d from the mask.

    Outward only: inside the mask the painted colours stay as they are, since mixing them with the
    skin there would make colours that were never painted, and the automated colour flags would
    then be judged against a truth the image no longer shows.
    """
    inside = (mask > 0).astype(np.float64)
    weight = cv2.GaussianBlur(inside, (0, 0), sigma)
    lesion = cv2.GaussianBlur(image * inside[..., None], (0, 0), sigma) / np.maximum(weight, 1e-12)[..., None]
    distance = cv2.distanceTransform(255 - mask, cv2.DIST_L2, 5)
    # Where the lesion's average has next to no weight it is noise, and the fade is nil there anyway.
    fade = np.where((mask == 0) & (weight > 1e-3), np.exp(-0.5 * (distance / sigma) ** 2), 0.0)[..., None]
    return fade * lesion + (1 - fade) * image


# Dermoscopy's melanoma colours: an abnormal lesion shows one of them far more often than a healthy
# one, so *which* colours are drawn carries signal as well as how many. A CNN sees this at 32 px,
# while the shape cues (asymmetry, lobes) need far more images and steps than a laptop run has.
DARK_COLORS = ("blue_gray", "black")
DARK_RATE = {True: 0.85, False: 0.15}  # chance of a dark colour, by diagnosis


def _draw_colors(rng: np.random.Generator, n_colors: int, abnormal: bool) -> list[str]:
    light = [name for name in REFERENCE_COLORS if name not in DARK_COLORS]
    if rng.random() < DARK_RATE[abnormal]:
        dark = [str(rng.choice(DARK_COLORS))]
        others = [name for name in REFERENCE_COLORS if name not in dark]
        return sorted(dark + rng.choice(others, n_colors - 1, replace=False).tolist())
    return sorted(rng.choice(light, min(n_colors, len(light)), replace=False).tolist())


def _lesion_properties(rng: np.random.Generator, n: int, abnormal_fraction: float) -> dict[str, np.ndarray]:
    """The first draws of the generator's stream: each lesion's shape, colour count and diagnosis."""
    asymmetry = rng.integers(0, 3, n)
    lobes = np.where(asymmetry == 0, rng.choice([0, 2, 4, 6], n), rng.choice([0, 3, 4, 5, 6, 7], n))
    n_colors = rng.integers(1, 5, n)
    risk = asymmetry / 2 + n_colors / 4 + lobes / 8 + rng.normal(0, 0.35, n)
    abnormal = (risk >= np.quantile(risk, 1 - abnormal_fraction)).astype(int)
    return {"asymmetry": asymmetry, "lobes": lobes, "n_colors": n_colors, "abnormal": abnormal}


def abnormal_count(n_images: int, abnormal_fraction: float, seed: int) -> int:
    """How many of the lesions `generate` draws are abnormal: known before any file is written, for
    the checks that need the counts at start-up (the lesion at the quantile's edge depends on the
    draw, so it is drawn, not computed from the fraction)."""
    return int(_lesion_properties(np.random.default_rng(seed), n_images, abnormal_fraction)["abnormal"].sum())


def _lesion_truth(rng: np.random.Generator, n: int, abnormal_fraction: float) -> pd.DataFrame:
    drawn = _lesion_properties(rng, n, abnormal_fraction)
    asymmetry, lobes, n_colors, abnormal = drawn["asymmetry"], drawn["lobes"], drawn["n_colors"], drawn["abnormal"]
    colors = [_draw_colors(rng, k, bool(label)) for k, label in zip(n_colors, abnormal, strict=True)]
    melanoma = abnormal * (rng.random(n) < 0.6)
    return pd.DataFrame({
        "image_id": [f"SYN_{i:04d}" for i in range(n)], "abnormal": abnormal,
        "melanoma": melanoma, "seborrheic_keratosis": abnormal - melanoma,
        "asymmetry": asymmetry, "border": lobes, "color": n_colors, "colors": ["|".join(c) for c in colors],
    })


def draw_ambiguity(rng: np.random.Generator, abnormal: np.ndarray, settings: AmbiguitySettings) -> np.ndarray:
    """Each lesion's ambiguity: 0 (clear) or uniform in `AMBIGUOUS_LEVELS`, with the chance of its
    diagnosis (`abnormal`, 0/1 per lesion).

    Both draws are made for every lesion whatever the rates, so the rates only decide which lesions
    are ambiguous: at a higher rate, a lesion ambiguous at a lower one stays so, at the same level.
    """
    rate = np.where(np.asarray(abnormal).astype(bool), settings.rate_abnormal, settings.rate_normal)
    chance = rng.random(len(rate))
    level = rng.uniform(*AMBIGUOUS_LEVELS, len(rate))
    return np.where(chance < rate, level, 0.0)


def draw_shortcut(rng: np.random.Generator, abnormal: np.ndarray, settings: ShortcutSettings,
                  image_size: int) -> pd.DataFrame:
    """Per lesion (`abnormal`, 0/1): whether images/ shows the marker (`marker_train`), whether the
    trap rendering does (`marker_trap`), and the point (`target_x`, `target_y`, pixels) near which
    `place_marker` puts it: drawn in a random corner's square of side MARKER_CORNER x image_size.

    Every draw is made for every lesion whatever the settings, so the settings only decide which
    lesions are marked: at a higher rate, a lesion marked at a lower one keeps its marker where it
    agrees with the diagnosis, and the geometry never depends on the rate or the trap's kind.
    """
    abnormal = np.asarray(abnormal).astype(bool)
    n = len(abnormal)
    chance_train, chance_trap = rng.random(n), rng.random(n)
    right, bottom = rng.random(n) < 0.5, rng.random(n) < 0.5
    offset = rng.random((n, 2)) * MARKER_CORNER * image_size
    train = chance_train < np.where(abnormal, settings.rate, 1 - settings.rate)
    trap = ~train if settings.test == "reversed" else chance_trap < 0.5
    # Inset by the radius and its soft rim, so that a disc at the drawn point itself is inside the image.
    inset = settings.radius * image_size + 0.5 + offset
    return pd.DataFrame({
        "marker_train": train, "marker_trap": trap,
        "target_x": np.where(right, image_size - 1 - inset[:, 0], inset[:, 0]),
        "target_y": np.where(bottom, image_size - 1 - inset[:, 1], inset[:, 1]),
    })


def marker_gap(image_size: int) -> int:
    """How far (pixels) the marker keeps from the lesion mask: the camera's blur spreads the lesion
    a pixel past its mask, and the gap scales with the image so that the 32-px training cache of a
    128-px image still shows skin between the two (4 px at 128, at least 2)."""
    return max(2, round(0.03 * image_size))


def place_marker(mask: np.ndarray, radius: float, gap: int, target: tuple[float, float]) -> tuple[int, int]:
    """The marker's centre (x, y; integer pixels) nearest `target` among the centres where a disc of
    `radius` (its pixels: centres within radius + 0.5, see `marker_alpha`) lies wholly inside the
    image and off `mask` (uint8 {0,255}) dilated by `gap` pixels. ValueError if there is none.
    """
    size = 2 * gap + 1
    forbidden = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))) > 0
    # A one-pixel forbidden frame: a disc that reaches no pixel centre of the frame stays inside.
    allowed = np.pad(~forbidden, 1, constant_values=False).astype(np.uint8) * 255
    clearance = cv2.distanceTransform(allowed, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    rows, columns = np.nonzero(clearance >= radius + 0.5)
    if not len(rows):
        raise ValueError(f"no room for a shortcut marker of radius {radius:.2f} px off the lesion "
                         f"(largest free radius {clearance.max() - 0.5:.2f} px); lower synthetic.shortcut.radius")
    best = np.argmin((columns - target[0]) ** 2 + (rows - target[1]) ** 2)
    return int(columns[best]), int(rows[best])


def marker_alpha(image_size: int, x: int, y: int, radius: float) -> np.ndarray:
    """The marker's ink weight per pixel (image_size x image_size, in [0, 1]): 1 inside, falling
    linearly to 0 over the pixel around the circle of `radius` about (x, y), a slightly soft edge."""
    yy, xx = np.mgrid[0:image_size, 0:image_size]
    return np.clip(radius + 0.5 - np.hypot(xx - x, yy - y), 0.0, 1.0)


def paint_marker(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """`image` (RGB uint8) with MARKER_COLOR blended in by `alpha`; every pixel outside it untouched."""
    blended = np.rint(alpha[..., None] * MARKER_COLOR + (1 - alpha[..., None]) * image).astype(np.uint8)
    return np.where(alpha[..., None] > 0, blended, image)


def _score(rng: np.random.Generator, truth: float, feature: str, bias: float, noise: float) -> int:
    low, high = {"asymmetry": (0, 2), "border": (0, 8), "color": (1, 6)}[feature]
    return int(np.clip(round(truth + bias + rng.normal(0, noise)), low, high))


def _write_csv(path: Path, header: list[str], rows: list[list[object]], *, delimiter: str = ",",
               bom: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as fh:
        writer = csv.writer(fh, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)


def _mturk_time(moment: datetime) -> str:
    return moment.strftime("%a %b %d %H:%M:%S PST %Y")


def generate(root: str | Path, settings: SyntheticSettings) -> list[str]:
    """Write the synthetic dataset under `root`; returns the written files relative to it."""
    root = Path(root)
    rng = np.random.default_rng(settings.seed)
    truth = _lesion_truth(rng, settings.n_images, settings.abnormal_fraction)
    ambiguity = settings.ambiguity
    truth["ambiguity"] = draw_ambiguity(np.random.default_rng([settings.seed, AMBIGUITY_STREAM]),
                                        truth["abnormal"].to_numpy(), ambiguity)
    blur = ambiguity.blur * settings.image_size / BLUR_REFERENCE_SIZE
    shortcut = settings.shortcut
    marks = (draw_shortcut(np.random.default_rng([settings.seed, SHORTCUT_STREAM]), truth["abnormal"].to_numpy(),
                           shortcut, settings.image_size) if shortcut.enabled else None)
    radius = shortcut.radius * settings.image_size
    geometry: list[tuple[int, int]] = []
    written: list[str] = []
    shortcut_written: list[str] = []
    for i, row in enumerate(truth.itertuples()):
        image, mask = draw_lesion(rng, settings.image_size, row.asymmetry, row.border, row.colors.split("|"),
                                  blur * row.ambiguity)
        shown = image
        if marks is not None:
            mark = marks.iloc[i]
            try:
                x, y = place_marker(mask, radius, marker_gap(settings.image_size), (mark.target_x, mark.target_y))
            except ValueError as error:
                raise ValueError(f"{row.image_id}: {error}") from None
            geometry.append((x, y))
            alpha = marker_alpha(settings.image_size, x, y, radius)
            marked = paint_marker(image, alpha)
            shown = marked if mark.marker_train else image
            for relative, array in ((f"truth/shortcut/clean/{row.image_id}.png", image),
                                    (f"truth/shortcut/trap/{row.image_id}.png", marked if mark.marker_trap else image),
                                    (f"truth/shortcut/marker/{row.image_id}.png", (alpha > 0).astype(np.uint8) * 255)):
                _write_png(root / relative, array)
                shortcut_written.append(relative)
        for relative, array in ((f"images/{row.image_id}.png", shown),
                                (f"masks/{row.image_id}_segmentation.png", mask)):
            _write_png(root / relative, array)
            written.append(relative)
    _write_csv(root / "ground_truth.csv", ["image_id", "melanoma", "seborrheic_keratosis"],
               [[r.image_id, f"{r.melanoma:.1f}", f"{r.seborrheic_keratosis:.1f}"] for r in truth.itertuples()])
    written.append("ground_truth.csv")
    features = ("asymmetry", "border", "color")

    # crowd: ENHANCE layout `ID,i,ii,iii`, one file per feature, three worker slots
    crowd = truth.sample(frac=settings.crowd_fraction, random_state=settings.seed).sort_values("image_id")
    # An ambiguous lesion scales each rater's noise draw rather than drawing more, so that no later
    # draw shifts and a clear lesion's scores are the same whatever the ambiguity settings.
    for feature in features:
        slots = [(rng.normal(0, 0.5), rng.uniform(0.6, 1.4)) for _ in range(3)]
        rows = [[r.image_id] + ["" if rng.random() < settings.missing_rate
                                else _score(rng, getattr(r, feature), feature, b,
                                            s * (1 + ambiguity.noise_gain * r.ambiguity))
                                for b, s in slots] for r in crowd.itertuples()]
        _write_csv(root / f"enhance/crowd/{feature}.csv", ["ID", "i", "ii", "iii"], rows)
        written.append(f"enhance/crowd/{feature}.csv")

    # students: `;`-separated, BOM, Dutch/English headers, trailing empty columns, mapped by position
    year = root / "enhance/student/2020-2021"
    n_students, width = settings.students_per_group, 3 * settings.students_per_group + 2
    type_rows = []
    # Each student's drawn bias and noise, under the names the ingest gives them (the k-th column of
    # a feature in a group is student s<k>): what models of each annotator should recover.
    student_truth: list[dict[str, object]] = []
    for g in range(1, settings.student_groups + 1):
        blocked = g % 2 == 1  # odd groups: A A A B B B C C C; even groups: A C B A C B ...
        order = ([f for f in features for _ in range(n_students)] if blocked
                 else [f for _ in range(n_students) for f in ("asymmetry", "color", "border")])
        type_rows.append([g] + [f.capitalize() for f in order] + [""] * (width - len(order)))
        dutch = {"asymmetry": "Symmetrie", "border": "Rand", "color": "Kleur"}
        names = dutch if g % 2 == 0 else {f: f.capitalize() for f in features}
        header = ["ID"] + [f"{names[f]}_{g}_{i + 1}" for i, f in enumerate(order)] + [""] * 2
        students = [(rng.normal(0, 0.4), rng.uniform(0.5, 1.2)) for _ in range(n_students)]
        student_truth += [{"annotator_group": f"student/2020-2021/group{g:02d}", "annotator": f"s{i + 1}",
                           "bias": bias, "noise": noise} for i, (bias, noise) in enumerate(students)]
        sample = truth.sample(frac=0.7, random_state=settings.seed + g).sort_values("image_id")
        occurrence: dict[str, int] = {}
        slot_student = []
        for f in order:
            slot_student.append(occurrence.get(f, 0))
            occurrence[f] = occurrence.get(f, 0) + 1
        rows = []
        for r in sample.itertuples():
            gain = 1 + ambiguity.noise_gain * r.ambiguity
            cells = ["" if rng.random() < settings.missing_rate else
                     _score(rng, getattr(r, f), f, students[slot_student[i]][0], students[slot_student[i]][1] * gain)
                     for i, f in enumerate(order)]
            rows.append([r.image_id] + cells + ["", ""])
        _write_csv(year / f"group{g:02d}.csv", header, rows, delimiter=";", bom=True)
        written.append(f"enhance/student/2020-2021/group{g:02d}.csv")
    _write_csv(year / "data_types.csv", ["group_num"] + [f"column_{i}" for i in range(1, width + 1)], type_rows,
               delimiter=";", bom=True)
    written.append("enhance/student/2020-2021/data_types.csv")

    written += _write_mturk(root, rng, truth, settings)
    (root / "truth").mkdir(parents=True, exist_ok=True)
    truth.to_csv(root / "truth/images.csv", index=False)
    written.append("truth/images.csv")
    pd.DataFrame(student_truth, columns=["annotator_group", "annotator", "bias", "noise"]).to_csv(
        root / "truth/students.csv", index=False)
    written.append("truth/students.csv")
    if marks is not None:
        x, y = np.array(geometry).reshape(-1, 2).T
        pd.DataFrame({
            "image_id": truth["image_id"], "abnormal": truth["abnormal"],
            "marker_train": marks["marker_train"].astype(int), "marker_trap": marks["marker_trap"].astype(int),
            "marker_x": x, "marker_y": y, "marker_radius": radius,
        }).to_csv(root / "truth/shortcut.csv", index=False)
        written += ["truth/shortcut.csv", *shortcut_written]
    return written


def _write_png(path: Path, array: np.ndarray) -> None:
    """`array` (RGB uint8, or a single-channel mask) as a PNG at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if array.ndim == 3 else array)


def _write_mturk(root: Path, rng: np.random.Generator, truth: pd.DataFrame, settings: SyntheticSettings) -> list[str]:
    """An MTurk export with the schema of Batch_4611894 (choice and confidence each split over two columns)."""
    workers = [f"ASYN{w:04d}" for w in range(settings.n_workers)]
    n_spam = max(1, round(settings.spammer_fraction * settings.n_workers))
    spammer = dict(zip(workers, [True] * n_spam + [False] * (settings.n_workers - n_spam), strict=True))
    ids, labels = truth.image_id.to_numpy(), truth.abnormal.to_numpy()
    start = datetime(2021, 11, 22, 3, 0, 0)
    clock = {w: start + timedelta(minutes=float(rng.uniform(0, 30))) for w in workers}
    header = ["HITId", "HITTypeId", "Title", "AssignmentId", "WorkerId", "AssignmentStatus", "AcceptTime",
              "SubmitTime", "WorkTimeInSeconds", "LifetimeApprovalRate", "Input.image1_title", "Input.image1_label",
              "Input.image2_title", "Input.image2_label", "Input.image3_title", "Input.image3_label",
              "Answer.equal", "Answer.equal.label", "Answer.howMuch", "Answer.howMuch.label"]
    history = {w: int(rng.choice([0, 0, 2, 5, 11])) for w in workers}
    # As in CROWDSIM, the crowd labels a pool of candidates apart from the expert-labelled anchors:
    # a fifth of the lesions (at least two), which the expert-only training sets leave out.
    order = rng.permutation(len(ids))
    n_candidates = max(2, round(CANDIDATE_FRACTION * len(ids)))
    candidates, experts = order[:n_candidates], order[n_candidates:]
    rows = []
    started: set[str] = set()
    for h in range(settings.n_hits):
        anchor = rng.choice(experts)
        a, b = rng.choice(candidates, 2, replace=False)
        for w in rng.choice(workers, settings.assignments_per_hit, replace=False):
            first = w not in started
            started.add(w)
            if spammer[w]:
                choice = "AB"[rng.integers(2)]
                seconds = int(rng.integers(3, 9))
                confidence = CONFIDENCE[rng.integers(5)]
            else:
                right = "A" if labels[a] == labels[anchor] else "B"
                if labels[a] == labels[b]:
                    right = "AB"[rng.integers(2)]
                choice = right if rng.random() < 0.85 else ("B" if right == "A" else "A")
                seconds = int(rng.integers(65, 150)) if first else int(rng.integers(15, 150))
                confidence = CONFIDENCE[int(rng.choice([1, 2, 3, 3, 4]))]
            accept = clock[w]
            clock[w] = accept + timedelta(seconds=seconds + int(rng.integers(5, 60)))
            split = rng.random() < 0.5
            n = history[w]
            rows.append([f"SYNHIT{h:04d}", "SYNTYPE", "Similarity Ratings of Skin Lesions", f"SYNASG{h:04d}{w[-4:]}", w,
                         "Submitted", _mturk_time(accept), _mturk_time(accept + timedelta(seconds=seconds)), seconds,
                         f"{100 if n else 0}% ({n}/{n})", ids[anchor], f"{float(labels[anchor]):.1f}",
                         ids[a], int(labels[a]), ids[b], int(labels[b]),
                         "" if split else choice, choice if split else "",
                         confidence if not split else "", "" if not split else confidence])
    _write_csv(root / "crowdsim/batch_results/Batch_synthetic_batch_results.csv", header, rows)
    (root / "truth").mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"worker_id": workers, "is_spammer": [spammer[w] for w in workers]}).to_csv(
        root / "truth/workers.csv", index=False)
    return ["crowdsim/batch_results/Batch_synthetic_batch_results.csv", "truth/workers.csv"]
