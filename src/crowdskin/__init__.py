"""crowdskin: skin-lesion classifiers trained with extra labels from crowds, students and algorithms."""

__version__ = "0.1.0"
