"""The Slack app manifest is one Slack would accept, and it wires up what the bot serves.

Validated against Slack's published JSON Schema for manifests, major version 1
(slackapi/manifest-schema, MIT; a copy with its licence is kept in tests/data).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "slack-app-manifest.yml"
SCHEMA_NAME = "manifest.schema.1.0.0.json"
SHARED_SCHEMA = REPO.parent / "shared" / "slack" / SCHEMA_NAME
VENDORED_SCHEMA = Path(__file__).resolve().parent / "data" / SCHEMA_NAME

REQUIRED_BOT_SCOPES = {"chat:write", "commands", "im:write", "users:read", "files:write"}
EVENTS_PATH = "/slack/events"


def _schema_path() -> Path:
    # The shared reference copy when working in the monorepo, else the committed copy.
    return SHARED_SCHEMA if SHARED_SCHEMA.is_file() else VENDORED_SCHEMA


def _load_manifest(text: str | None = None) -> dict[str, Any]:
    data = yaml.safe_load(MANIFEST.read_text(encoding="utf-8") if text is None else text)
    assert isinstance(data, dict), "the manifest must be a YAML mapping"
    return data


def _schema_errors(manifest: dict[str, Any]) -> list[str]:
    schema = json.loads(_schema_path().read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))
    ]


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return _load_manifest()


def test_manifest_matches_slack_schema(manifest: dict[str, Any]) -> None:
    errors = _schema_errors(manifest)
    assert not errors, "slack-app-manifest.yml is invalid:\n" + "\n".join(errors)


def test_schema_rejects_a_broken_manifest(manifest: dict[str, Any]) -> None:
    """Guard against a validator that accepts anything (e.g. a schema that failed to load)."""
    broken = json.loads(json.dumps(manifest))
    broken["features"]["slash_commands"][0]["command"] = "deal"  # must start with "/"
    broken["display_information"]["name"] = "x" * 36  # at most 35 characters
    broken["settings"]["interactivity"].pop("is_enabled")  # required
    broken["unknown_top_level_key"] = True  # additionalProperties: false
    errors = "\n".join(_schema_errors(broken))
    assert "features/slash_commands/0/command: 'deal' does not match" in errors, errors
    assert "display_information/name: " in errors and "is too long" in errors, errors
    assert "settings/interactivity: 'is_enabled' is a required property" in errors, errors
    assert "'unknown_top_level_key' was unexpected" in errors, errors


def test_vendored_schema_matches_shared_copy() -> None:
    assert VENDORED_SCHEMA.is_file()
    assert (VENDORED_SCHEMA.parent / "LICENSE-manifest-schema").is_file()
    if not SHARED_SCHEMA.is_file():
        pytest.skip("no shared reference copy outside this repository")
    assert json.loads(VENDORED_SCHEMA.read_text(encoding="utf-8")) == json.loads(
        SHARED_SCHEMA.read_text(encoding="utf-8")
    )


def test_metadata_and_display(manifest: dict[str, Any]) -> None:
    assert manifest["_metadata"]["major_version"] == 1
    display = manifest["display_information"]
    assert display["name"] == "funnelbot"
    assert "商机漏斗" in display["description"]
    # The schema spells this constraint "regex", which JSON Schema ignores: check it here.
    assert re.fullmatch(r"#[0-9a-fA-F]{3}([0-9a-fA-F]{3})?", display["background_color"])


def test_both_commands_escape_mentions(manifest: dict[str, Any]) -> None:
    """should_escape makes Slack send <@U123|name>, which the command parser expects."""
    commands = {c["command"]: c for c in manifest["features"]["slash_commands"]}
    assert set(commands) == {"/deal", "/funnel"}
    for name, command in commands.items():
        assert command.get("should_escape") is True, name
        assert command["url"].endswith(EVENTS_PATH), name


def test_app_home_and_bot_user(manifest: dict[str, Any]) -> None:
    features = manifest["features"]
    assert features["app_home"]["home_tab_enabled"] is True
    assert features["app_home"]["messages_tab_enabled"] is True
    assert features["bot_user"]["display_name"] == "funnelbot"


def test_events_and_interactivity(manifest: dict[str, Any]) -> None:
    settings = manifest["settings"]
    events = settings["event_subscriptions"]
    assert "app_home_opened" in events["bot_events"]
    assert events["request_url"].endswith(EVENTS_PATH)
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["interactivity"]["request_url"].endswith(EVENTS_PATH)
    assert settings["socket_mode_enabled"] is True


def test_bot_scopes(manifest: dict[str, Any]) -> None:
    scopes = manifest["oauth_config"]["scopes"]
    bot = scopes["bot"]
    assert len(bot) == len(set(bot)), "duplicate scope"
    missing = REQUIRED_BOT_SCOPES - set(bot)
    assert not missing, missing
    assert "user" not in scopes, "funnelbot acts as its bot user only"
    if "users:read.email" in bot:
        assert "users:read" in bot  # Slack requires it alongside
