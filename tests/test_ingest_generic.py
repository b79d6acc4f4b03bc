"""A study's own files (format: generic diagnosis tables, long annotation tables): every bad row of
each field quarantined with its file, row, column and reason; rows in = kept + quarantined."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from conftest import assert_ingest_balances
from crowdskin.config import ConfigError, section
from crowdskin.ingest import MalformedFileError, ingest_all

DIAGNOSIS = {"dataset": "derm", "format": "generic", "csv": "labels.csv",
             "columns": {"image_id": "lesion", "label": "finding", "group_id": "patient"},
             "positive": ["malignant"], "negative": ["benign"], "images": ["photos"], "masks": "masks"}
ANNOTATIONS = {"dataset": "derm", "file": "scores.csv",
               "columns": {"image_id": "lesion", "annotator": "rater", "source": "kind", "group": "cohort"},
               "features": {"pigment_network": {"min": 0, "max": 2},
                            "regression": {"levels": ["absent", "present", "marked"]}}}


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture()
def study(tmp_path: Path) -> Path:
    _write(tmp_path / "labels.csv",
           "lesion,finding,patient\n"
           "L1,malignant,P1\n"     # 1 kept: image in a nested folder, upper-case suffix, a mask
           "L2,benign,P1\n"        # 2 kept: .jpeg
           "L3,benign,\n"          # 3 kept: no patient, no image found (kept, not trainable)
           ",benign,P2\n"          # 4 empty id
           "L1,benign,P2\n"        # 5 duplicate id
           "L4,,P2\n"              # 6 empty label
           "L5,unsure,P3\n"        # 7 neither positive nor negative
           "L6,malignant,P3\n")    # 8 two image files named L6
    for name in ("photos/P1/L1.JPG", "photos/P1/deeper/L2.jpeg", "photos/a/L6.png", "photos/b/L6.jpg",
                 "photos/notes.txt", "masks/x/L1_mask.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    for name in ("photos/P1/L1.JPG", "photos/P1/deeper/L2.jpeg"):  # real images: ingest decodes them
        Image.new("RGB", (4, 4), (120, 80, 60)).save(tmp_path / name, format="JPEG")
    _write(tmp_path / "scores.csv",
           "lesion,rater,kind,cohort,feature,value\n"
           "L1,r1,student,class_a,pigment_network,2\n"     # 1 kept
           "L1,r1,student,class_a,regression,present\n"    # 2 kept: an ordinal level -> 1
           "L2,w7,crowd,,pigment_network,0.5\n"           # 3 kept: no cohort -> crowd/derm
           ",r1,student,class_a,pigment_network,1\n"       # 4 empty image id
           "L2,,student,class_a,pigment_network,1\n"       # 5 empty annotator
           "L2,r1,,class_a,pigment_network,1\n"            # 6 empty source
           "L2,r1,student,class_a,,1\n"                    # 7 empty feature
           "L2,r1,student,class_a,pigment_network,\n"      # 8 empty value
           "L2,r1,dermatologist,,pigment_network,1\n"      # 9 unknown source
           "L2,r1,student,class_a,streaks,1\n"             # 10 undeclared feature
           "L2,r1,student,class_a,pigment_network,many\n"  # 11 not a number
           "L2,r1,student,class_a,pigment_network,3\n"     # 12 outside [0, 2]
           "L2,r1,student,class_a,regression,2\n"          # 13 not a level
           "L9,r1,student,class_a,pigment_network,1\n"     # 14 lesion unknown
           "L1,r1,student,class_a,pigment_network,1\n")    # 15 duplicate of record 1
    return tmp_path


def _ingest(root: Path, **entries) -> tuple[dict, object]:
    config = section("ingest", {"root": str(root), "diagnosis": [DIAGNOSIS], "annotations": [ANNOTATIONS], **entries})
    return config, ingest_all(config, root / "unused-raw-folder")


def _reasons(result, table: str, origin: Path) -> dict[int, tuple[str, str]]:
    q = result.quarantine
    rows = q[(q.table == table) & (q.origin_file == str(origin))]
    return {int(r.row): (r.column, r.reason) for r in rows.itertuples()}


def test_a_generic_diagnosis_table_keeps_good_rows_and_quarantines_each_bad_field(study: Path) -> None:
    config, result = _ingest(study)
    images = result.images.set_index("image_id")
    assert list(images.index) == ["L1", "L2", "L3"]
    assert images.loc["L1", "image_path"] == str(study / "photos/P1/L1.JPG")
    assert images.loc["L2", "image_path"] == str(study / "photos/P1/deeper/L2.jpeg")
    assert pd.isna(images.loc["L3", "image_path"])
    assert images.loc["L1", "mask_path"] == str(study / "masks/x/L1_mask.png")
    assert images["abnormal"].tolist() == [1, 0, 0]
    assert images["diagnosis"].tolist() == ["malignant", "benign", "benign"]
    assert images.loc["L1", "group_id"] == "P1" and pd.isna(images.loc["L3", "group_id"])
    reasons = _reasons(result, "images", study / "labels.csv")
    assert reasons[4] == ("lesion", "empty image id")
    assert reasons[5][0] == "lesion" and reasons[5][1].startswith("duplicate lesion")
    assert reasons[6] == ("finding", "empty label")
    assert reasons[7][0] == "finding" and "neither positive" in reasons[7][1]
    assert reasons[8][0] == "lesion" and "ambiguous image" in reasons[8][1] and "L6.jpg" in reasons[8][1]
    assert sorted(reasons) == [4, 5, 6, 7, 8]
    assert_ingest_balances(config, study, result)


def test_without_negative_values_every_other_label_is_negative(study: Path) -> None:
    _, result = _ingest(study, diagnosis=[{**DIAGNOSIS, "negative": []}])
    images = result.images.set_index("image_id")
    assert images.loc["L5", "abnormal"] == 0 and images.loc["L5", "diagnosis"] == "unsure"


def test_an_image_path_column_is_read_relative_to_the_table(study: Path) -> None:
    _write(study / "tables/labels.csv", "lesion,finding,file\nL1,1,../photos/P1/L1.JPG\nL2,0,missing.png\n")
    entry = {"dataset": "derm", "format": "generic", "csv": "tables/labels.csv", "positive": [1],
             "columns": {"image_id": "lesion", "label": "finding", "image_path": "file"}}
    config, result = _ingest(study, diagnosis=[entry], annotations=[])
    assert result.images["image_path"].tolist() == [str(study / "tables/../photos/P1/L1.JPG")]
    assert result.images["abnormal"].tolist() == [1]
    reasons = _reasons(result, "images", study / "tables/labels.csv")
    assert reasons[2][0] == "file" and "no such image file" in reasons[2][1]
    assert_ingest_balances(config, study, result)


def test_a_long_annotation_table_keeps_good_rows_and_quarantines_each_bad_field(study: Path) -> None:
    config, result = _ingest(study)
    kept = result.annotations.sort_values("origin_row")
    assert kept[["image_id", "source", "feature", "annotator_group", "annotator", "value"]].values.tolist() == [
        ["L1", "student", "pigment_network", "student/class_a", "r1", 2.0],
        ["L1", "student", "regression", "student/class_a", "r1", 1.0],
        ["L2", "crowd", "pigment_network", "crowd/derm", "w7", 0.5],
    ]
    reasons = _reasons(result, "annotations", study / "scores.csv")
    assert reasons[4] == ("lesion", "empty lesion")
    assert reasons[5] == ("rater", "empty rater")
    assert reasons[6] == ("kind", "empty kind")
    assert reasons[7] == ("feature", "empty feature")
    assert reasons[8] == ("value", "empty value")
    assert reasons[9][0] == "kind" and reasons[9][1].startswith("unknown source")
    assert reasons[10][0] == "feature" and "not declared" in reasons[10][1]
    assert reasons[11] == ("value", "annotation is not a number")
    assert reasons[12][0] == "value" and "outside the feature's declared range [0, 2]" in reasons[12][1]
    assert reasons[13][0] == "value" and "levels" in reasons[13][1]
    assert reasons[14] == ("lesion", "lesion unknown to the image table")
    assert reasons[15][0] == "value" and reasons[15][1].startswith("duplicate annotation")
    assert "record 1" in reasons[15][1]
    assert sorted(reasons) == list(range(4, 16))
    assert_ingest_balances(config, study, result)


def test_parquet_tables_read_as_their_csv(study: Path) -> None:
    for name in ("labels", "scores"):
        frame = pd.read_csv(study / f"{name}.csv", dtype=str, keep_default_na=False)
        frame.to_parquet(study / f"{name}.parquet")
    _, from_csv = _ingest(study)
    config, from_parquet = _ingest(study, diagnosis=[{**DIAGNOSIS, "csv": "labels.parquet"}],
                                   annotations=[{**ANNOTATIONS, "file": "scores.parquet"}])
    columns = ["image_id", "source", "feature", "annotator_group", "annotator", "value"]
    pd.testing.assert_frame_equal(from_parquet.annotations[columns], from_csv.annotations[columns])
    assert from_parquet.images["image_id"].tolist() == from_csv.images["image_id"].tolist()
    assert len(from_parquet.quarantine) == len(from_csv.quarantine)
    assert_ingest_balances(config, study, from_parquet)


def test_a_missing_column_names_the_file_and_the_column(study: Path) -> None:
    with pytest.raises(MalformedFileError, match=r"scores\.csv: missing required column\(s\) \['grade'\]"):
        _ingest(study, annotations=[{**ANNOTATIONS, "columns": {**ANNOTATIONS["columns"], "value": "grade"}}])


def test_the_schema_refuses_what_a_generic_table_needs_or_another_format_cannot_have() -> None:
    with pytest.raises(ConfigError, match=r"ingest\.diagnosis\.0.*'positive' is a required property"):
        section("ingest", {"diagnosis": [{"dataset": "d", "csv": "t.csv", "format": "generic"}]})
    with pytest.raises(ConfigError, match=r"ingest\.diagnosis\.0\.positive"):
        section("ingest", {"diagnosis": [{"dataset": "d", "csv": "t.csv", "positive": ["1"]}]})
    with pytest.raises(ConfigError, match=r"ingest\.annotations\.0\.features"):
        section("ingest", {"annotations": [{"dataset": "d", "file": "a.csv", "features": {"Bad Name": {}}}]})
    with pytest.raises(ConfigError, match=r"ingest\.annotations\.0\.features\.x"):
        section("ingest", {"annotations": [{"dataset": "d", "file": "a.csv",
                                            "features": {"x": {"levels": ["a", "b"], "max": 2}}}]})


@pytest.mark.real
def test_the_real_sample_in_the_generic_formats_ingests_as_through_its_own_readers(tmp_path: Path,
                                                                                 shared_data: Path) -> None:
    """ISIC 2017's diagnoses as a generic table (melanoma as the label) and ENHANCE's crowd and student
    scores written as one long table give the lesions, masks, images and annotations of the
    ISIC and ENHANCE readers."""
    (tmp_path / "data").symlink_to(shared_data)
    readers = section("ingest", {
        "root": str(tmp_path),
        "diagnosis": [{"dataset": "isic2017", "csv": "data/isic2017/ISIC-2017_Training_Part3_GroundTruth.csv",
                       "masks": "data/isic2017/masks", "images": ["data/isic2017/images", "data/crowdsim/thumbnails"]}],
        "crowd": [{"dataset": "isic2017", "dir": "data/enhance/crowd",
                   "files": {"asymmetry": "asymmetry.csv", "border": "border.csv", "color": "color.csv"}}],
        "student": [{"dataset": "isic2017", "dir": "data/enhance/student"}],
    })
    expected = ingest_all(readers, tmp_path)
    key = ["image_id", "source", "feature", "annotator_group", "annotator"]
    known = expected.annotations[expected.annotations["image_id"].isin(expected.images["image_id"])]
    long = known.assign(group=known["annotator_group"].str.split("/", n=1).str[1])
    long[["image_id", "annotator", "source", "group", "feature", "value"]].to_csv(tmp_path / "long.csv", index=False)
    features = {f: {"min": float(v.min()), "max": float(v.max())} for f, v in known.groupby("feature")["value"]}
    generic = section("ingest", {
        "root": str(tmp_path),
        "diagnosis": [{"dataset": "isic2017", "format": "generic", "positive": ["1"],
                       "csv": "data/isic2017/ISIC-2017_Training_Part3_GroundTruth.csv",
                       "columns": {"label": "melanoma"}, "masks": "data/isic2017/masks",
                       "images": ["data/isic2017/images", "data/crowdsim/thumbnails"]}],
        "annotations": [{"dataset": "isic2017", "file": "long.csv", "columns": {"group": "group"},
                         "features": features}],
    })
    result = ingest_all(generic, tmp_path)
    assert len(result.images) == 2000 and result.quarantine.empty
    got = result.images.set_index("image_id")
    want = expected.images.set_index("image_id").loc[got.index]
    assert (got["abnormal"] == want["melanoma"].astype(int)).all()
    assert got["mask_path"].tolist() == want["mask_path"].tolist()
    assert got["image_path"].fillna("").tolist() == want["image_path"].fillna("").tolist()
    assert got["image_path"].notna().sum() == want["image_path"].notna().sum() > 0
    columns = [*key, "value"]
    pd.testing.assert_frame_equal(result.annotations[columns].sort_values(key).reset_index(drop=True),
                                  known[columns].sort_values(key).reset_index(drop=True))
    assert len(result.annotations) > 10_000
    assert_ingest_balances(generic, tmp_path, result)


def test_a_lesion_whose_image_does_not_decode_is_quarantined_by_file(tmp_path: Path) -> None:
    """Empty, HTML saved as .jpg, truncated: each lesion quarantined with its image file named, and
    its annotations refused with it (it never reaches the folds)."""
    import numpy as np

    _write(tmp_path / "labels.csv", "lesion,finding,patient\nG1,benign,P1\nE2,benign,P2\nH3,malignant,P3\n"
                                    "T4,malignant,P4\nN5,benign,P5\n")
    (tmp_path / "photos").mkdir()
    Image.new("RGB", (8, 8), (200, 100, 50)).save(tmp_path / "photos/G1.png")
    (tmp_path / "photos/E2.jpg").write_bytes(b"")
    (tmp_path / "photos/H3.jpg").write_bytes(b"<!doctype html><title>Error 500</title>")
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "whole.jpg", quality=90)
    whole = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "photos/T4.jpg").write_bytes(whole[: len(whole) // 2])
    _write(tmp_path / "scores.csv", "lesion,rater,kind,cohort,feature,value\n"
                                    "G1,r1,student,a,pigment_network,1\nT4,r1,student,a,pigment_network,1\n")
    config, result = _ingest(tmp_path)
    assert result.images.image_id.tolist() == ["G1", "N5"]  # N5 has no image file at all: kept, as before
    reasons = _reasons(result, "images", tmp_path / "labels.csv")
    assert sorted(reasons) == [2, 3, 4]
    for row, (name, why) in {2: ("E2.jpg", "empty file"), 3: ("H3.jpg", "not a decodable image"),
                             4: ("T4.jpg", "cannot decode its pixels")}.items():
        column, reason = reasons[row]
        assert column == "lesion" and reason.startswith("image cannot be decoded") and name in reason and why in reason
    annotation_reasons = _reasons(result, "annotations", tmp_path / "scores.csv")
    assert list(annotation_reasons) == [2] and "unknown" in annotation_reasons[2][1]
    assert_ingest_balances(config, tmp_path, result)
