"""Speed of the automated features on ../shared/data, single core (medians, ms/image).

    python -m crowdskin.automated.bench [--shared ../shared/data] [--masks 200] [--repeat 1] [--full-color]
    crowdskin bench automated            (the same, 200 masks, each feature timed 5 times per image)

Masks: every k-th of the 2000 full-resolution ISIC 2017 masks (decoding is timed apart from the
features, whose target is <= 20 ms for asymmetry + border). Color: the ten 6-MP images of
isic_archive_sample/fullsize (target <= 0.5 s). `--full-color` also runs SLIC at full resolution
and reports how many color scores the downscaling changed (slow: ~10 s per image).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from functools import partial
from pathlib import Path

import cv2

from .asymmetry import asymmetry
from .border import border
from .color import color
from .preprocessing import BadInputError, find_lesion, read_mask, read_rgb, resize_mask


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": round(statistics.median(ordered), 2),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 2),
        "max_ms": round(ordered[-1], 2),
        "n": len(ordered),
    }


def _median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        fn()
        times.append(_ms(start))
    return statistics.median(times)


def bench_masks(shared: Path, n_masks: int = 200, variant: str = "study", repeat: int = 1) -> dict:
    cv2.setNumThreads(1)
    paths = sorted((shared / "isic2017" / "masks").glob("*_segmentation.png"))
    step = max(1, len(paths) // n_masks)
    times: dict[str, list[float]] = {"decode": [], "lesion": [], "asymmetry": [], "border": [], "asymmetry+border": []}
    megapixels = []
    for path in paths[::step][:n_masks]:
        start = time.perf_counter()
        mask = read_mask(path, [])
        times["decode"].append(_ms(start))
        megapixels.append(mask.size / 1e6)
        try:
            lesion = find_lesion(mask, [])
            lesion_ms = _median_ms(lambda mask=mask: find_lesion(mask, []), repeat)
            asym_ms = _median_ms(partial(asymmetry, lesion, variant=variant), repeat)
            border_ms = _median_ms(partial(border, lesion, variant=variant), repeat)
        except BadInputError:
            continue
        times["lesion"].append(lesion_ms)
        times["asymmetry"].append(asym_ms)
        times["border"].append(border_ms)
        # the target covers everything after decoding: component search, asymmetry, border
        times["asymmetry+border"].append(lesion_ms + asym_ms + border_ms)
    return {name: _summary(values) for name, values in times.items()} | {
        "median_megapixels": round(statistics.median(megapixels), 2)
    }


def bench_color(shared: Path, *, full_resolution: bool = False, variant: str = "study", repeat: int = 1) -> dict:
    cv2.setNumThreads(1)
    folder = shared / "isic_archive_sample" / "fullsize"
    decode, fast, full, changed, megapixels = [], [], [], [], []
    for image_path in sorted(folder.glob("*.jpg")):
        notes: list[str] = []
        start = time.perf_counter()
        rgb = read_rgb(image_path, notes)
        mask = resize_mask(read_mask(folder / f"{image_path.stem}_segmentation.png", notes), rgb.shape[:2], notes)
        decode.append(_ms(start))
        megapixels.append(mask.size / 1e6)
        quick = color(rgb, mask, variant=variant)
        fast.append(_median_ms(partial(color, rgb, mask, variant=variant), repeat))
        if full_resolution:
            start = time.perf_counter()
            slow = color(rgb, mask, variant=variant, max_pixels=10**9)
            full.append(_ms(start))
            changed.append({"image": image_path.stem, "downscaled": quick.score, "full": slow.score})
    result = {"decode": _summary(decode), "color": _summary(fast), "megapixels": [round(m, 1) for m in megapixels]}
    if full_resolution:
        result["color_full_resolution"] = _summary(full)
        result["scores"] = changed
        result["scores_changed"] = sum(c["downscaled"] != c["full"] for c in changed)
    return result


def run_benchmarks(shared: Path = Path("../shared/data"), *, n_masks: int = 200, full_color: bool = False,
                   repeat: int = 1) -> dict:
    """Everything above, plus this process's peak resident memory (one worker's footprint)."""
    result = {"masks": bench_masks(shared, n_masks, repeat=repeat),
              "color": bench_color(shared, full_resolution=full_color, repeat=repeat)}
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def run(data_dir: Path, repeat: int) -> dict:
    """Entry point of `crowdskin bench automated` (each feature timed `repeat` times per image)."""
    return run_benchmarks(data_dir, n_masks=200, repeat=repeat)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--masks", type=int, default=200)
    parser.add_argument("--full-color", action="store_true")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    result = run_benchmarks(args.shared, n_masks=args.masks, full_color=args.full_color, repeat=args.repeat)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
