"""`crowdskin` command line: benchmarks and maintenance helpers (the workflow itself is `snakemake`)."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

# name -> "module:function"; each function takes (data_dir: Path, repeat: int) and returns a dict of figures
BENCHMARKS: dict[str, str] = {
    "ingest": "crowdskin.cli:bench_ingest",
    "automated": "crowdskin.automated.bench:run",
    "train": "crowdskin.train.bench:run",
}



def checkout_root() -> Path | None:
    """The source checkout this package runs from (src/crowdskin/ two levels under a folder holding
    pyproject.toml and workflow/rules/: a clone, or an editable install of one); None for an
    installed wheel, which has no checkout beside it."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "workflow" / "rules").is_dir() else None


def default_data() -> Path | None:
    """Where `crowdskin bench` reads the real sample unless given --data: $CROWDSKIN_SHARED_DATA (as
    the tests), else ../shared/data beside the checkout; None outside a checkout without the variable."""
    if os.environ.get("CROWDSKIN_SHARED_DATA"):
        return Path(os.environ["CROWDSKIN_SHARED_DATA"])
    root = checkout_root()
    return root.parent / "shared" / "data" if root else None


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_ingest(data_dir: Path, repeat: int) -> dict[str, object]:
    """Ingest the whole real sample (config/real-sample.yaml's ingest section) from `data_dir`."""
    import yaml

    from crowdskin.config import packaged_config
    from crowdskin.ingest import ingest_all

    config = yaml.safe_load(packaged_config("real-sample.yaml").read_text(encoding="utf-8"))
    result = ingest_all(config["ingest"], data_dir)
    seconds = median_seconds(lambda: ingest_all(config["ingest"], data_dir), repeat)
    return {"ingest_real_sample_s": round(seconds, 3), "lesions": len(result.images),
            "annotations": len(result.annotations), "quarantined": len(result.quarantine)}


def _resolve(spec: str) -> Callable[[Path, int], dict[str, object]]:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crowdskin", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="run benchmarks on the real sample; prints JSON (medians)")
    bench.add_argument("names", nargs="*", metavar="NAME", help=f"any of {', '.join(BENCHMARKS)} (default: all)")
    bench.add_argument("--data", type=Path, help="folder laid out as ../shared/data (default: $CROWDSKIN_SHARED_DATA, "
                       "else ../shared/data beside the checkout when crowdskin runs from one)")
    bench.add_argument("--repeat", type=int, default=5)
    checks = sub.add_parser("checksums", help="write a sha256sum list of a mirror folder (for workflow/checksums/)")
    checks.add_argument("folder", type=Path)
    checks.add_argument("output", type=Path)
    example = sub.add_parser("example-study", help="write the example study in the generic input formats "
                             "(config/example-study.yaml reads it from resources/example-study)")
    example.add_argument("folder", type=Path)
    example.add_argument("--n-images", type=int, default=200)
    example.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    if args.command == "bench":
        args.data = args.data or default_data()
        if args.data is None:
            print("crowdskin bench: no data folder: give --data DIR (laid out as ../shared/data) or set "
                  "CROWDSKIN_SHARED_DATA; ../shared/data is the default only beside a checkout", file=sys.stderr)
            return 2
        if not args.data.is_dir():
            print(f"crowdskin bench: no data folder at {args.data} (give --data)", file=sys.stderr)
            return 2
        unknown = sorted(set(args.names) - set(BENCHMARKS))
        if unknown:
            parser.error(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
        results = {}
        for name in args.names or list(BENCHMARKS):
            try:
                results[name] = _resolve(BENCHMARKS[name])(args.data, args.repeat)
            except ModuleNotFoundError as error:
                results[name] = {"skipped": str(error)}
        print(json.dumps(results, indent=2))
    elif args.command == "checksums":
        from crowdskin.acquire.checksums import write_checksum_list

        files = sorted(p.relative_to(args.folder).as_posix() for p in args.folder.rglob("*") if p.is_file())
        write_checksum_list(args.folder, files, args.output)
        print(f"{len(files)} files -> {args.output}")
    elif args.command == "example-study":
        from crowdskin.example_study import write_example_study

        written = write_example_study(args.folder, n_images=args.n_images, seed=args.seed)
        print(f"{len(written)} files -> {args.folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
