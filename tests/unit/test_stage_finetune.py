"""The finetune stage around the trainer (the trainer itself: ``test_trainer.py``): where training starts under
each lineage, what it refuses to train on, and what a finished stage reports; training is stubbed here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selflen.errors import SelflenError
from selflen.stages import finetune
from selflen.store import LENGTH_FOLLOWER, RunLayout, Stage
from tests.defaults import config, with_changes

pytestmark = pytest.mark.unit


def test_continue_lineage_starts_from_the_previous_adapter_or_model_and_fresh_from_the_base(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path)
    s = with_changes(finetune.settings(config(), "gen"), "finetune", lineage="continue")
    adapter, model = tmp_path / "iter_1/finetune_gen/adapter", tmp_path / "iter_1/finetune_gen/model"
    assert finetune.with_start(s, layout, adapter).init_adapter == "iter_1/finetune_gen/adapter"
    assert finetune.with_start(s, layout, model).start_model == "iter_1/finetune_gen/model"  # run-relative: hashed
    assert finetune.with_start(s, layout, None) == s
    fresh = with_changes(s, "finetune", lineage="fresh")
    assert finetune.with_start(fresh, layout, adapter) == fresh
    final = with_changes(finetune.settings(config(), LENGTH_FOLLOWER), "finetune", lineage="fresh")
    assert finetune.with_start(final, layout, adapter).init_adapter is not None  # the final SFT builds on the loop


def test_the_length_follower_takes_its_own_epochs_and_keeps_its_stored_role() -> None:
    s = finetune.settings(config(), LENGTH_FOLLOWER, epochs=3.0)
    assert s.role == LENGTH_FOLLOWER == "final" and s.finetune.epochs == 3.0  # "final": hashed, never renamed
    assert finetune.settings(config(), "gen").role == "gen"


def test_no_example_or_no_file_is_one_line_and_nothing_trains(tmp_path: Path) -> None:
    stage = Stage(tmp_path / "iter_1/finetune_gen", "iter_1/finetune_gen", "h")
    s = finetune.settings(config(), "gen")
    (tmp_path / "empty.jsonl").write_text("\n")
    for data, says in ((tmp_path / "empty.jsonl", "no training example"), (tmp_path / "none.jsonl", "is missing")):
        inputs = finetune.FinetuneInputs(data, tmp_path / "base", RunLayout(tmp_path))
        with pytest.raises(SelflenError, match=f"iter_1/finetune_gen: .*{says}"):
            finetune.run(stage, inputs, s)
    assert finetune.trained_folder(stage, s) is None


def test_a_finished_training_reports_its_examples_drops_and_loss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    def train(model_dir, data, out_dir, settings, **kw):  # the trainer's signature
        Path(out_dir).mkdir(parents=True)
        return {"examples": 4, "dropped_too_long": 1, "train_loss": 1.5, "trained": True}

    monkeypatch.setattr(finetune, "train", train)
    data = tmp_path / "gen_sft.jsonl"
    data.write_text(json.dumps({"messages": []}) + "\n")
    stage = Stage(tmp_path / "iter_1/finetune_gen", "iter_1/finetune_gen", "h")
    s = finetune.settings(config(), "gen")
    result = finetune.run(stage, finetune.FinetuneInputs(data, tmp_path / "base", RunLayout(tmp_path)), s)
    assert result.counts == {"examples": 4, "dropped_too_long": 1} and result.drops == {"too_long": 1}
    assert result.metrics == {"train/gen/final_loss": 1.5}
    assert finetune.trained_folder(stage, s) == stage.dir / s.output
