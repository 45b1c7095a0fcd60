"""Config composition, typed validation and the one-line errors of the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from selflen.cli import precheck, register_resolvers, task_overrides
from selflen.config import CONF_DIR, ConfigError, TrainConfig, to_config

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
STAGE_GROUPS = ["instruct", "generate", "extend", "select", "sft_data", "finetune", "length_control", "evaluate",
                "regression"]
GROUPS = ["model", "backend", "language", "split", "sampling", "iterations", "length", "logger", "launch",
          *STAGE_GROUPS]


def _compose(*overrides: str) -> TrainConfig:
    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        raw = compose("train", overrides=list(overrides))
    raw.paths.root = "."
    raw.paths.run_dir = "."
    return to_config(raw)


def test_default_composes_to_typed_config() -> None:
    cfg = _compose()
    from selflen.env import auto_backend

    assert cfg.model.source == "embedded" and cfg.backend.name == auto_backend()  # backend=auto, resolved at load
    assert cfg.extend.min_ratio == 1.2 and cfg.iterations.count == 1


@pytest.mark.parametrize("group", GROUPS)
def test_every_group_option_composes(group: str) -> None:
    for option in sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml")):
        extra = ["backend=hf"] if (group, option) == ("finetune", "full") else []
        cfg = _compose(f"{group}={option}", *extra)
        assert isinstance(cfg, TrainConfig)


def test_smoke_keeps_model_identity() -> None:
    cfg = _compose("model=qwen2", "debug=smoke")
    assert cfg.model.name == "Qwen/Qwen2-7B-Instruct" and cfg.model.source == "tiny"
    assert cfg.model.chat_format == "chatml"
    assert _compose("model=llama3", "debug=smoke").model.chat_format == "llama3"


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("iterations.count=0", "iterations.count"),
        ("split.ratio=1.5", "split.ratio"),
        ("split.ratio=0", "split.ratio"),
        ("extend.keep_fraction=0", "extend.keep_fraction"),
        ("sft_data.p_keep_line=1.2", "sft_data.p_keep_line"),
        ("extend.rounds=abc", "extend.rounds"),
        ("finetune.lineage=sideways", "finetune.lineage"),
        ("model.source=local", "model.path"),
    ],
)
def test_bad_values_name_the_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        _compose(override)
    assert key in str(err.value) and "\n" not in str(err.value)


def test_vllm_replicas_must_fit_the_visible_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    import selflen.env as env

    _compose("backend=vllm", "backend.data_parallel_size=2")  # CPU: the replicas split the cores
    with pytest.raises(ConfigError, match=r"backend.data_parallel_size=0 is out of range"):
        _compose("backend=vllm", "backend.data_parallel_size=0")
    monkeypatch.setattr(env, "visible_gpus", lambda: ["0", "1", "2"])
    _compose("backend=vllm", "backend.data_parallel_size=3")
    message = r"backend.data_parallel_size=2 x backend.tensor_parallel_size=2 needs 4 GPUs but 3 are visible"
    with pytest.raises(ConfigError, match=message):
        _compose("backend=vllm", "backend.data_parallel_size=2", "backend.tensor_parallel_size=2")


def test_the_lora_rank_bound_applies_only_where_vllm_serves_adapters(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    big = ("backend=vllm", "backend.max_lora_rank=8", "finetune.lora.r=16")
    _compose(*big)  # CPU: adapters are served merged into model copies, vLLM never loads them
    with pytest.raises(ConfigError, match=r"backend.max_lora_rank=8 < finetune.lora.r=16; raise it"):
        _compose(*big, "backend.merge_adapters=never")
    with pytest.raises(ConfigError, match=r"backend.merge_adapters='True' is not allowed; choose one of auto, always"):
        _compose("backend=vllm", "backend.merge_adapters=true")


def test_unknown_group_option_lists_choices() -> None:
    choices = "choose one of auto, hf, openai, vllm"
    with pytest.raises(ConfigError, match=rf"backend='nope' is not a known option; {choices}"):
        precheck(["backend=nope"])


def test_sweep_combinations_are_all_checked() -> None:
    precheck(["-m", "model=llama3,qwen2", "debug=smoke"])
    with pytest.raises(ConfigError, match="extend.rounds"):
        precheck(["-m", "extend.rounds=1,0", "debug=smoke"])


def test_task_overrides_skip_hydra_flags() -> None:
    assert task_overrides(["-m", "--cfg", "job", "hydra.run.dir=x", "a=1", "+b=2"]) == ["a=1", "+b=2"]


@pytest.mark.parametrize("override", ["backend=nope", "extend.rounds=0"])
def test_cli_exits_nonzero_with_one_line_and_no_run_dir(tmp_path: Path, override: str) -> None:
    res = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), override], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and override.split("=")[0] in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_cli_prints_resolved_config(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--cfg", "job", "model=tiny"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "source: tiny" in res.stdout and "min_ratio: 1.2" in res.stdout
    assert list(tmp_path.iterdir()) == []


def test_swept_concerns_are_named_groups() -> None:
    """The user's sweep axes are groups with named options: model, iterations, split and length target."""
    assert _compose("iterations=three").iterations.count == 3 and _compose("iterations.count=5").iterations.count == 5
    paper = _compose("length=paper")
    assert paper.length.generate_tokens == 16384 and paper.length.evaluate_tokens == 16384
    assert _compose("length=cpu_long").length.generate_tokens == 1024
    assert _compose("split=word_ratio").split.strategy == "word_ratio"


def test_model_files_carry_the_reference_language_and_pool() -> None:
    qwen, llama = _compose("model=qwen2"), _compose("model=llama3")
    assert qwen.language.name == "zh" and qwen.instruct.pool == "growing" and qwen.instruct.pool_reset == 500
    assert llama.language.name == "en" and llama.instruct.pool == "seeds"
    assert _compose("model=qwen2", "language=en").language.name == "en"  # the command line wins


def test_stage_groups_hold_every_stage_knob() -> None:
    """Each stage group composes into its own typed section; nothing of a stage lives in another group."""
    cfg = _compose()
    for group in STAGE_GROUPS:
        assert (CONF_DIR / group).is_dir(), group
        assert hasattr(cfg, group), group


def test_schema_defaults_equal_the_default_yaml() -> None:
    """The groups that keep dataclass defaults (model, backend, language, ...) say what their YAML says."""
    from selflen.config import to_dict
    from selflen.report.runs import flatten

    composed = flatten(to_dict(_compose()))
    schema = {k: v for k, v in flatten(to_dict(TrainConfig(**{g: None for g in GROUP_CLASSES}))).items()
              if k.split(".")[0] not in GROUP_CLASSES}
    differ = {k for k in schema if composed.get(k) != schema.get(k)}
    assert schema["backend.name"] == "hf" and composed["backend.name"] in ("vllm", "hf")  # auto, resolved at load
    assert differ - {"backend.name", "paths.root", "paths.run_dir", "paths.cache_dir", "paths.data_dir"} == set()


GROUP_CLASSES = {"length": "LengthConfig", "instruct": "InstructConfig", "generate": "GenerateConfig",
                "extend": "ExtendConfig", "select": "SelectConfig", "sft_data": "SftDataConfig",
                "finetune": "FinetuneConfig", "length_control": "LengthControlConfig", "evaluate": "EvaluateConfig",
                "regression": "RegressionConfig"}


@pytest.mark.parametrize("group", sorted(GROUP_CLASSES))
def test_every_yaml_key_of_a_stage_group_is_a_field_and_every_field_a_key(group: str) -> None:
    """A stage group's values live in its YAML only: each option file, with the files it inherits, names every field
    of the group's dataclass and nothing else (a stray key or a missing one fails the load with its name)."""
    import dataclasses

    from selflen import groups

    cls = getattr(groups, GROUP_CLASSES[group])
    fields = {f.name for f in dataclasses.fields(cls)}
    for path in sorted((CONF_DIR / group).glob("*.yaml")):
        cfg = _compose(f"{group}={path.stem}")
        assert isinstance(getattr(cfg, group), cls)
        raw = OmegaConf.load(path)
        own = set(raw) - {"defaults"}
        assert own <= fields, f"{path.name}: {own - fields}"
        if "defaults" not in raw:  # a file that inherits sets only what it changes
            assert own == fields, f"{path.name} lacks {fields - own}"


def test_a_moved_key_names_its_new_home_and_a_missing_key_names_itself() -> None:
    from selflen.config import to_config

    with pytest.raises(ConfigError, match=r"^generate.max_new_tokens moved: set length.generate_tokens instead$"):
        _compose("+generate.max_new_tokens=99")
    with pytest.raises(ConfigError, match=r"^extend.length_biased moved: set select.length_biased_extensions"):
        _compose("+extend.length_biased=false")
    with pytest.raises(ConfigError, match=r"^select.bogus: no such key \(the keys of select: length_biased_responses"):
        _compose("+select.bogus=1")
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        raw = compose("train", overrides=["~generate.samples"])
    raw.paths.root = raw.paths.run_dir = "."
    with pytest.raises(ConfigError, match=r"^generate.samples is missing: add it to the group's YAML"):
        to_config(raw)
    with pytest.raises(ConfigError, match=r"^finetune.learning_rate='fast': expected a number$"):
        _compose("finetune.learning_rate=fast")
    assert _compose("finetune.learning_rate=5e-4").finetune.learning_rate == 5e-4  # YAML 1.1 reads 5e-4 as text


@pytest.mark.parametrize(("language", "marker"), [("en", "\nInstruction 4"), ("zh", "\n指令4")])
def test_self_instruct_stops_at_the_next_numbered_example_only(language: str, marker: str) -> None:
    from selflen.stages import instruct

    stop = instruct.settings(_compose(f"language={language}"), 1).sampling.stop
    label = "Instruction" if language == "en" else "指令"
    assert marker in stop and f"\n{label}" not in stop  # "Instructions must be numbered" is no new example
    assert ("\nInstructions 4" in stop) is (language == "en")  # SmolLM2's plural; Chinese has none
    assert {"---", "\n\n\n"} <= set(stop)  # the reference's stop strings stay


def test_reference_rules_swap_in_the_references_filters_per_language() -> None:
    from selflen.stages.common import filter_rules
    from selflen.text.filters import LLAMA_END_PUNCT, META_WORDS, QWEN_END_PUNCT

    own = filter_rules(_compose())
    en = filter_rules(_compose("language.rules=reference"))
    zh = filter_rules(_compose("language=zh", "language.rules=reference"))
    assert (own.meta_match, own.end_punct) == ("words", _compose().language.end_punct)
    assert (en.end_punct, en.meta_words, en.meta_match) == (LLAMA_END_PUNCT, META_WORDS, "substring")
    assert (zh.end_punct, zh.meta_words) == (QWEN_END_PUNCT, ())  # the Qwen reference has no meta-text rule


def test_null_dedup_threshold_turns_dedup_off_and_rule_names_are_checked() -> None:
    from selflen.config import ConfigError, check

    cfg = _compose("instruct.dedup_threshold=null", "select.dedup_threshold=null")
    check(cfg)  # null is "off", not out of range
    with pytest.raises(ConfigError, match=r"extend.keep_rule='paragraphs' is not allowed; choose one of selflen"):
        check(_compose("extend.keep_rule=paragraphs"))
