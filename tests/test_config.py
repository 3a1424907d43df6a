from pathlib import Path

import pytest

from tasks.config import ConfigError, CurateConfig, dump_default_config, load_config


def test_defaults_follow_the_design() -> None:
    cfg = load_config(None)
    assert cfg.split.detector == "adaptive"
    assert (cfg.split.min_clip_s, cfg.split.max_clip_s) == (3.0, 15.0)
    assert cfg.standardize.fps == 25.0 and cfg.standardize.audio_rate == 16000


def test_yaml_and_toml_override_defaults(tmp_path: Path) -> None:
    y = tmp_path / "c.yaml"
    y.write_text("standardize:\n  fps: 24\nsplit:\n  detector: content\n")
    t = tmp_path / "c.toml"
    t.write_text("[standardize]\nfps = 24\n[split]\ndetector = 'content'\n")
    for path in (y, t):
        cfg = load_config(path)
        assert cfg.standardize.fps == 24 and cfg.split.detector == "content"
        assert cfg.split.min_clip_s == 3.0  # untouched keys keep their defaults


def test_unknown_key_is_an_error_that_names_it(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("split:\n  detektor: content\n")
    with pytest.raises(ConfigError, match=r"unknown key 'split\.detektor'"):
        load_config(path)


def test_bad_values_and_files_are_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("split:\n  min_clip_s: 10\n  max_clip_s: 12\n")
    with pytest.raises(ConfigError, match="twice"):
        load_config(path)
    path.write_text("standardize:\n  fps: fast\n")
    with pytest.raises(ConfigError, match="standardize.fps"):
        load_config(path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    ini = tmp_path / "c.ini"
    ini.write_text("x=1")
    with pytest.raises(ConfigError, match=".yaml, .yml or .toml"):
        load_config(ini)


def test_dumped_defaults_load_back(tmp_path: Path) -> None:
    path = tmp_path / "defaults.yaml"
    path.write_text(dump_default_config())
    assert load_config(path) == CurateConfig()
