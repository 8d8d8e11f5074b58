"""The generated pages (docs/features.md, docs/data-contract.md, docs/api.md) match the code."""

from __future__ import annotations

import dataclasses

import pytest

import docgen
from features import contract as c
from features import docs as fdocs

REGENERATE = ".venv/bin/python -m docgen"


def test_generated_pages_match_the_code():
    stale = docgen.stale_pages()
    assert not stale, f"{', '.join(stale)} differ from what the code renders; run: {REGENERATE}"


def test_the_contract_page_names_every_table_column_kind_and_key():
    text = fdocs.render_contract()
    for table in c.TABLES.values():
        assert f"### {table.name}\n" in text
        for col in table.columns:
            assert f"| `{col.name}` | {col.kind} | {'yes' if col.required else 'no'} |" in text, (table.name, col.name)
        if table.key:
            assert f"key `{table.key}`" in text
    for value in c.ACTIVITY_TYPES + c.SENIORITIES:
        assert f"`{value}`" in text
    assert f"t + {c.OUTCOME_HORIZON_DAYS} days" in text and "Point-in-time rule" in text


def test_a_contract_column_without_a_meaning_is_refused(monkeypatch):
    reps = c.TABLES[c.REPS]
    grown = dataclasses.replace(reps, columns=reps.columns + (c.Column("quota", c.FLOAT),))
    monkeypatch.setitem(c.TABLES, c.REPS, grown)
    with pytest.raises(KeyError, match="reps.quota"):
        fdocs.render_contract()


def test_a_meaning_for_a_column_that_left_the_contract_is_refused(monkeypatch):
    monkeypatch.setitem(fdocs.COLUMN_MEANINGS, (c.REPS, "quota"), "sales target")
    with pytest.raises(KeyError, match="quota"):
        fdocs.render_contract()


@pytest.fixture(scope="module")
def api_page():
    from docgen.api import render_api

    return render_api()


def test_the_api_page_lists_every_command_and_option_of_the_typer_app(api_page):
    import typer.main

    from training.cli import app

    group = typer.main.get_command(app)
    ctx = group.context_class(group, info_name="activity-scorer")
    names = group.list_commands(ctx)
    assert {"train", "score", "serve", "validate", "import-crm"} <= set(names)
    for name in names:
        cmd = group.get_command(ctx, name)
        assert f"### activity-scorer {name}\n" in api_page, name
        section = api_page.split(f"### activity-scorer {name}\n", 1)[1].split("\n### ", 1)[0]
        for param in cmd.params:
            if param.param_type_name == "option":
                assert f"`{param.opts[0]}`" in section, (name, param.opts)


def test_the_api_page_lists_every_route_with_every_answer(api_page):
    from serving.openapi import mounted_routes, service_openapi
    from serving.service import ActivityScorer

    routes = {(api.route, "post") for api in ActivityScorer.apis.values()}
    routes |= {(path, method) for path, method, _ in mounted_routes(ActivityScorer)}
    assert {("/score", "post"), ("/rank", "post"), ("/model", "get")} <= routes
    spec = service_openapi(ActivityScorer)
    for path, method in routes:
        title = f"#### {method.upper()} {path}\n"
        assert title in api_page, title
        section = api_page.split(title, 1)[1].split("\n#### ", 1)[0]
        for status in spec["paths"][path][method]["responses"]:
            assert f"\n| {status} | " in section, (path, method, status)
    for field in ("items", "explain", "candidates", "top_k", "p_outcome", "factors", "ACTIVITY_SCORER_MAX_ITEMS"):
        assert f"`{field}`" in api_page, field
