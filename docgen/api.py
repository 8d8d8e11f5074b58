"""Render ``docs/api.md``: the HTTP service and every CLI command, discovered from the code.

Endpoints, request and response fields and status codes come from the service's completed
OpenAPI document (:func:`serving.openapi.service_openapi`: BentoML's routes and pydantic
schemas, the mounted routes, every answer); settings and limits from
:class:`serving.settings.Settings`; commands and options from the Typer app
(``training.cli.app``). A field of a contract row without a description of its own takes
the contract's meaning (:data:`features.docs.COLUMN_MEANINGS`). Nothing here is a hand
list of endpoints or commands: a new route or command appears when the page is regenerated.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
from dataclasses import fields
from typing import Any

logger = logging.getLogger(__name__)

INFRA_TAG = "Infrastructure"
REF_PREFIX = "#/components/schemas/"

# Schemas named after the contract table whose rows they carry (fields fall back to its meanings).
SCHEMA_TABLES = {
    "Activity": "activities", "HistoryActivity": "activities", "Candidate": "activities",
    "Response": "responses", "DealStage": "deal_stages", "Outcome": "outcomes",
    "Deal": "deals", "Contact": "contacts", "HistoryContact": "contacts", "Account": "accounts",
}


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


# Meanings of fields whose schema has no description (prose only; names come from the schemas).
EXTRA_MEANINGS = {
    ("Deal", "stage"): "the stage the deal is in at the activity's time",
    ("Deal", "stage_order"): "that stage's order (as `deal_stages.stage_order`)",
    ("Deal", "stage_entered_at"): "when the deal entered that stage",
    ("ModelRef", "name"): "registered model name",
    ("ModelRef", "version"): "registered version (null for a bundle served from a directory)",
    ("ModelRef", "trained_at"): "when the model was trained (ISO 8601)",
    ("ErrorResponse", "errors"): "every problem found, in request order",
    ("ErrorDetail", "message"): "what is wrong and, where it helps, what is expected",
    ("RankRequest", "top_k"): "how many ranked candidates to return",
    ("RankRequest", "explain"): "add the factors behind each p_outcome",
    ("ScoreResult", "activity_id"): "the item's `activity.activity_id` (null when it had none)",
    ("ScoreResponse", "results"): "one per item, in request order",
    ("ScoreResponse", "effect_unit"): "unit of `factors[].effect`",
    ("RankResponse", "effect_unit"): "unit of `factors[].effect`",
    ("RankResponse", "at"): "the time the candidates were ranked for",
    ("RankedActivity", "p_output"): "calibrated probability of a meaningful output",
    ("RankedActivity", "p_negative"): "calibrated probability of a negative output",
    ("RankedActivity", "factors"): "present when explain is true; largest |effect| first",
    ("RankedActivity", "unseen"): "features whose category value was not seen in training",
}
# Last fallback, by field name alone.
FIELD_MEANINGS = {
    "deal": "the deal (a `deals` row) and where it stands",
    "contact": "the person (a `contacts` row)",
    "account": "the customer company (an `accounts` row)",
    "history": "earlier rows of the same deal, contact and account",
    "model": "the model that answered",
    "activities": "earlier `activities` rows",
    "responses": "earlier `responses` rows",
    "deal_stages": "earlier `deal_stages` rows",
    "outcomes": "earlier `outcomes` rows",
    "contacts": "`contacts` rows of the people in the history",
    "error": "what went wrong",
    "detail": "more about it",
}


def _key_meaning(name: str) -> str:
    """The contract's meaning of a table key (``deal_id`` -> "unique id of the deal"), else ""."""
    from features import contract as c
    from features.docs import COLUMN_MEANINGS

    for table in c.TABLES.values():
        if table.key == name:
            return COLUMN_MEANINGS.get((table.name, name), "")
    return ""


def _clean(text: str) -> str:
    text = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", text)
    return text.replace("``", "`")


def _one_line(text: str | None) -> str:
    return _clean(" ".join(inspect.cleandoc(text or "").split())).replace("|", "\\|")


def _paragraphs(text: str | None) -> str:
    return _clean(inspect.cleandoc(text or ""))


def _ref_name(ref: str) -> str:
    return ref[len(REF_PREFIX):] if ref.startswith(REF_PREFIX) else ref


def _type(schema: dict[str, Any]) -> tuple[str, bool]:
    """(readable type, nullable) of a JSON schema."""
    if "$ref" in schema:
        name = _ref_name(schema["$ref"])
        return f"[{name}](#{slug(name)})", False
    if isinstance(schema.get("type"), list):  # a type list (OpenAPI 3.1, serving.openapi.merge_type_unions)
        return _type({"anyOf": [{**schema, "type": kind} for kind in schema["type"]]})
    if "anyOf" in schema:
        parts, nullable = [], False
        for option in schema["anyOf"]:
            if option.get("type") == "null":
                nullable = True
                continue
            text, inner_null = _type(option)
            nullable |= inner_null
            parts.append(text)
        return " or ".join(dict.fromkeys(parts)) or "any", nullable
    kind = schema.get("type")
    if kind == "array":
        item, _ = _type(schema.get("items", {}))
        return f"list of {item}", False
    if kind == "string" and schema.get("format") == "date-time":
        return "timestamp", False
    if "enum" in schema:
        return "one of " + ", ".join(f"`{v}`" for v in schema["enum"]), False
    if kind == "object" or kind is None:
        return ("object" if kind else "any"), False
    return {"number": "number", "integer": "integer", "boolean": "boolean", "string": "string"}.get(kind, kind), False


def _constraints(schema: dict[str, Any]) -> list[str]:
    out = []
    options = [schema] + [o for o in schema.get("anyOf", []) if o.get("type") != "null"]
    for s in options:
        if "minimum" in s and "maximum" in s:
            out.append(f"{s['minimum']} to {s['maximum']}")
        elif "minimum" in s:
            out.append(f">= {s['minimum']}")
        elif "maximum" in s:
            out.append(f"<= {s['maximum']}")
        if "exclusiveMinimum" in s:
            out.append(f"> {s['exclusiveMinimum']}")
        if s.get("minLength"):
            out.append(f"at least {s['minLength']} character{'s' if s['minLength'] > 1 else ''}")
        if "maxLength" in s:
            out.append(f"at most {s['maxLength']} characters")
    return out


def _field_meaning(schema_name: str, field: str, prop: dict[str, Any], schemas: dict[str, Any]) -> str:
    if prop.get("description"):
        return _one_line(prop["description"])
    name = schema_name.removesuffix("IODescriptor")
    if (name, field) in EXTRA_MEANINGS:
        return _one_line(EXTRA_MEANINGS[(name, field)])
    table = SCHEMA_TABLES.get(name)
    if table is not None:
        from features.docs import COLUMN_MEANINGS

        if (table, field) in COLUMN_MEANINGS:
            return _one_line(COLUMN_MEANINGS[(table, field)])
    refs = _refs(prop)
    if refs and refs[0] in schemas:
        first = inspect.cleandoc(schemas[refs[0]].get("description", "")).split("\n\n")[0]
        if first:
            return _one_line(first)
    return _one_line(FIELD_MEANINGS.get(field, ""))


def render_schema_table(name: str, schema: dict[str, Any], schemas: dict[str, Any] | None = None) -> list[str]:
    """A Markdown table of a JSON schema's properties: field, type, required, meaning.

    Args:
        name: the schema's name (its title for an inline schema), for fallback meanings.
        schema: the JSON schema.
        schemas: the document's component schemas (a field referring to one without a
            description of its own takes the first paragraph of that schema's).
    """
    required = set(schema.get("required", ()))
    lines = ["| field | type | required | meaning |", "|---|---|---|---|"]
    for field, prop in schema.get("properties", {}).items():
        if prop.get("deprecated"):
            continue
        text, nullable = _type(prop)
        notes = _constraints(prop)
        if "default" in prop and prop["default"] is not None and field not in required:
            notes.append(f"default `{json.dumps(prop['default'])}`")
        if nullable:
            notes.append("may be null")
        meaning = _field_meaning(name, field, prop, schemas or {})
        extra = f" ({'; '.join(notes)})" if notes else ""
        lines.append(f"| `{field}` | {text} | {'yes' if field in required else 'no'} | {meaning}{extra} |")
    if schema.get("additionalProperties") not in (None, False):
        lines.append("| *other keys* | string, number, boolean or null | no | custom fields (columns beyond the "
                     "contract's), used like the custom columns of a dataset |")
    return lines


def _refs(schema: Any) -> list[str]:
    found: list[str] = []
    if isinstance(schema, dict):
        if "$ref" in schema:
            found.append(_ref_name(schema["$ref"]))
        for value in schema.values():
            found.extend(_refs(value))
    elif isinstance(schema, list):
        for value in schema:
            found.extend(_refs(value))
    return found


def _reachable(spec: dict[str, Any], roots: list[Any]) -> list[str]:
    schemas = spec.get("components", {}).get("schemas", {})
    order: list[str] = []
    queue = [name for root in roots for name in _refs(root)]
    while queue:
        name = queue.pop(0)
        if name in order or name not in schemas:
            continue
        order.append(name)
        queue.extend(_refs(schemas[name]))
    return order


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    ops = []
    for path, item in spec.get("paths", {}).items():
        for method, op in item.items():
            if isinstance(op, dict) and "responses" in op:
                ops.append((path, method, op))
    infra = [o for o in ops if INFRA_TAG in o[2].get("tags", ())]
    app = sorted((o for o in ops if o not in infra), key=lambda o: (o[0], o[1]))
    return app + sorted(infra, key=lambda o: o[0])


def _json_schema(body: dict[str, Any]) -> dict[str, Any]:
    content = body.get("content", {})
    media = content.get("application/json") or next(iter(content.values()), {})
    return media.get("schema", {}) if isinstance(media, dict) else {}


def render_http(spec: dict[str, Any]) -> str:
    """The HTTP half of ``docs/api.md`` from a completed OpenAPI document."""
    from serving.auth import MIN_KEY_LENGTH
    from serving.errors import STATUS_INVALID
    from serving.middleware import PUBLIC_PATHS
    from serving.openapi import DESCRIPTIONS, SECURITY_SCHEME, checks_key_itself
    from serving.settings import PREFIX, Settings

    from serving import middleware

    pages = ", ".join(f"`{p}`" for p in getattr(middleware, "SELF_AUTH_PREFIXES", ()))
    out = ["## HTTP service", "",
           "Default address `127.0.0.1:3000` (`activity-scorer serve`). JSON in, JSON out. Timestamps are ISO 8601;",
           "a timestamp without a zone is UTC. The running service publishes this description as an OpenAPI",
           "document at `/docs.json` (Swagger UI at `/`), with every status code below declared per route.",
           "", "### Endpoints", "",
           "| method | path | what | API key | answers |", "|---|---|---|---|---|"]
    ops = _operations(spec)
    for path, method, op in ops:
        what = _one_line(op.get("description", "")).split(". ")[0].rstrip(".")
        title = f"{method.upper()} {path}"
        guarded = "security" in op and any(SECURITY_SCHEME in s for s in op["security"])
        guarded |= checks_key_itself(path) and "401" in op["responses"]
        codes = ", ".join(sorted(op["responses"]))
        link = f"[`{title}`](#{slug(title)})" if INFRA_TAG not in op.get("tags", ()) else f"`{title}`"
        out.append(f"| {method.upper()} | {link} | {what} | {'when configured' if guarded else 'never'} | {codes} |")
    out += ["", "### Authentication", "",
            f"With API keys configured (`{PREFIX}API_KEYS`, comma-separated, and/or `{PREFIX}API_KEYS_FILE`, one",
            f"key per line, `#` comments; each key at least {MIN_KEY_LENGTH} characters), every call except",
            "health, metrics and docs (" + ", ".join(f"`{p}`" for p in sorted(PUBLIC_PATHS)) + ") needs",
            "`Authorization: Bearer <key>`, or gets 401 before its body is read."
            + (f" The HTML pages under {pages} also accept the key from their sign-in form (kept in a cookie)."
               if pages else ""),
            "Without keys the service is open:",
            "bind it to 127.0.0.1 (the default) or put it behind a gateway. Keys are kept only as SHA-256 digests",
            "and compared in constant time; they never reach a log line.",
            "", "### Errors", "",
            "A refused request gets a JSON body that names every problem, never a 200 carrying an error:",
            "", "```json",
            json.dumps({"errors": [{"item": 0, "field": "activity.occurred_at",
                                    "message": "not an ISO 8601 timestamp (e.g. 2026-03-02T15:04:00Z)"}]}),
            "```", "",
            f"`item` is the index of the offending item of `/score` (null when the error is not about one item),",
            "`field` the path inside the item or the request (`history.activities[3].type`, `candidates[2].type`,",
            "`body`). Messages never repeat the caller's values.", "",
            "| status | when |", "|---|---|"]
    for status, text in sorted(DESCRIPTIONS.items()):
        out.append(f"| {status} | {_one_line(text)} |")
    out += ["", f"Unknown category values (a new activity type, an industry never seen) are not errors: they are",
            f"scored as unseen values and listed in the result's `unseen`. Invalid input is a {STATUS_INVALID}.",
            "", "### Limits and settings", "",
            f"Every setting is an environment variable `{PREFIX}<NAME>` read when the service starts.", "",
            "| variable | default | meaning |", "|---|---|---|"]
    meanings = _attribute_docs(Settings.__doc__ or "")
    for f in fields(Settings):
        default = f.default if f.default not in ("", None) else "(none)"
        if isinstance(default, bool):
            default = "1" if default else "0"
        out.append(f"| `{PREFIX}{f.name.upper()}` | `{default}` | {_one_line(meanings.get(f.name, ''))} |")
    out += ["", "### Routes", ""]
    roots: list[Any] = []
    schemas = spec.get("components", {}).get("schemas", {})
    for path, method, op in ops:
        if INFRA_TAG in op.get("tags", ()):
            continue
        title = f"{method.upper()} {path}"
        out += [f"#### {title}", "", _paragraphs(op.get("description")) or "(no description)", ""]
        params = op.get("parameters", [])
        if params:
            out += ["| parameter | in | required | meaning |", "|---|---|---|---|"]
            for p in params:
                out.append(f"| `{p['name']}` | {p.get('in', '')} | {'yes' if p.get('required') else 'no'} | "
                           f"{_one_line(p.get('description') or _key_meaning(p['name']))} |")
            out.append("")
        if "requestBody" in op:
            schema = _json_schema(op["requestBody"])
            roots.append(schema)
            if "$ref" in schema:
                out += [f"Request body: {_type(schema)[0]}.", ""]
            else:
                out += ["Request body:", ""] + render_schema_table(schema.get("title", title), schema, schemas) + [""]
        out += ["| answer | when | body |", "|---|---|---|"]
        for status, response in sorted(op["responses"].items()):
            schema = _json_schema(response)
            roots.append(schema)
            body = ""
            if schema.get("title", "").endswith("IODescriptor") or schema.get("properties") and "$ref" not in schema:
                body = ", ".join(f"`{k}`" for k in schema.get("properties", {}))
                refs = dict.fromkeys(_refs(schema))
                if refs:
                    body += " (" + ", ".join(f"[{r}](#{slug(r)})" for r in refs) + ")"
            elif schema:
                body = _type(schema)[0]
            when = _one_line(response.get("description", ""))
            if when in ("Successful Response", "success"):
                when = "done"
            out.append(f"| {status} | {when} | {body} |")
        out.append("")
        for status, response in sorted(op["responses"].items()):
            schema = _json_schema(response)
            if status.startswith("2") and schema.get("properties") and "$ref" not in schema:
                out += [f"Response {status}:", ""] + render_schema_table(schema.get("title", title), schema, schemas) + [""]
    out += ["### Schemas", ""]
    for name in _reachable(spec, roots):
        schema = schemas[name]
        out += [f"#### {name}", ""]
        if schema.get("description"):
            out += [_paragraphs(schema["description"]), ""]
        out += render_schema_table(name, schema, schemas) + [""]
    return "\n".join(out)


def _attribute_docs(doc: str) -> dict[str, str]:
    """``name: text`` entries of a Google-style ``Attributes:`` section."""
    found: dict[str, str] = {}
    lines = inspect.cleandoc(doc).splitlines()
    inside, current = False, None
    for line in lines:
        if line.strip() == "Attributes:":
            inside = True
            continue
        if not inside:
            continue
        m = re.match(r"^\s{4}(\w+): (.*)$", line)
        if m:
            current = m.group(1)
            found[current] = m.group(2)
        elif current and line.startswith(" " * 8):
            found[current] += " " + line.strip()
        elif line.strip() and not line.startswith(" "):
            break
    return found


def _param_type(param: Any) -> str:
    if getattr(param, "metavar", None):
        return "`" + param.metavar.replace("|", " \\| ") + "`"
    if getattr(param, "is_flag", False):
        return "flag"
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    choices = getattr(annotation, "__members__", None)
    if choices:
        return " \\| ".join(f"`{getattr(v, 'value', v)}`" for v in choices.values())
    args = getattr(annotation, "__args__", None)
    if args:  # list[str] and the like: a repeatable option
        annotation = args[0]
    name = getattr(annotation, "__name__", str(annotation))
    name = {"str": "text", "int": "integer", "float": "number", "Path": "path", "bool": "flag"}.get(name, name)
    return f"{name}, repeatable" if args or getattr(param, "multiple", False) else name


def _param_default(param: Any) -> str:
    default = param.default
    if getattr(param, "is_flag", False) and getattr(param, "secondary_opts", None):
        if default is None:
            return ""
        return f"`{param.opts[0] if default else param.secondary_opts[0]}`"
    if default is None or default is False or default == () or callable(default):
        return ""
    return f"`{getattr(default, 'value', default)}`"


def _commands(group: Any, ctx: Any) -> list[tuple[str, Any]]:
    return [(n, group.get_command(ctx, n)) for n in sorted(group.list_commands(ctx))
            if not group.get_command(ctx, n).hidden]


def render_cli() -> str:
    """The command-line half of ``docs/api.md`` from the Typer app."""
    import typer.main

    from training.cli import app

    group = typer.main.get_command(app)
    ctx = group.context_class(group, info_name="activity-scorer")
    commands = _commands(group, ctx)
    out = ["## Command line", "",
           "`activity-scorer <command> --help` prints the same. Exit codes: 0 done, 1 refused (one red line",
           "naming the file, row, field or option), 2 bad options.", "",
           "| command | does |", "|---|---|"]
    for name, cmd in commands:
        first = _one_line((cmd.help or "").split("\n\n")[0])
        out.append(f"| [`{name}`](#{slug('activity-scorer ' + name)}) | {first} |")
    out.append("")
    for name, cmd in commands:
        sub = cmd.context_class(cmd, info_name=name, parent=ctx)
        usage = " ".join(cmd.collect_usage_pieces(sub))
        out += [f"### activity-scorer {name}", "", "```", f"activity-scorer {name} {usage}".rstrip(), "```", "",
                _paragraphs(cmd.help), ""]
        params = [p for p in cmd.params if not getattr(p, "hidden", False)]
        if params:
            out += ["| option | type | default | meaning |", "|---|---|---|---|"]
            for p in params:
                if p.param_type_name == "argument":
                    label = f"`{p.name.upper()}`" + ("" if p.required else " (optional)")
                else:
                    label = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
                    if p.required:
                        label += " (required)"
                out.append(f"| {label} | {_param_type(p)} | {_param_default(p)} | {_one_line(getattr(p, 'help', ''))} |")
            out.append("")
        if isinstance(getattr(cmd, "commands", None), dict):
            logger.warning("activity-scorer %s has subcommands; docs/api.md lists only its own options", name)
    return "\n".join(out)


HEADER = """# API: the HTTP service and the command line

Generated by `{command}` from the service's routes and pydantic schemas (`serving/`), its
OpenAPI document as completed by `serving/openapi.py`, `serving/settings.py`, and the Typer
app (`training/cli.py`); `tests/docs/test_generated_docs.py` fails when this page and the code
drift apart. What a dataset holds: [data contract](data-contract.md); the features the models
use: [features](features.md); running and tuning the service: [serving](serving.md).
"""


def render_api(command: str = "python -m docgen") -> str:
    """``docs/api.md``: the completed OpenAPI document of the service, then the CLI."""
    from serving.openapi import service_openapi
    from serving.service import ActivityScorer

    spec = service_openapi(ActivityScorer)
    return HEADER.format(command=command) + "\n" + render_http(spec).rstrip() + "\n\n" + render_cli().rstrip() + "\n"
