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
    config_file: Path | None = None  # the config file read, if any

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


def _fill(obj, table: dict, where: str) -> None:
    known = {f.name: f for f in fields(obj)}
    for key, value in table.items():
        if key not in known or isinstance(getattr(obj, key), _SECTIONS):
            raise B24Error("config_invalid", f"unknown setting {where}{key}")
        current = getattr(obj, key)
        try:
            if key in _DURATIONS:
                value = parse_duration(value) if isinstance(value, str) else int(value)
            elif isinstance(current, bool):
                if not isinstance(value, bool):
                    raise ValueError("expected true or false")
            elif isinstance(current, int):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError("expected a whole number")
            elif isinstance(current, str):
                if not isinstance(value, str):
                    raise ValueError("expected a string")
            elif isinstance(current, list):
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ValueError("expected a list of strings")
        except ValueError as exc:
            raise B24Error("config_invalid", f"setting {where}{key}: {exc}") from None
        setattr(obj, key, value)


def _store_location(db: str):
    """The SQLite file Path, or a store.url.StoreURL (imported only for a URL: start-up time)."""
    if str(db)[:11].lower().startswith(("postgresql:", "postgres:")):
        from .store.url import location

        return location(db)
    return db if isinstance(db, Path) else Path(db)


def load_settings(config_path: str | None, db_path: str) -> Settings:
    """Read the config; a path given explicitly must exist, the default one is optional."""
    settings = Settings(db_path=_store_location(db_path))
    explicit = config_path is not None
    path = Path(config_path) if explicit else Path("b24recover.toml")
    if not path.exists():
        if explicit:
            raise B24Error("config_invalid", f"config file {path} does not exist")
        return settings
    settings.config_file = path
    import tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise B24Error("config_invalid", f"{path}: {exc}") from None
    sections = {"tokens": settings.tokens, "policy": settings.policy, "mail": settings.mail, "sms": settings.sms,
                "accounts": settings.accounts, "audit": settings.audit, "portal": settings.portal}
    top = {}
    for key, value in data.items():
        if key in sections:
            if not isinstance(value, dict):
                raise B24Error("config_invalid", f"[{key}] must be a table")
            section = dict(value)
            if key == "policy" and "CHECKWORD_TIMEOUT" in section:
                # Bitrix's name for the link lifetime, in minutes.
                settings.tokens.link_ttl = int(section.pop("CHECKWORD_TIMEOUT")) * 60
            if "explicit" in section:
                raise B24Error("config_invalid", f"unknown setting [{key}] explicit")
            _fill(sections[key], section, f"[{key}] ")
            if key == "policy":
                settings.policy.explicit = frozenset(section)
        elif key == "hashing":
            rounds = dict(value).get("bcrypt_rounds", settings.bcrypt_rounds)
            if not isinstance(rounds, int) or not 4 <= rounds <= 31:
                raise B24Error("config_invalid", "[hashing] bcrypt_rounds must be a whole number from 4 to 31")
            settings.bcrypt_rounds = rounds
        elif key in ("db_path", "bcrypt_rounds"):
            raise B24Error("config_invalid", f"unknown setting {key}" + (" (it belongs in [hashing])" if key == "bcrypt_rounds" else ""))
        else:
            top[key] = value
    _fill(settings, top, "")
    try:
        settings.tokens.link_template.format(portal_url="", lang="", control_string="", login="")
    except (KeyError, IndexError, ValueError) as exc:
        raise B24Error("config_invalid", f"[tokens] link_template: unknown or bad placeholder {exc}; "
                       "use {portal_url}, {lang}, {control_string} and {login}") from None
    if "{control_string}" not in settings.tokens.link_template:
        raise B24Error("config_invalid", "[tokens] link_template must contain {control_string}")
    if settings.default_lang not in LANGUAGES:
        raise B24Error("config_invalid", f"default_lang must be one of {', '.join(LANGUAGES)}")
    if settings.mail.transport not in ("outbox", "smtp"):
        raise B24Error("config_invalid", "[mail] transport must be 'outbox' or 'smtp'")
    if settings.mail.smtp_security not in ("none", "starttls", "tls"):
        raise B24Error("config_invalid", "[mail] smtp_security must be 'none', 'starttls' or 'tls'")
    if settings.sms.transport not in ("outbox", "command", "http"):
        raise B24Error("config_invalid", "[sms] transport must be 'outbox', 'command' or 'http'")
    if settings.portal.charset not in ("utf-8", "windows-1251"):
        raise B24Error("config_invalid", "[portal] charset must be 'utf-8' or 'windows-1251'")
    return settings


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
