"""Which explained models an explanation gallery (`crowdskin.explain.gallery`) may show: the
baseline and the models whose kind has annotation heads, never a randomized control (it has a head,
but no annotation behind it). It imports no plotting, so `common.smk` reads it while the DAG is built.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from crowdskin.evaluate.scores import REFERENCE
from crowdskin.train.kinds import kind_of
from crowdskin.train.tasks import Task


@dataclass(frozen=True)
class Candidate:
    """An explained model that a gallery may show, with its annotation heads."""

    model: str
    backbone: str
    heads: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "backbone": self.backbone, "heads": list(self.heads)}

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any]) -> Candidate:
        return cls(str(entry["model"]), str(entry["backbone"]), tuple(str(h) for h in entry.get("heads", ())))


def gallery_candidates(tasks: Iterable[Task], explained: Iterable[tuple[str, str]],
                       reference: str = REFERENCE) -> list[Candidate]:
    """The explained (task, backbone) pairs that a gallery may show, in `explained`'s order: the
    `reference` and every model whose kind has annotation heads, never a randomized control."""
    by_name = {task.name: task for task in tasks}
    candidates = []
    for name, backbone in explained:
        task = by_name[name]
        kind = kind_of(task.kind)
        heads = tuple(kind.heads(task))
        if name == reference or (heads and not kind.randomized_control):
            candidates.append(Candidate(name, backbone, heads))
    return candidates
