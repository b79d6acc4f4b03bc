"""Task kinds: each kind of model is one class in one module of this package (see `base`).

Every module here is imported on first use, so a new kind is a new file and nothing else: its
`@register` makes it known by name, its `tasks` hook adds its tasks to the grid, and the rules,
examples, training loop, ensembles and scores ask it what they need. Kinds kept outside this
package (a research group's own) are imported from the modules named in `train.plugins`.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable

from crowdskin.train.kinds.base import (
    ANNOTATIONS,
    ANNOTATOR_MODELS,
    CROWD_LABELS,
    TABLES,
    TARGETS,
    VOTES,
    AnnotatorAnswers,
    ExampleInputs,
    ExampleNotes,
    ExamplesError,
    HeadTargets,
    TaskKind,
    kind_of,
    register,
)
from crowdskin.train.kinds.base import registered_kinds as _registered

__all__ = ["ANNOTATIONS", "ANNOTATOR_MODELS", "CROWD_LABELS", "ENSEMBLE_KIND", "ENSEMBLE_ORDER", "TABLES",
           "TARGETS", "VOTES", "AnnotatorAnswers", "ExampleInputs", "ExampleNotes", "ExamplesError", "HeadTargets",
           "TaskKind", "kind_of", "kind_order", "load_plugins", "register", "registered_kinds"]

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")


def load_plugins(modules: Iterable[str]) -> None:
    """Import the modules that register kinds of their own (`train.plugins`)."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ImportError(f"train.plugins names {module!r}, which cannot be imported: {error}") from error


def registered_kinds() -> list[type[TaskKind]]:
    """Every registered kind, in table order."""
    return _registered()


def kind_order() -> dict[str, int]:
    """Each kind's table order by name, and `ensemble` (ensembles of several tasks) after the
    single-feature multi-task models, as ENHANCE's Table 5 lists them."""
    return {**{kind.name: kind.order for kind in _registered()}, ENSEMBLE_KIND: ENSEMBLE_ORDER}


# The `kind` of an ensemble of several tasks in the scores' tables and MLflow: no task kind has it.
ENSEMBLE_KIND = "ensemble"
# Between the multi-task models (10-19) and the randomized control (30).
ENSEMBLE_ORDER = 20
