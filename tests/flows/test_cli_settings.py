"""Command-line options generated from the pydantic settings (no flow is run here)."""

from __future__ import annotations

import argparse
import typing

import pytest

from flows.cli import main
from flows.cli._settings import add_settings_arguments, settings_from_args
from models.settings import ClassifySettings, IngestSettings, TrainSettings
from pipeline.errors import ConfigError


@pytest.fixture(scope="session")
def prefect_harness():
    """Overrides the folder's Prefect server fixture: nothing here talks to Prefect."""
    yield


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parser(model: type = TrainSettings) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="t")
    add_settings_arguments(p, model, "settings")
    return p


def _help(capsys, command: str) -> str:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


def test_every_train_setting_is_an_option(capsys):
    out = _help(capsys, "train")
    words = set(out.replace(",", " ").split())
    for name, field in TrainSettings.model_fields.items():
        assert _option(name) in words, name
        # each option's help states the model's default
        assert f"(default {field.default!r})".split()[-1] in out
    assert "--no-refit" in words and "--refit" in words
    assert "{best,faithful}" in out  # the Literal's choices
    assert "{lcpipe,crts,ztf}" in out


def test_classify_options_are_the_ingest_settings(capsys):
    out = _help(capsys, "classify")
    words = set(out.replace(",", " ").split())
    assert set(ClassifySettings.model_fields) == set(IngestSettings.model_fields)
    for name in ClassifySettings.model_fields:
        assert _option(name) in words, name
    for name in set(TrainSettings.model_fields) - set(IngestSettings.model_fields):
        assert _option(name) not in words, name


def test_no_options_give_the_defaults():
    args = _parser().parse_args([])
    assert settings_from_args(TrainSettings, args) == TrainSettings()


def test_options_map_onto_fields():
    args = _parser().parse_args([
        "--no-refit", "--chunk-size", "7", "--cnn-preset", "faithful", "--cv-folds", "3",
        "--cnn-learning-rate", "0.01", "--preset", "crts", "--classes", "EA,EW",
        "--max-failed-fraction", "0.5"])
    s = settings_from_args(TrainSettings, args)
    assert s == TrainSettings(refit=False, chunk_size=7, cnn_preset="faithful", cv_folds=3,
                              cnn_learning_rate=0.01, preset="crts", classes="EA,EW",
                              max_failed_fraction=0.5)
    assert s.refit is False and isinstance(s.chunk_size, int)
    assert settings_from_args(TrainSettings, _parser().parse_args(["--refit"])).refit is True
    # fixed values win over the options
    assert settings_from_args(TrainSettings, args, chunk_size=9).chunk_size == 9


def test_option_kinds_follow_the_annotations():
    actions = {a.dest[len("setting_"):]: a for a in _parser()._actions
               if a.dest.startswith("setting_")}
    assert set(actions) == set(TrainSettings.model_fields)
    for name, field in TrainSettings.model_fields.items():
        a = actions[name]
        assert a.default is None  # unset options keep the model's default
        ann = field.annotation
        lits = [x for x in (ann, *typing.get_args(ann)) if typing.get_origin(x) is typing.Literal]
        if ann is bool:
            assert isinstance(a, argparse.BooleanOptionalAction), name
        elif lits:
            assert list(a.choices) == list(typing.get_args(lits[0])), name
        else:
            assert a.choices is None, name
            base = [x for x in (typing.get_args(ann) or (ann,)) if x is not type(None)][0]
            assert a.type is base, name
    assert actions["cnn_preset"].choices == ["best", "faithful"]
    assert actions["cv_folds"].type is int and actions["cnn_learning_rate"].type is float


@pytest.mark.parametrize("argv", [["--cnn-preset", "bogus"], ["--chunk-size", "many"],
                                  ["--preset", "sdss"]])
def test_argparse_rejects_bad_types_and_choices(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(argv)
    assert exc.value.code == 2
    assert argv[0] in capsys.readouterr().err


@pytest.mark.parametrize("argv,option", [
    (["--chunk-size", "0"], "--chunk-size"),
    (["--test-fraction", "1.5"], "--test-fraction"),
    (["--cv-folds", "1"], "--cv-folds"),
    (["--max-failed-fraction", "-0.1"], "--max-failed-fraction"),
    (["--classes", "  "], "--classes"),
    (["--cnn-learning-rate", "0"], "--cnn-learning-rate"),
])
def test_bad_values_raise_config_error_naming_the_option(argv, option):
    args = _parser().parse_args(argv)
    with pytest.raises(ConfigError) as exc:
        settings_from_args(TrainSettings, args)
    msg = str(exc.value)
    assert msg.startswith(option + ":"), msg
    assert "\n" not in msg
    assert "_" not in msg.split(":")[0]  # the option as typed, with dashes


def test_two_bad_values_are_both_named():
    args = _parser().parse_args(["--chunk-size", "0", "--n-jobs", "0"])
    with pytest.raises(ConfigError) as exc:
        settings_from_args(TrainSettings, args)
    assert "--chunk-size" in str(exc.value) and "--n-jobs" in str(exc.value)
