"""Agreement with the ENHANCE study's published automated scores, on ../shared/data (skipped without it).

The floors are the values measured on these subsets (docs/validation.md has the full 500-mask
comparison) minus a small margin; a drop below them means the emulation of the study's code broke.
"""

from __future__ import annotations

import pytest

from crowdskin.automated.validation import compare_color, compare_masks

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def masks(shared_data):
    # the first 80 published lesions: about 8 s; the full 500 run is `python -m crowdskin.automated.validation`
    return compare_masks(shared_data, variant="study", limit=80)


def test_border_reproduces_the_published_scores(masks):
    border = masks["border"]
    assert border["n_failed"] == 0 and border["n_compared"] == border["n_published"] == 80
    assert border["exact"] >= 0.99  # 500 of 500 on the full sample
    assert border["within_one"] == 1.0
    assert border["spearman"] >= 0.999


def test_asymmetry_reproduces_the_published_scores(masks):
    assert masks["asymmetry_class"]["n_failed"] == 0
    assert masks["asymmetry_class"]["exact"] >= 0.99  # 494 of 494 on the full sample
    assert masks["asymmetry_raw"]["spearman"] >= 0.999
    assert masks["asymmetry_raw"]["mean_abs_diff"] <= 0.001


def test_color_on_thumbnails_agrees_with_the_published_scores(shared_data):
    color = compare_color(shared_data, variant="study")["color"]
    assert color["n_compared"] == color["n_published"] == 57
    assert color["exact"] >= 0.78
    assert color["within_one"] >= 0.98
    assert color["spearman"] >= 0.85
