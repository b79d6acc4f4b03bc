"""Ingestion of the real file formats, on small hand-made files with the real quirks."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from conftest import assert_ingest_balances
from crowdskin.ingest import MalformedFileError, ingest_all
from crowdskin.ingest.mturk import parse_approval_rate, parse_mturk_time

MTURK_HEADER = ("HITId,AssignmentId,WorkerId,AcceptTime,SubmitTime,WorkTimeInSeconds,LifetimeApprovalRate,"
                "Input.image1_title,Input.image1_label,Input.image2_title,Input.image2_label,"
                "Input.image3_title,Input.image3_label,Answer.equal,Answer.equal.label,Answer.howMuch,Answer.howMuch.label")
T = "Mon Nov 22 03:52:32 PST 2021"


def _write(path: Path, text: str, *, bom: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))


@pytest.fixture()
def raw(tmp_path: Path) -> Path:
    _write(tmp_path / "isic/gt.csv", "image_id,melanoma,seborrheic_keratosis\n"
           "ISIC_1,1.0,0.0\nISIC_2,0.0,1.0\nISIC_3,0.0,0.0\nISIC_4,2.0,0.0\nISIC_1,0.0,0.0\n")
    (tmp_path / "isic/masks").mkdir()
    (tmp_path / "isic/masks/ISIC_1_segmentation.png").write_bytes(b"")
    (tmp_path / "thumbs").mkdir()
    # a real image: ingest decodes every image it registers
    Image.new("RGB", (4, 4), (120, 80, 60)).save(tmp_path / "thumbs/ISIC_2.jpg")
    _write(tmp_path / "crowd/asymmetry.csv", "ID,i,ii,iii\nISIC_1,0,1,2\nISIC_2,1,,x\nISIC_9,1,1,1\n")
    _write(tmp_path / "crowd/asymmetry_ph2.csv", "ID,i,ii,iii\nIMD002,2,1,1\n")
    _write(tmp_path / "student/2017-2018/data_types.csv",
           "group_num;column_1;column_2;column_3;column_4;column_5\n1;Asymmetry;Color;Asymmetry;Color;\n", bom=True)
    # Dutch headers that lie about the content: position, not name, decides the feature
    _write(tmp_path / "student/2017-2018/group01.csv",
           "ID;Rand_1;Rand_2;Rand_3;Rand_4;;\nISIC_1;0;3;1;2;;\nISIC_3;2;;1;1,2;;\nISIC_1;1;1;1;1;;\n", bom=True)
    _write(tmp_path / "mturk/Batch_1_batch_results.csv", MTURK_HEADER + "\n"
           f"H1,A1,W1,{T},{T},61,100% (11/11),ISIC_1,1.0,ISIC_2,1,ISIC_3,0,A,,confident,\n"
           f"H1,A2,W2,{T},{T},30,0% (0/0),ISIC_1,1.0,ISIC_2,1,ISIC_3,0,,B,,very confident\n"
           f"H1,A3,W3,{T},{T},30,0% (0/0),ISIC_1,1.0,ISIC_2,1,ISIC_3,0,,,neutral,\n"
           f"H1,A4,W4,yesterday,{T},30,0% (0/0),ISIC_1,1.0,ISIC_2,1,ISIC_3,0,A,,neutral,\n")
    _write(tmp_path / "mturk/Batch_2_batch_results.csv",
           MTURK_HEADER.replace(",Answer.howMuch,Answer.howMuch.label", "") + "\n"
           f"H2,B1,W1,{T},{T},61,100% (1/1),ISIC_1,1.0,ISIC_2,1,ISIC_3,0,neutral,\n")
    return tmp_path


CONFIG = {
    "diagnosis": [{"dataset": "isic2017", "csv": "isic/gt.csv", "masks": "isic/masks",
                   "images": ["isic/images", "thumbs"]}],
    "crowd": [{"dataset": "isic2017", "dir": "crowd", "files": {"asymmetry": "asymmetry.csv"}},
              {"dataset": "ph2", "dir": "crowd", "files": {"asymmetry": "asymmetry_ph2.csv"},
               "register_unknown": True}],
    "student": [{"dataset": "isic2017", "dir": "student"}],
    "mturk": [{"dir": "mturk"}],
}


def test_images_register_masks_images_and_quarantine_bad_rows(raw):
    result = ingest_all(CONFIG, raw)
    images = result.images.set_index("image_id")
    assert list(images.index) == ["ISIC_1", "ISIC_2", "ISIC_3", "IMD002"]
    assert images.loc["ISIC_1", "mask_path"].endswith("ISIC_1_segmentation.png")
    assert pd.isna(images.loc["ISIC_1", "image_path"]) and images.loc["ISIC_2", "image_path"].endswith("ISIC_2.jpg")
    assert list(images.abnormal[:3]) == [1, 1, 0]
    assert pd.isna(images.loc["IMD002", "abnormal"]) and images.loc["IMD002", "dataset"] == "ph2"
    q = result.quarantine[result.quarantine.table == "images"]
    assert set(q.reason) == {"melanoma is not 0 or 1", f"duplicate lesion: already registered by {raw / 'isic/gt.csv'}"}
    assert list(q.row) == [4, 5]


def test_crowd_values_kept_or_quarantined_with_reasons(raw):
    result = ingest_all(CONFIG, raw)
    crowd = result.annotations[result.annotations.source == "crowd"]
    assert len(crowd) == 2 + 3 + 1 + 1  # ISIC_1 x3, ISIC_2 x1 ('' is no annotation, 'x' quarantined), IMD002 x3
    q = result.quarantine[result.quarantine.origin_file.str.endswith("crowd/asymmetry.csv")]
    assert sorted(q.reason) == ["annotation is not a number"] + ["lesion unknown to the image table"] * 3
    bad = q[q.reason == "annotation is not a number"].iloc[0]
    assert (bad.row, bad.column, bad.raw_value) == (2, "4:iii", "x")
    assert set(crowd.annotator_group) == {"crowd/isic2017", "crowd/ph2"}


def test_student_columns_map_by_position_not_header(raw):
    result = ingest_all(CONFIG, raw)
    student = result.annotations[result.annotations.source == "student"].sort_values(
        ["image_id", "feature", "annotator"])
    first = student[student.image_id == "ISIC_1"]
    assert list(zip(first.feature, first.annotator, first.value, strict=True)) == [
        ("asymmetry", "s1", 0.0), ("asymmetry", "s2", 1.0), ("color", "s1", 3.0), ("color", "s2", 2.0)]
    assert set(student.annotator_group) == {"student/2017-2018/group01"}
    q = result.quarantine[result.quarantine.origin_file.str.endswith("group01.csv")]
    # '1,2' is a set of color categories, not 1.2; the repeated ISIC_1 record is a duplicate
    assert sorted(q.reason.str.split(" of ").str[0]) == ["annotation is not a number"] + ["duplicate annotation"] * 4


def test_rows_in_equal_rows_kept_plus_quarantined(raw):
    """Units in are counted from each file by the test's own reader. Fails if the crowd ingest
    skips a worker column without counting or quarantining its values."""
    result = ingest_all(CONFIG, raw)
    sheet = assert_ingest_balances(CONFIG, raw, result).set_index("origin_file")
    # by hand: gt.csv 5 records; asymmetry.csv 3 + 2 + 3 values; group01.csv 4 + 3 + 4; the two exports 4 and 1
    assert dict(zip(sheet.index.str.removeprefix(f"{raw}/"), sheet.n_in, strict=True)) == {
        "isic/gt.csv": 5, "crowd/asymmetry.csv": 8, "crowd/asymmetry_ph2.csv": 3,
        "student/2017-2018/group01.csv": 11, "mturk/Batch_1_batch_results.csv": 4,
        "mturk/Batch_2_batch_results.csv": 1}


def test_crowd_value_under_an_empty_header_is_counted_and_quarantined(raw):
    """Fails if the crowd ingest drops a value in an empty-header column inside the header's width
    without counting or quarantining it (the bug where `ID,i,,iii` gave 2 in, 2 kept, 0 quarantined)."""
    _write(raw / "crowd/asymmetry.csv", "ID,i,,iii\nISIC_1,0,1,2\n")
    result = ingest_all(CONFIG, raw)
    sheet = assert_ingest_balances(CONFIG, raw, result).set_index("origin_file")
    row = sheet.loc[str(raw / "crowd/asymmetry.csv")]
    assert (row.n_in, row.n_kept, row.n_quarantined) == (3, 2, 1)
    q = result.quarantine[result.quarantine.origin_file == str(raw / "crowd/asymmetry.csv")]
    assert q[["row", "column", "raw_value", "reason", "record_id"]].values.tolist() == [
        [1, "3:", "1", "value in a column with no header", "ISIC_1"]]


def test_mturk_choice_columns_are_found_per_file(raw):
    result = ingest_all(CONFIG, raw)
    kept = result.mturk_assignments.set_index("assignment_id")
    assert list(kept.index) == ["A1", "A2"]
    assert list(kept.choice) == ["A", "B"] and list(kept.confidence) == ["confident", "very confident"]
    assert kept.loc["A1", "approval_total"] == 11 and kept.loc["A2", "approval_total"] == 0
    q = result.quarantine[result.quarantine.table == "mturk_assignments"].set_index("record_id")
    assert q.loc["A3", "reason"] == "no choice recorded"
    assert q.loc["A4", "column"] == "AcceptTime"
    assert q.loc["B1", "reason"].startswith("no choice recorded: the export has no Answer column")


def test_mturk_rows_without_a_proper_worker_or_seen_twice_are_quarantined(tmp_path):
    _write(tmp_path / "mturk/Batch_3_batch_results.csv", MTURK_HEADER + "\n" + "".join(
        f"H3,{assignment},{worker},{T},{T},61,100% (1/1),ISIC_1,1.0,ISIC_2,1,ISIC_3,0,A,,confident,\n"
        for assignment, worker in (("C1", "A2B3C4"), ("C2", ""), ("C3", "a2b 3"), ("C1", "A2B3C4"))))
    config = {"mturk": [{"dir": "mturk"}]}
    result = ingest_all(config, tmp_path)
    assert result.mturk_assignments[["assignment_id", "worker_id"]].values.tolist() == [["C1", "A2B3C4"]]
    q = result.quarantine.set_index("row")
    assert q.loc[2, "column"] == "WorkerId" and q.loc[2, "reason"].startswith("blank WorkerId")
    assert q.loc[3, "raw_value"] == "a2b 3" and q.loc[3, "reason"].startswith("malformed WorkerId")
    assert q.loc[4, "column"] == "AssignmentId" and q.loc[4, "reason"] == "duplicate assignment"
    assert_ingest_balances(config, tmp_path, result)


def test_mturk_parsers():
    assert parse_mturk_time(T) == pd.Timestamp("2021-11-22 11:52:32", tz="UTC")
    assert parse_mturk_time("Wed Jul 14 10:00:00 PDT 2021") == pd.Timestamp("2021-07-14 17:00:00", tz="UTC")
    assert parse_approval_rate("100% (11/11)") == (1.0, 11, 11)
    assert parse_approval_rate("0% (0/0)") == (0.0, 0, 0)
    for bad in ("Mon Nov 22 03:52:32 XYZ 2021", "22/11/2021"):
        with pytest.raises(ValueError):
            parse_mturk_time(bad)
    with pytest.raises(ValueError):
        parse_approval_rate("100%")


def test_missing_required_column_names_file_and_column(raw):
    _write(raw / "isic/gt.csv", "image_id,melanoma\nISIC_1,1\n")
    with pytest.raises(MalformedFileError, match=r"gt\.csv: missing required column\(s\) \['seborrheic_keratosis'\]"):
        ingest_all(CONFIG, raw)


def test_unreadable_encoding_names_the_file(raw):
    (raw / "crowd/asymmetry.csv").write_bytes(b"ID,i\n\x81\x8d\x8f,1\n")
    with pytest.raises(MalformedFileError, match=r"asymmetry\.csv: unreadable encoding"):
        ingest_all(CONFIG, raw)


PH2_HEADER = ("|| Name || Histological Diagnosis || Clinical Diagnosis || Asymmetry || Pigment Network "
              "|| White || Red || Light-Brown || Dark-Brown || Blue-Gray || Black ||")
PH2_TEXT = f"""
{PH2_HEADER}
|| IMD002 ||  || 1 || 0 || T ||  ||  || X || X ||  ||  ||
|| IMD003 || Melanoma || 2 || 2 || AT ||  || X || X || X || X || X ||
|| IMD004 ||  || 7 || 0 || T ||  ||  || X ||  ||  ||  ||
"""


def test_ph2_registry_gives_diagnoses_and_expert_scores(tmp_path):
    _write(tmp_path / "ph2/PH2_dataset.txt", PH2_TEXT)
    config = {"diagnosis": [{"dataset": "ph2", "format": "ph2", "csv": "ph2/PH2_dataset.txt"}]}
    result = ingest_all(config, tmp_path)
    images = result.images.set_index("image_id")
    assert list(images.index) == ["IMD002", "IMD003"]
    assert list(images.abnormal) == [0, 1] and images.loc["IMD003", "diagnosis"] == "melanoma"
    assert result.quarantine.reason.tolist() == ["clinical diagnosis is not 0, 1 or 2"]
    expert = result.annotations.set_index(["image_id", "feature"]).value
    assert expert[("IMD002", "color")] == 2 and expert[("IMD003", "color")] == 5
    assert expert[("IMD003", "asymmetry")] == 2
