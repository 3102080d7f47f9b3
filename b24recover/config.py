"""Settings from the TOML config file (SPEC §3); every key optional, defaults below."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit

from .clock import parse_duration
from .errors import B24Error

DEFAULT_LINK_TEMPLATE = (
    "{portal_url}/auth/index.php?change_password=yes&lang={lang}"
    "&USER_CHECKWORD={control_string}&USER_LOGIN={login}"
)
LANGUAGES = ("en", "ru", "de", "it", "pt")


@dataclass
class TokenSettings:
    link_ttl: int = 24 * 3600
    code_ttl: int = 10 * 60
    code_attempts: int = 3
    resend_interval: int = 60
    daily_limit: int = 10
    retention: int = 30 * 86400
    account_failures: int = 10
    link_template: str = DEFAULT_LINK_TEMPLATE


@dataclass
class PolicySettings:
    preset: str = ""
    PASSWORD_LENGTH: int = 12
    PASSWORD_UPPERCASE: bool = False
    PASSWORD_LOWERCASE: bool = False
    PASSWORD_DIGITS: bool = False
    PASSWORD_PUNCTUATION: bool = False
    PASSWORD_UNIQUE_COUNT: int = 5
    max_length: int = 256
    # Keys the config file wrote, so a preset does not override them (see services.policy.effective).
    explicit: frozenset | None = field(default=None, repr=False, compare=False)


@dataclass
class MailSettings:
    transport: str = "outbox"
    sender: str = ""
    outbox_dir: str = ""
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_security: str = "none"
    smtp_user: str = ""
    smtp_password_env: str = ""
    smtp_timeout: int = 10


@dataclass
class SmsSettings:
    transport: str = "outbox"
    command: list = field(default_factory=list)
    command_env: list = field(default_factory=list)  # extra variables the command may inherit
    http_url: str = ""
    http_timeout: int = 10


@dataclass
class AccountSettings:
    unique_email: bool = True


@dataclass
class AuditSettings:
    syslog: bool = False


@dataclass
class PortalSettings:
    dsn: str = ""
    password_env: str = ""
    charset: str = "utf-8"
    write: bool = False


@dataclass
class Settings:
    portal_url: str = "https://portal.example.com"
    default_country: str = "RU"
    default_lang: str = "en"
    actor: str = ""
    bcrypt_rounds: int = 12
    tokens: TokenSettings = field(default_factory=TokenSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    mail: MailSettings = field(default_factory=MailSettings)
    sms: SmsSettings = field(default_factory=SmsSettings)
    accounts: AccountSettings = field(default_factory=AccountSettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    portal: PortalSettings = field(default_factory=PortalSettings)
    db_path: Path = Path("b24recover.db")  # or a store.url.StoreURL for a PostgreSQL store
    # '<section>.<key>' -> 'file:line' for every value the config file set (`config show`).
    sources: dict = field(default_factory=dict, repr=False, compare=False)
    config_file: Path | None = field(default=None, repr=False, compare=False)
    config_how: str = field(default="", repr=False, compare=False)

    @property
    def sender(self) -> str:
        if self.mail.sender:
            return self.mail.sender
        host = urlsplit(self.portal_url).hostname or "localhost"
        return f"no-reply@{host}"

    @property
    def local_base(self) -> str:
        """What the key file and the outbox are named after: `<store path>` for SQLite; for a
        PostgreSQL store (no local file) `b24recover-<dbname>` beside the config file, so every
        node configured from the same folder finds the same key."""
        if getattr(self.db_path, "engine", None) != "postgresql":
            return str(self.db_path)
        folder = self.config_file.parent if self.config_file is not None else Path(".")
        return str(folder / f"b24recover-{self.db_path.dbname}")

    @property
    def outbox_dir(self) -> Path:
        if self.mail.outbox_dir:
            return Path(self.mail.outbox_dir)
        return Path(self.local_base + ".outbox")

    @property
    def key_path(self) -> Path:
        return Path(self.local_base + ".key")


_SECTIONS = (TokenSettings, PolicySettings, MailSettings, SmsSettings, AccountSettings, AuditSettings, PortalSettings)
_DURATIONS = {"link_ttl", "code_ttl", "resend_interval", "retention", "smtp_timeout", "http_timeout"}
# Whole numbers that must be at least 1 (0 would disable a guard or make the tool unusable).
_POSITIVE = {"code_attempts", "daily_limit", "account_failures", "smtp_port"}
SECTION_NAMES = ("tokens", "policy", "hashing", "accounts", "audit", "portal", "mail", "sms")
PLACEHOLDERS = ("portal_url", "lang", "control_string", "login")
CONFIG_ENV = "B24RECOVER_CONFIG"


def search_path() -> list[Path]:
    """Where the config is looked for without --config / B24RECOVER_CONFIG, first found wins (SPEC §2)."""
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return [Path("b24recover.toml"), Path(xdg) / "b24recover" / "b24recover.toml",
            Path("/etc/b24recover/b24recover.toml")]


def find_config(config_path: str | None) -> tuple[Path | None, str]:
    """(the config file or None, how it was chosen)."""
    if config_path is not None:
        how = f"env {CONFIG_ENV}" if os.environ.get(CONFIG_ENV) == config_path else "--config"
        return Path(config_path), how
    for candidate in search_path():
        if candidate.is_file():
            return candidate, "found"
    return None, "none found"


def format_duration(seconds: int) -> str:
    # The spelling SPEC uses: 60s, 10m, 24h, 30d.
    for unit, size, least in (("d", 86400, 2 * 86400), ("h", 3600, 3600), ("m", 60, 600)):
        if seconds >= least and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _key_lines(text: str) -> dict[str, int]:
    """'<section>.<key>' (or '<key>' at the top) -> its line number, for error messages and `config show`."""
    import re

    lines, section = {}, ""
    for number, line in enumerate(text.splitlines(), start=1):
        header = re.match(r"\s*\[\s*([A-Za-z0-9_-]+)\s*\]", line)
        if header:
            section = header.group(1)
            continue
        key = re.match(r"\s*([A-Za-z0-9_-]+)\s*=", line)
        if key:
            lines.setdefault(f"{section}.{key.group(1)}" if section else key.group(1), number)
    return lines


class _Reader:
    """Fills Settings from one parsed file, remembering where each value came from."""

    def __init__(self, settings: Settings, path: Path, text: str):
        self.settings, self.path, self.lines = settings, path, _key_lines(text)

    def where(self, name: str) -> str:
        line = self.lines.get(name)
        return f"{self.path}:{line}" if line else str(self.path)

    def fail(self, name: str, problem: str) -> B24Error:
        return B24Error("config_invalid", f"{self.where(name)}: {name}: {problem}", hint=CONFIG_HINT,
                        file=str(self.path), key=name)

    def duration(self, name: str, value) -> int:
        if not isinstance(value, str) or value.strip().isdigit():
            raise self.fail(name, f"{value!r} is not a duration: write it as a string with a unit, "
                                  "e.g. \"90s\", \"10m\", \"24h\" or \"30d\"")
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise self.fail(name, str(exc)) from None
        if seconds <= 0:
            raise self.fail(name, "must be longer than 0s")
        return seconds

    def fill(self, obj, table: dict, section: str) -> None:
        known = {f.name: f for f in fields(obj)}
        for key, value in table.items():
            name = f"{section}.{key}" if section else key
            if key not in known or key in ("explicit", "db_path", "bcrypt_rounds", "sources", "config_file") \
                    or isinstance(getattr(obj, key), _SECTIONS):
                raise self.fail(name, "unknown setting")
            current = getattr(obj, key)
            if key in _DURATIONS:
                value = self.duration(name, value)
            elif isinstance(current, bool):
                if not isinstance(value, bool):
                    raise self.fail(name, "expected true or false")
            elif isinstance(current, int):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise self.fail(name, "expected a whole number")
                if key in _POSITIVE and value < 1:
                    raise self.fail(name, "must be at least 1")
            elif isinstance(current, str):
                if not isinstance(value, str):
                    raise self.fail(name, "expected a string")
            elif isinstance(current, list):
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise self.fail(name, "expected a list of strings")
            setattr(obj, key, value)
            self.settings.sources[name] = self.where(name)


CONFIG_HINT = ("Fix that line; 'b24recover config show --defaults' lists every key with its default "
               "(docs/reference.md describes them).")


def _store_location(db: str):
    """The SQLite file Path, or a store.url.StoreURL (imported only for a URL: start-up time)."""
    if str(db)[:11].lower().startswith(("postgresql:", "postgres:")):
        from .store.url import location

        return location(db)
    return db if isinstance(db, Path) else Path(db)


def load_settings(config_path: str | None, db_path: str) -> Settings:
    """Read the config (SPEC §2 discovery); a path given explicitly must exist, found ones are optional."""
    settings = Settings(db_path=_store_location(db_path))
    path, how = find_config(config_path)
    settings.config_file, settings.config_how = path, how
    if path is None:
        return settings
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise B24Error("config_invalid", f"config file {path} does not exist ({how})", hint=CONFIG_HINT,
                       file=str(path)) from None
    except OSError as exc:
        raise B24Error("config_invalid", f"cannot read config file {path}: {exc.strerror}", hint=CONFIG_HINT,
                       file=str(path)) from None
    import tomllib

    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise B24Error("config_invalid", f"{path}: {exc}", hint=CONFIG_HINT, file=str(path)) from None
    _read(_Reader(settings, path, text), data)
    return settings


def _read(r: _Reader, data: dict) -> None:
    settings = r.settings
    sections = {"tokens": settings.tokens, "policy": settings.policy, "mail": settings.mail, "sms": settings.sms,
                "accounts": settings.accounts, "audit": settings.audit, "portal": settings.portal}
    top = {}
    for key, value in data.items():
        if key in sections or key == "hashing":
            if not isinstance(value, dict):
                raise r.fail(key, f"[{key}] must be a table")
        if key in sections:
            section = dict(value)
            if key == "policy" and "CHECKWORD_TIMEOUT" in section:
                # Bitrix's name for the link lifetime, in minutes.
                minutes = section.pop("CHECKWORD_TIMEOUT")
                if isinstance(minutes, bool) or not isinstance(minutes, int) or minutes < 1:
                    raise r.fail("policy.CHECKWORD_TIMEOUT", f"{minutes!r} is not a whole number of minutes (1 or more)")
                settings.tokens.link_ttl = minutes * 60
                settings.sources["tokens.link_ttl"] = r.where("policy.CHECKWORD_TIMEOUT")
            r.fill(sections[key], section, key)
            if key == "policy":
                settings.policy.explicit = frozenset(section)
        elif key == "hashing":
            for hkey, rounds in value.items():
                if hkey != "bcrypt_rounds":
                    raise r.fail(f"hashing.{hkey}", "unknown setting")
                if isinstance(rounds, bool) or not isinstance(rounds, int) or not 4 <= rounds <= 31:
                    raise r.fail("hashing.bcrypt_rounds", "must be a whole number from 4 to 31")
                settings.bcrypt_rounds = rounds
                settings.sources["hashing.bcrypt_rounds"] = r.where("hashing.bcrypt_rounds")
        elif key in ("db_path", "bcrypt_rounds", "sources", "config_file", "config_how"):
            raise r.fail(key, "unknown setting" + (" (it belongs in [hashing])" if key == "bcrypt_rounds" else ""))
        else:
            top[key] = value
    r.fill(settings, top, "")
    _check(r)


def _check(r: _Reader) -> None:
    """Rules about values, not types (SPEC §3): each names the file and the key."""
    import string

    s = r.settings
    url = urlsplit(s.portal_url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise r.fail("portal_url", f"{s.portal_url!r} is not an absolute http(s) URL, e.g. https://portal.example.com")
    try:
        parts = list(string.Formatter().parse(s.tokens.link_template))
    except ValueError as exc:
        raise r.fail("tokens.link_template", f"bad placeholder syntax: {exc}") from None
    for _, field_name, spec, conversion in parts:
        if field_name is None:
            continue
        if field_name not in PLACEHOLDERS or spec or conversion:
            shown = "{" + field_name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise r.fail("tokens.link_template", f"placeholder {shown} is not allowed; use only "
                         + ", ".join("{" + p + "}" for p in PLACEHOLDERS))
    if "{control_string}" not in s.tokens.link_template:
        raise r.fail("tokens.link_template", "must contain {control_string}")
    if s.default_lang not in LANGUAGES:
        raise r.fail("default_lang", f"must be one of {', '.join(LANGUAGES)}")
    if "default_country" in s.sources:  # the default is known-good: import phonenumbers only when set
        from phonenumbers import SUPPORTED_REGIONS

        if s.default_country not in SUPPORTED_REGIONS:
            raise r.fail("default_country", f"{s.default_country!r} is not a known region code (ISO 3166 alpha-2, e.g. RU, DE)")
    choices = {"mail.transport": ("outbox", "smtp"), "mail.smtp_security": ("none", "starttls", "tls"),
               "sms.transport": ("outbox", "command", "http"), "portal.charset": ("utf-8", "windows-1251")}
    for name, allowed in choices.items():
        section, key = name.split(".")
        if getattr(getattr(s, section), key) not in allowed:
            raise r.fail(name, "must be " + " or ".join(repr(a) for a in allowed))
    if s.mail.smtp_port > 65535:
        raise r.fail("mail.smtp_port", "must be a port number from 1 to 65535")
    _check_command_env(r)
    if s.portal.dsn:
        from .portal.dsn import parse_dsn  # light: no driver is imported until a command connects

        try:
            parse_dsn(s.portal.dsn)
        except B24Error as exc:
            raise r.fail("portal.dsn", f"{exc.message} ({exc.hint})") from None


def _check_command_env(r: _Reader) -> None:
    """`[sms] command_env` names plain variables, never one that holds a secret (SPEC §5)."""
    import re

    settings = r.settings
    secrets = {"B24RECOVER_SECRET", settings.mail.smtp_password_env, settings.portal.password_env} - {""}
    for name in settings.sms.command_env:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise r.fail("sms.command_env", f"{name!r} is not an environment variable name")
        if name in secrets:
            raise r.fail("sms.command_env", f"{name} holds a secret and is never passed to a program")


def default_actor(settings: Settings, override: str | None = None) -> str:
    if override:
        return override
    if os.environ.get("B24RECOVER_ACTOR"):
        return os.environ["B24RECOVER_ACTOR"]
    if settings.actor:
        return settings.actor
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (KeyError, ImportError):
        return os.environ.get("USER", "unknown")
