"""The generated references in docs/ match the code, and the OpenAPI document is valid and complete."""

from __future__ import annotations

import msgspec
from openapi_spec_validator import validate

from agent.commands.registry import COMMANDS
from agent.reference import documents as reference
from agent.reference.config import SECTIONS, described_fields
from agent.reference.metrics import exposed_name, metrics_markdown
from agent.server.actions.registry import openapi_document
from agent.supervision.metrics import MetricsView, families
from common.config_types import RESOLVED_FIELDS, Config, SinkConfig


def test_committed_references_are_what_the_code_generates():
    stale = reference.stale_documents()
    assert not stale, f"out of date: {', '.join(stale)}; regenerate with {reference.REGENERATE} and commit them"


def test_a_drifted_file_is_named(tmp_path):
    (tmp_path / "docs").mkdir()
    reference.write_documents(str(tmp_path))
    (tmp_path / "docs" / "metrics.md").write_text("edited by hand\n")
    assert reference.stale_documents(str(tmp_path)) == ["docs/metrics.md"]


def test_openapi_document_validates_as_openapi_3():
    validate(openapi_document())


def test_openapi_document_names_every_route_of_the_registry():
    doc = openapi_document()
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    assert documented == {(c.method, c.path) for c in COMMANDS}
    assert {op["operationId"] for ops in doc["paths"].values() for op in ops.values()} == {c.name for c in COMMANDS}


def test_every_config_key_has_a_description_and_is_documented():
    text = reference.GENERATED["docs/config.md"]()
    for heading, struct in SECTIONS:
        assert f"## `{heading}`" in text
        for field, _ in described_fields(struct):
            assert f"| `{field.name}` |" in text
    file_keys = {f.name for f in msgspec.structs.fields(SinkConfig)} - RESOLVED_FIELDS
    assert {f.name for f, _ in described_fields(SinkConfig)} == file_keys
    assert [h.strip("[]") for h, _ in SECTIONS] == list(Config.__struct_fields__)


def test_every_metric_family_is_documented():
    text = metrics_markdown()
    for family in families(MetricsView()):
        assert f"| `{exposed_name(family)}` | {family.type} |" in text


def test_every_event_and_field_is_documented():
    from bus.events import EVENT_DATA_TYPES

    text = reference.GENERATED["docs/events.md"]()
    for event, tp in EVENT_DATA_TYPES.items():
        assert f"## `{event}`" in text
        for field in msgspec.structs.fields(tp):
            assert f"| `{field.name}` |" in text
    assert "| `name` | string | **required** |" in text and "| `uuid` | string | **required** |" in text


def test_every_command_of_both_programs_is_documented():
    from agent import cli
    from agent.client import ctl
    from agent.reference.commands import _subparsers

    text = reference.GENERATED["docs/commands.md"]()
    for prog, parser in ((cli.PROG, cli.build_parser()), (ctl.PROG, ctl.build_parser())):
        subs, _ = _subparsers(parser)
        for name, sub in subs.items():
            assert f"### `{prog} {name}`" in text
            for action in sub._actions:
                for option in set(action.option_strings) - {"-h", "--help"}:
                    assert f"`{option}" in text, (prog, name, option)
