"""Where a stage lives in a run: a value, ``StageAddress(point, stage)``, written ``iter_<k>/<stage>`` or
``final/<stage>``. An unknown stage name or point raises where the address is made, instead of hashing silently
as a stage nobody reads."""

from __future__ import annotations

from dataclasses import dataclass

FINAL = "final"
"""The point after the loop (the length-following model); iterations are 0 (the base model) .. K."""
Point = int | str  # an iteration number or FINAL

STAGES = (
    "instruct", "evaluate",  # iter_0 (the held-out split, the base evaluation) and every iteration
    "generate", "select_responses", "extend", "select", "sft_data", "finetune_gen", "finetune_ext",
    "collect_instruct", "collect_generate", "collect_select", "length_control", "finetune", "regression",  # final
)
"""Every stage the loop writes, in the order an iteration (then ``final``) runs them."""


@dataclass(frozen=True)
class StageAddress:
    """``StageAddress(2, "extend")`` is ``iter_2/extend``; ``StageAddress(FINAL, "finetune")`` is
    ``final/finetune``.

    >>> str(StageAddress(2, "extend")), str(StageAddress.parse("final/finetune"))
    ('iter_2/extend', 'final/finetune')
    >>> StageAddress(1, "extnd")
    Traceback (most recent call last):
    ValueError: unknown stage 'extnd' at point 1; stages: instruct, evaluate, generate, select_responses, extend, \
select, sft_data, finetune_gen, finetune_ext, collect_instruct, collect_generate, collect_select, length_control, \
finetune, regression
    """

    point: Point
    stage: str

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"unknown stage {self.stage!r} at point {self.point}; stages: {', '.join(STAGES)}")
        if self.point != FINAL and (isinstance(self.point, bool) or not isinstance(self.point, int)
                                    or self.point < 0):
            raise ValueError(f"unknown point {self.point!r} for stage {self.stage}: an iteration >= 0 or {FINAL!r}")

    @property
    def folder(self) -> str:
        """The point's folder: ``iter_<k>`` or ``final``."""
        return point_folder(self.point)

    def __str__(self) -> str:
        return f"{self.folder}/{self.stage}"

    @classmethod
    def parse(cls, text: str) -> StageAddress:
        """``iter_2/extend`` or ``final/finetune`` back into an address (raises ``ValueError`` otherwise)."""
        folder, _, stage = str(text).partition("/")
        if folder == FINAL:
            return cls(FINAL, stage)
        suffix = folder.removeprefix("iter_")
        if folder == suffix or not suffix.isdigit():
            raise ValueError(f"{text!r} is not a stage address (iter_<k>/<stage> or final/<stage>)")
        return cls(int(suffix), stage)


def point_folder(point: Point) -> str:
    """``iter_<k>`` for an iteration (an int or its text), ``final`` for the point after the loop."""
    return FINAL if point == FINAL else f"iter_{int(point)}"


def at(point: Point, stage: str) -> str:
    """The text of ``StageAddress(point, stage)``, checked: the key of a stage among a run's inputs and manifests."""
    return str(StageAddress(int(point) if point != FINAL else FINAL, stage))
