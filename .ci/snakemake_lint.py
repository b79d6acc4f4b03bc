"""`snakemake --lint` for this workflow: fails on any finding but the one this project's design
answers otherwise (a conda environment or container per rule: one pinned virtualenv, installed by
`make install`, runs every rule, and no container can be built and tested on these machines)."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

ACCEPTED = {"Specify a conda environment or container for each rule."}
REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    snakemake = Path(sys.executable).with_name("snakemake")
    configs = sys.argv[1:] or [str(REPO / "config" / "config.yaml")]
    failed = False
    for config in configs:
        found = False
        with tempfile.TemporaryDirectory() as workdir:
            result = subprocess.run(
                [str(snakemake), "--lint", "-s", str(REPO / "Snakefile"), "-d", workdir, "--configfile", config],
                capture_output=True, text=True,
            )
        output = result.stdout + result.stderr
        if "Lints for" not in output and result.returncode != 0:
            print(output, file=sys.stderr)
            return result.returncode
        # Each finding is a block "Lints for <where>:" followed by "    * <title>:" lines.
        for block in re.split(r"^(?=Lints for )", output, flags=re.M):
            titles = re.findall(r"^\s+\* (.+?):\s*$", block, flags=re.M)
            unexpected = [title for title in titles if title not in ACCEPTED]
            if unexpected:
                found = failed = True
                print(block.rstrip(), file=sys.stderr)
        print(f"snakemake --lint ({Path(config).name}): {'findings above' if found else 'clean'}"
              f" (accepted: {', '.join(sorted(ACCEPTED))})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
