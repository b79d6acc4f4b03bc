"""Border irregularity after Jaworek-Korjakowska (2015), as the study's code (7_border.py) computes it.

The lesion is centred and rotated (major axis horizontal); the bounding box's diagonals meet the
lesion at four points that split the border into top/right/bottom/left parts; each part's distances
to the box edge in its direction are joined into one signal, smoothed (Gaussian, sigma 0.5, window
15) and the score is its number of peaks.

The study warps the 0/255 mask twice with bilinear interpolation (translation, then rotation) and
then keeps only pixels exactly equal to 1.0. A bilinear sample is exactly 1.0 iff its whole 2x2
neighbourhood is lesion, so the study's pixel set equals a nearest (floor) sample of the mask eroded
by a 2x2 square, twice. That identity lets us reproduce the study pixel for pixel with one OpenCV
nearest warp of the lesion's bounding box instead of two full-frame skimage warps (0.13 s/mask).

Variant ``paper`` uses the largest component only, no translation (the border is translation
invariant, and the study's swapped offsets can push lesions out of the frame) and no erosion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d
from skimage.draw import line

from .asymmetry import study_rotation
from .preprocessing import BadInputError, Lesion, largest_label

SIGMA = 0.5
WINDOW = 15


@dataclass(frozen=True)
class BorderScore:
    score: int
    signal_length: int


_KERNEL_2X2 = np.ones((2, 2), np.uint8)


def _erode_2x2(image: np.ndarray, rows: bool = True, cols: bool = True) -> np.ndarray:
    """out[i, j] = AND of image[i:i+2, j:j+2] (outside = 0); a direction is skipped when its
    bilinear weight is exactly zero (integer shift)."""
    if rows and cols:
        out = cv2.erode(image, _KERNEL_2X2, anchor=(0, 0), borderType=cv2.BORDER_CONSTANT, borderValue=0)
        return out
    out = image.copy()
    if rows:
        out[:-1] &= image[1:]
        out[-1] = 0
    if cols:
        shifted = out.copy()
        out[:, :-1] &= shifted[:, 1:]
        out[:, -1] = 0
    return out


def rotated_border_pixels(lesion: Lesion, variant: str = "study") -> tuple[np.ndarray, int, int]:
    """The centred, rotated lesion's pixel set on the study's canvas, as (array, row0, col0) where
    the array covers canvas rows row0.. and cols col0.. (everything outside it is background)."""
    height, width = lesion.shape
    study = variant == "study"
    cr, cc = lesion.centroid
    off_r, off_c = lesion.offset
    if study:
        # the study warps every component; only the bounding box of the largest is used later
        r0, c0 = lesion.offset
        source = lesion.all_crop
    else:
        r0, c0, r1, c1 = lesion.bbox
        source = lesion.crop[r0 - off_r : r1 - off_r, c0 - off_c : c1 - off_c]
    r1, c1 = r0 + source.shape[0], c0 + source.shape[1]
    pad = 3
    # crop in source coordinates with a zero margin
    crop = cv2.copyMakeBorder(source, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    base_r, base_c = r0 - pad, c0 - pad  # crop[0, 0] = source[base_r, base_c]
    if study:
        shift_row = width / 2 - cc  # the study's swapped (x, y) translation
        shift_col = height / 2 - cr
        fy, fx = math.floor(shift_row), math.floor(shift_col)
        first = _erode_2x2(crop, rows=shift_row != fy, cols=shift_col != fx)
        # translated frame T(r, c) = first[source r + fy]: T coords = source coords - (fy, fx)
        base_r -= fy
        base_c -= fx
        # T is the frame [0, H) x [0, W): clip what the translation pushed out
        rr = np.arange(crop.shape[0]) + base_r
        cc_ = np.arange(crop.shape[1]) + base_c
        first[(rr < 0) | (rr >= height), :] = 0
        first[:, (cc_ < 0) | (cc_ >= width)] = 0
        base = _erode_2x2(first)
    else:
        base = crop
    rotation, (out_rows, out_cols) = study_rotation((height, width), -lesion.orientation * (180 / math.pi))
    # output region: forward-map the crop's corners through the rotation
    inverse = np.linalg.inv(rotation)
    corners = np.array(
        [[base_c, base_r, 1], [base_c + base.shape[1], base_r, 1], [base_c, base_r + base.shape[0], 1],
         [base_c + base.shape[1], base_r + base.shape[0], 1]], dtype=float
    )
    mapped = corners @ inverse.T
    o_c0 = max(0, int(math.floor(mapped[:, 0].min())) - 2)
    o_r0 = max(0, int(math.floor(mapped[:, 1].min())) - 2)
    o_c1 = min(out_cols, int(math.ceil(mapped[:, 0].max())) + 3)
    o_r1 = min(out_rows, int(math.ceil(mapped[:, 1].max())) + 3)
    # output (j, i) -> canvas (o_c0 + j, o_r0 + i) -> T coords -> crop coords; floor sampling (the
    # 2x2 erosion already stands for the bilinear neighbourhood) = OpenCV's rounding after -0.5
    matrix = rotation @ np.array([[1, 0, o_c0], [0, 1, o_r0], [0, 0, 1]], dtype=float)
    matrix[0, 2] -= base_c + (0.5 if study else 0.0)
    matrix[1, 2] -= base_r + (0.5 if study else 0.0)
    out = cv2.warpAffine(
        base, matrix[:2], (max(1, o_c1 - o_c0), max(1, o_r1 - o_r0)),
        flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )
    if study:
        window = _exact_at_edges(out, base, rotation, (o_r0, o_c0), (base_r, base_c))
        if window is not None:
            # every lesion pixel lies in the window: the rest is background, which the border
            # signal reads in absolute canvas coordinates, so dropping it changes nothing
            y0, y1, x0, x1 = window
            return out[y0:y1, x0:x1], o_r0 + y0, o_c0 + x0
    return out, o_r0, o_c0


def _exact_at_edges(out: np.ndarray, base: np.ndarray, rotation: np.ndarray, out_origin: tuple[int, int],
                    base_origin: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """Redo, in float64 as skimage does, the samples next to the lesion's edge.

    OpenCV's warp quantises source coordinates to 1/1024 pixel, so a sample that falls within that
    distance of a pixel edge can land on the other pixel; only samples near the edge can change the
    result, and re-sampling just those keeps the study's exact pixel set at a fraction of the cost.
    Returns the window (rows y0:y1, cols x0:x1 of `out`) outside which `out` is zero, None if empty.
    """
    # the band: pixels whose 3x3 neighbourhood (outside = 0) is not constant; none lies more than a
    # pixel away from the lesion's bounding box, so only that box (plus one) is searched
    x, y, w, h = cv2.boundingRect(out)
    if w == 0:
        return None
    x0, y0 = max(0, x - 1), max(0, y - 1)
    y1, x1 = min(out.shape[0], y + h + 1), min(out.shape[1], x + w + 1)
    window = out[y0:y1, x0:x1]
    # dilation minus erosion of a 0/1 image = their XOR
    band = cv2.morphologyEx(window, cv2.MORPH_GRADIENT, None, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    points = cv2.findNonZero(band)
    if points is None:
        return y0, y1, x0, x1
    points = points.reshape(-1, 2)  # (x, y); OpenCV 5 returns N x 2, 4.x N x 1 x 2
    cols = points[:, 0] + x0
    rows = points[:, 1] + y0
    canvas_c = (cols + out_origin[1]).astype(np.float64)
    canvas_r = (rows + out_origin[0]).astype(np.float64)
    m = rotation
    # skimage _warp_fast: x = M00*c + M01*r + M02, y = M10*c + M11*r + M12
    x = m[0, 0] * canvas_c + m[0, 1] * canvas_r + m[0, 2]
    y = m[1, 0] * canvas_c + m[1, 1] * canvas_r + m[1, 2]
    bc = np.floor(x).astype(np.int64) - base_origin[1]
    br = np.floor(y).astype(np.int64) - base_origin[0]
    inside = (br >= 0) & (br < base.shape[0]) & (bc >= 0) & (bc < base.shape[1])
    values = np.zeros(rows.shape, np.uint8)
    values[inside] = base[br[inside], bc[inside]]
    out[rows, cols] = values
    return y0, y1, x0, x1


def borderline_signal(rotated: np.ndarray, row0: int, col0: int) -> np.ndarray:
    """The study's joined top/right/bottom/left distance signal (absolute canvas coordinates)."""
    # pad so the study's indices one past the bounding box stay inside the array
    pad = 2
    image = cv2.copyMakeBorder(rotated, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    row0 -= pad
    col0 -= pad
    count, (minr, minc, maxr, maxc) = _largest_bbox(image)  # local coordinates, max exclusive
    if count < 1:
        raise BadInputError("border: no lesion pixels left after centring and rotation")
    mid_r, mid_c = int(minr + (maxr - minr) / 2), int(minc + (maxc - minc) / 2)

    def first_hit(r_start: int, c_start: int) -> tuple[int, int]:
        rr, cc = line(r_start, c_start, mid_r, mid_c)
        inside = (rr >= 0) & (rr < image.shape[0]) & (cc >= 0) & (cc < image.shape[1])
        on_lesion = image[np.clip(rr, 0, image.shape[0] - 1), np.clip(cc, 0, image.shape[1] - 1)] > 0
        hits = np.flatnonzero(inside & on_lesion)
        if hits.size == 0:
            raise BadInputError("border: a bounding-box diagonal never meets the lesion")
        return int(rr[hits[0]]), int(cc[hits[0]])

    w_pt = first_hit(minr, minc)
    v_pt = first_hit(minr, maxc)
    u_pt = first_hit(maxr, maxc)
    t_pt = first_hit(maxr, minc)

    # each part searches lines of the image for their first lesion pixel; OpenCV's transpose/flip
    # make every line a contiguous row, where a boolean argmax stops at the first hit
    # top: columns W..V-1, first lesion row from minr down to mid_r - 1; value = row
    idx, has = _first_hits(image[minr:mid_r, w_pt[1] : v_pt[1]], "down")
    top = (idx + minr + row0)[has]
    # right: rows V..U-1, first lesion col from maxc leftwards to mid_c + 1; value = 2 mid_c - col
    idx, has = _first_hits(image[v_pt[0] : u_pt[0], mid_c + 1 : maxc + 1], "left")
    right = (2 * (mid_c + col0) - (maxc - idx + col0))[has]
    # bottom: columns T..U-1, first lesion row from maxr upwards to mid_r + 1; value = 2 mid_r - row
    idx, has = _first_hits(image[mid_r + 1 : maxr + 1, t_pt[1] : u_pt[1]], "up")
    bottom = (2 * (mid_r + row0) - (maxr - idx + row0))[has]
    # left: rows T down to W+1, first lesion col from minc rightwards to mid_c - 1; value = col
    idx, has = _first_hits(image[w_pt[0] + 1 : t_pt[0] + 1, minc:mid_c], "right_upwards")
    left = (idx + minc + col0)[has]
    parts = [top, right, bottom, left]
    names = ["top", "right", "bottom", "left"]
    for name, part in zip(names, parts, strict=True):
        if part.size == 0:
            raise BadInputError(f"border: the {name} part of the border is empty (lesion too small or thin)")
    joined = [parts[0].astype(np.int64)]
    for part in parts[1:]:
        joined.append(part.astype(np.int64) + (joined[-1][-1] - part[0]))
    return np.concatenate(joined)


def _largest_bbox(image: np.ndarray) -> tuple[int, tuple[int, int, int, int]]:
    """(component count, bounding box of the largest 8-connected component, max exclusive; ties ->
    the later label, as `largest_component`). A single component's box is its outer contour's."""
    contours, hierarchy = cv2.findContours(image, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return 0, (0, 0, 0, 0)
    outer = np.flatnonzero(hierarchy[0, :, 3] == -1)
    if outer.size == 1:
        x, y, w, h = cv2.boundingRect(contours[int(outer[0])])
        return 1, (y, x, y + h, x + w)
    n_labels, _, stats, keep = largest_label(image)
    x, y, w, h = (int(v) for v in stats[keep, :4])  # CC_STAT_LEFT, TOP, WIDTH, HEIGHT
    return n_labels - 1, (y, x, y + h, x + w)


def _first_hits(block: np.ndarray, direction: str) -> tuple[np.ndarray, np.ndarray]:
    """(index of the first lesion pixel, whether there is one) along each line of a 0/1 block:
    "down" each column from the top, "up" each column from the bottom, "left" each row from the
    right end, "right_upwards" each row from the left end, rows taken from the last upwards."""
    if block.size == 0:
        # as the argmax over the empty block would (an error or empty parts), left to NumPy
        lines = {"down": block, "up": block[::-1, :], "left": block[:, ::-1].T, "right_upwards": block[::-1, :].T}
        hits = lines[direction] > 0
        return np.argmax(hits, axis=0), hits.any(axis=0)
    if direction == "down":
        lines = cv2.transpose(block)
    elif direction == "up":
        lines = cv2.rotate(block, cv2.ROTATE_90_CLOCKWISE)
    elif direction == "left":
        lines = cv2.flip(block, 1)
    else:
        lines = cv2.flip(block, 0)
    idx = np.argmax(lines.view(bool), axis=1)
    return idx, lines[np.arange(lines.shape[0]), idx] > 0


def count_turning_points(signal: np.ndarray, sigma: float = SIGMA, window: int = WINDOW) -> int:
    """Peaks of the Gaussian-smoothed signal. Kept in the signal's integer dtype as the study's
    gaussian_filter1d call on a list of ints does (its output is truncated to int64)."""
    truncate = (((window - 1) / 2) - 0.5) / sigma
    smoothed = gaussian_filter1d(signal, sigma=sigma, truncate=truncate)
    return count_peaks(smoothed)


def count_peaks(signal: np.ndarray) -> int:
    """len(scipy.signal.find_peaks(signal, height=0)[0]): the runs of equal values (plateaus count
    once) higher than both neighbouring runs, neither first nor last, and at least 0.

    Counted here rather than by find_peaks because importing scipy.signal took 0.45 s of every
    shard job's 1.3 s start-up; tests/test_automated.py checks the count against find_peaks.
    """
    if signal.size < 3:
        return 0
    runs = signal[np.r_[0, np.flatnonzero(np.diff(signal)) + 1]]
    middle = runs[1:-1]
    return int(np.count_nonzero((middle > runs[:-2]) & (middle > runs[2:]) & (middle >= 0)))


def border(lesion: Lesion, *, variant: str = "study", sigma: float = SIGMA, window: int = WINDOW) -> BorderScore:
    if variant not in ("study", "paper"):
        raise ValueError(f"unknown border variant {variant!r} (study, paper)")
    rotated, row0, col0 = rotated_border_pixels(lesion, variant)
    signal = borderline_signal(rotated, row0, col0)
    return BorderScore(count_turning_points(signal, sigma, window), int(signal.size))
