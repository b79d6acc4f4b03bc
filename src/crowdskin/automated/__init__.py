"""Automated ABC annotation (issue 3): asymmetry, border and color scores from a lesion mask and image."""
