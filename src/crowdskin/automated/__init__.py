"""Automated ABC annotation (issue 3): asymmetry, border and colour scores from a lesion mask and image."""
