"""http_bridge.settings_flags: flags generated from a settings class, for every field type both CLIs use."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Annotated, Literal, Self

import pytest
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ortserve_common.settings_flags import NoFlag, add_settings_flags, settings_from_args


class Toy(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOY_", extra="ignore")

    name: str = Field("x", description="a text % with a percent sign")
    count: int = Field(1, ge=0, description="a count")
    ratio: float = 0.5
    on: bool = Field(True, description="a switch that starts on")
    off: bool = False
    file: Path | None = Field(None, description="a file")
    label: str | None = None
    mode: Literal["fast", "slow"] = "fast"
    origins: Annotated[list[str], NoDecode] = Field(default_factory=list, description="comma-separated")
    table: Annotated[dict[str, int], NoDecode] = Field(default_factory=dict, description="JSON object")
    secret: Annotated[list[str], NoDecode, NoFlag] = Field(default_factory=list)
    low: int = 0
    high: int = 10

    @field_validator("origins", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return [part for part in value.split(",") if part] if isinstance(value, str) else value

    @field_validator("table", mode="before")
    @classmethod
    def _json(cls, value: object) -> object:
        return json.loads(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.low > self.high:
            raise ValueError("low must not exceed high")
        return self


def parser() -> argparse.ArgumentParser:
    made = argparse.ArgumentParser(prog="toy")
    add_settings_flags(made, Toy)
    return made


def load(*argv: str) -> Toy:
    return settings_from_args(Toy, parser().parse_args(argv), "toy")


def test_no_flags_no_env_gives_the_defaults() -> None:
    assert load() == Toy()
    assert all(value is None for value in vars(parser().parse_args([])).values())


def test_every_field_type_from_flags() -> None:
    toy = load(
        "--name=y",
        "--count",
        "3",
        "--ratio",
        "0.25",
        "--no-on",
        "--off",
        "--file",
        "a/b.txt",
        "--label",
        "L",
        "--mode",
        "slow",
        "--origins",
        "https://a,https://b",
        "--table",
        '{"k": 2}',
        "--low",
        "2",
    )
    assert (toy.name, toy.count, toy.ratio, toy.on, toy.off) == ("y", 3, 0.25, False, True)
    assert (toy.file, toy.label, toy.mode) == (Path("a/b.txt"), "L", "slow")
    assert (toy.origins, toy.table, toy.low) == (["https://a", "https://b"], {"k": 2}, 2)


def test_a_list_flag_takes_several_values_or_one_in_the_environments_form() -> None:
    assert load("--origins", "https://a", "https://b").origins == ["https://a", "https://b"]
    assert load("--origins", "https://a,https://b").origins == ["https://a", "https://b"]
    assert load("--origins", "https://a").origins == ["https://a"]


@pytest.mark.parametrize(
    ("argv", "on"),
    [([], True), (["--on"], True), (["--on", "false"], False), (["--on=0"], False), (["--no-on"], False)],
)
def test_booleans_take_a_value_or_none_and_have_a_no_form(argv: list[str], on: bool) -> None:
    assert load(*argv).on is on


def test_env_is_the_default_and_a_flag_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOY_COUNT", "7")
    monkeypatch.setenv("TOY_ON", "false")
    monkeypatch.setenv("TOY_TABLE", '{"env": 1}')
    assert (load().count, load().on, load().table) == (7, False, {"env": 1})
    assert (load("--count", "8").count, load("--on").on, load("--table", "{}").table) == (8, True, {})


def test_a_no_flag_field_is_env_only(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TOY_SECRET", "s1,s2")
    assert "secret" not in vars(parser().parse_args([]))
    with pytest.raises(SystemExit) as exc:
        parser().parse_args(["--secret", "x"])
    assert exc.value.code == 2 and "--secret" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--count", "many"], "--count (TOY_COUNT): Input should be a valid integer"),
        (["--count=-1"], "--count (TOY_COUNT): Input should be greater than or equal to 0"),
        (["--ratio", "half"], "--ratio (TOY_RATIO): Input should be a valid number"),
        (["--on", "maybe"], "--on (TOY_ON): Input should be a valid boolean"),
        (["--mode", "medium"], "--mode (TOY_MODE): Input should be 'fast' or 'slow'"),
        (["--table", "{k"], "--table (TOY_TABLE): Value error, Expecting property name"),
        (["--table", '{"k": "v"}'], "--table (TOY_TABLE): Input should be a valid integer"),
        (["--low", "20"], "low must not exceed high"),
    ],
)
def test_a_wrong_value_exits_2_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        load(*argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("toy: error: invalid settings: ") and message in err, err


def test_a_wrong_env_value_is_reported_the_same_way(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TOY_MODE", "medium")
    with pytest.raises(SystemExit) as exc:
        load()
    assert exc.value.code == 2 and "--mode (TOY_MODE): Input should be 'fast' or 'slow'" in capsys.readouterr().err
    assert load("--mode", "slow").mode == "slow"  # a flag given wins over the bad environment value


def test_help_comes_from_the_descriptions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--name TEXT a text % with a percent sign (env TOY_NAME; default: x)" in text
    assert "--count INT a count (env TOY_COUNT; default: 1)" in text
    assert "--ratio FLOAT ratio (env TOY_RATIO; default: 0.5)" in text
    assert "--on [BOOL] a switch that starts on (env TOY_ON; default: true)" in text
    assert "--no-on --on false" in text
    assert "--file PATH a file (env TOY_FILE; default: none)" in text
    assert "--mode {fast,slow} mode (env TOY_MODE; default: fast)" in text
    assert "--origins TEXT [TEXT ...] comma-separated (env TOY_ORIGINS; default: empty)" in text


def test_a_list_or_dict_field_without_nodecode_is_refused() -> None:
    """pydantic-settings would merge a dict flag into the environment's dict: such a field must parse text."""

    class Decoded(BaseSettings):
        table: dict[str, int] = Field(default_factory=dict)

    with pytest.raises(TypeError, match=r"Decoded\.table: a list or dict flag needs NoDecode"):
        add_settings_flags(argparse.ArgumentParser(), Decoded)
