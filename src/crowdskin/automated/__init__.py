"""Automated ABC annotation: asymmetry, border and color scores from a lesion mask and image."""
