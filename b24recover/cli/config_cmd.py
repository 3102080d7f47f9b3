"""`config show`: every effective setting and where it came from (file:line, env, default)."""

from __future__ import annotations

import os
from dataclasses import fields

import typer

from . import render
from .runtime import handle_errors

app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode=None)

# Keys whose values may carry a credential (user:password@ in a URL): shown redacted.
_URL_KEYS = {"sms.http_url", "portal.dsn", "mail.smtp_host"}
_INTERNAL = {"explicit"}


def _redact(name: str, value):
    if name in _URL_KEYS and isinstance(value, str) and "@" in value:
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(value)
        if parts.username is not None or parts.password is not None:
            host = parts.hostname or ""
            if parts.port:
                host += f":{parts.port}"
            return urlunsplit(parts._replace(netloc="***@" + host))
    return value


def effective_settings(settings, *, actor: str | None = None, defaults: bool = False) -> dict:
    """'<section>.<key>' -> {"value", "source"}, in the order of SPEC §3."""
    from ..config import _DURATIONS, default_actor, format_duration

    out: dict[str, dict] = {}

    def put(name: str, value, key: str) -> None:
        if key in _DURATIONS and isinstance(value, int):
            value = format_duration(value)
        out[name] = {"value": _redact(name, value), "source": settings.sources.get(name, "default")}

    for key in ("portal_url", "default_country", "default_lang"):
        put(key, getattr(settings, key), key)
    put("actor", settings.actor, "actor")
    if not defaults:
        if actor:
            out["actor"] = {"value": actor, "source": "--actor"}
        elif os.environ.get("B24RECOVER_ACTOR"):
            out["actor"] = {"value": os.environ["B24RECOVER_ACTOR"], "source": "env B24RECOVER_ACTOR"}
        elif not settings.actor:
            out["actor"] = {"value": default_actor(settings), "source": "default (the OS user)"}
    sections = [("tokens", settings.tokens), ("policy", settings.policy)]
    for name, obj in sections:
        for f in fields(obj):
            if f.name not in _INTERNAL:
                put(f"{name}.{f.name}", getattr(obj, f.name), f.name)
    put("hashing.bcrypt_rounds", settings.bcrypt_rounds, "bcrypt_rounds")
    for name in ("accounts", "audit", "portal", "mail", "sms"):
        obj = getattr(settings, name)
        for f in fields(obj):
            put(f"{name}.{f.name}", getattr(obj, f.name), f.name)
    return out


@app.command("show")
@handle_errors
def show(
    ctx: typer.Context,
    defaults: bool = typer.Option(False, "--defaults", help="Ignore config files: every key with its built-in default."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """Every effective setting and where it came from: file and line, environment, or default.

    The config is --config, else B24RECOVER_CONFIG, else the first that exists of
    ./b24recover.toml, $XDG_CONFIG_HOME/b24recover/b24recover.toml (~/.config when unset) and
    /etc/b24recover/b24recover.toml. Secrets are never shown: the config only names the
    environment variables that hold them, and credentials in URLs are redacted.

    Examples:

    \b
      b24recover config show
      b24recover config show --json
      b24recover config show --defaults
    """
    from ..config import Settings, load_settings, search_path

    g = ctx.find_root().obj
    if defaults:
        settings = Settings()
        settings.config_file, settings.config_how = None, "--defaults"
    else:
        settings = load_settings(g.config, g.db)
    if g.db_source is None:
        db_source = "env B24RECOVER_DB" if os.environ.get("B24RECOVER_DB") == g.db else (
            "default" if g.db == "b24recover.db" else "--db")
    else:
        db_source = g.db_source
    config_file = str(settings.config_file) if settings.config_file else None
    body = {
        "config_file": config_file,
        "config_source": settings.config_how,
        "searched": [str(p) for p in search_path()],
        "store": {"value": g.db, "source": db_source},
        "settings": effective_settings(settings, actor=g.actor, defaults=defaults),
    }
    if as_json:
        render.emit_json(body)
        return
    if config_file:
        render.line(f"Config file: {config_file} ({settings.config_how})")
    elif defaults:
        render.line("Config file: none (--defaults: built-in defaults)")
    else:
        render.line("Config file: none found (looked for " + ", ".join(body["searched"]) + ")")
    render.line(f"Store: {g.db} ({db_source})")
    rows = [{"setting": k, "value": _shown(v["value"]), "source": v["source"]} for k, v in body["settings"].items()]
    render.table([("setting", "Setting"), ("value", "Value"), ("source", "Source")], rows)


def _shown(value) -> str:
    import json

    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
