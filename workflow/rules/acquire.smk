# Acquisition: every configured source ends up under resources/raw/ in the mirror layout, with a
# marker file recording how each file was obtained. The embedded default is generated instead.
from crowdskin.acquire.fetch import mirror_files
from crowdskin.acquire.manifest import load_manifest

MANIFEST_FILE = Path(workflow.basedir) / "workflow" / "manifest.yaml"
CHECKSUM_DIR = Path(workflow.basedir) / "workflow" / "checksums"
MANIFEST = load_manifest(MANIFEST_FILE)
URL_LISTS = {entry["name"]: entry for entry in config["url_lists"]}

_unknown = [s for s in config["sources"] if s not in MANIFEST]
if _unknown:
    raise WorkflowError(
        f"config 'sources': unknown source(s) {_unknown}; {MANIFEST_FILE} defines {sorted(MANIFEST)}"
    )


def fetched_markers():
    markers = [f"{FETCHED}/{source}.json" for source in config["sources"]]
    markers += [f"{FETCHED}/url_list_{name}.json" for name in URL_LISTS]
    if config["synthetic"]["enabled"]:
        markers.append(f"{FETCHED}/synthetic.json")
    return markers


def mirror_inputs(wildcards):
    """The mirror's files, so that a changed mirror file re-runs its fetch (and re-verifies it)."""
    if not config["mirror"]:
        return []
    source = MANIFEST[wildcards.source]
    base = Path(config["mirror"]) / source.dest
    return [str(base / rel) if rel else str(base) for rel, _ in mirror_files(source, Path(config["mirror"]), CHECKSUM_DIR)]


def checksum_list(wildcards):
    source = MANIFEST[wildcards.source]
    return [str(CHECKSUM_DIR / source.checksums)] if source.checksums else []


rule fetch_source:
    input:
        mirror_inputs,
        checksum_list,
        manifest=MANIFEST_FILE,
    output:
        f"{FETCHED}/{{source}}.json",
    wildcard_constraints:
        source="|".join(MANIFEST) or "none",
    params:
        mirror=config["mirror"],
        download=config["download"],
        checksum_dir=str(CHECKSUM_DIR),
    resources:
        downloads=1,
    log:
        f"{LOGS}/fetch/{{source}}.log",
    script:
        script_path("fetch_source.py")


rule fetch_url_list:
    input:
        csv=lambda wildcards: URL_LISTS[wildcards.name]["csv"],
    output:
        f"{FETCHED}/url_list_{{name}}.json",
    params:
        entry=lambda wildcards: URL_LISTS[wildcards.name],
        mirror=config["mirror"],
        download=config["download"],
    resources:
        downloads=1,
    log:
        f"{LOGS}/fetch/url_list_{{name}}.log",
    script:
        script_path("fetch_url_list.py")


rule synthesize:
    output:
        f"{FETCHED}/synthetic.json",
    params:
        settings=config["synthetic"],
        seed=config["seed"],
    log:
        f"{LOGS}/synthesize.log",
    script:
        script_path("synthesize.py")


rule download_report:
    input:
        fetched_markers(),
    output:
        f"{DATA}/download_report.csv",
    log:
        f"{LOGS}/download_report.log",
    script:
        script_path("download_report.py")


ALL_TARGETS += [f"{DATA}/download_report.csv"]
