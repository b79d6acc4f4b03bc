# Acquisition: every configured source ends up under resources/raw/ in the mirror layout, with a
# marker file recording how each file was obtained. The embedded default is generated instead.


rule fetch_source:
    input:
        mirror_inputs,
        checksum_list,
        manifest=MANIFEST_FILE,
    output:
        f"{FETCHED}/{{source}}.json",
    log:
        f"{LOGS}/fetch/{{source}}.log",
    wildcard_constraints:
        source="|".join(MANIFEST) or "none",
    resources:
        downloads=1,
    params:
        mirror=config["mirror"],
        download=config["download"],
        raw=lambda wildcards, output: raw_root(output[0]),
    script:
        script_path("fetch_source.py")


rule fetch_url_list:
    input:
        csv=lambda wildcards: URL_LISTS[wildcards.name]["csv"],
    output:
        f"{FETCHED}/url_list_{{name}}.json",
    log:
        f"{LOGS}/fetch/url_list_{{name}}.log",
    resources:
        downloads=1,
    params:
        entry=lambda wildcards: URL_LISTS[wildcards.name],
        mirror=config["mirror"],
        download=config["download"],
        raw=lambda wildcards, output: raw_root(output[0]),
    script:
        script_path("fetch_url_list.py")


rule synthesize:
    output:
        # The shortcut trap's truth (which images show the marker, where it is), only when it is
        # drawn; the keyword outputs follow, as snakefmt puts an unpacked dict first.
        **({"truth_shortcut": f"{RAW}/synthetic/truth/shortcut.csv"} if SHORTCUT else {}),
        marker=f"{FETCHED}/synthetic.json",
        # The simulation's truth about its MTurk workers and its lesions, read by the crowd
        # stage's spammer check and the truth checks (truth.smk).
        truth_workers=f"{RAW}/synthetic/truth/workers.csv",
        truth_images=f"{RAW}/synthetic/truth/images.csv",
        # each simulated student's bias and noise, read by the truth checks of annotator models
        truth_students=f"{RAW}/synthetic/truth/students.csv",
    log:
        f"{LOGS}/synthesize.log",
    params:
        settings=SYNTHETIC_SETTINGS,
        seed=config["seed"],
        raw=lambda wildcards, output: raw_root(output.marker),
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
