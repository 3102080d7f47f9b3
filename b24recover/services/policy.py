"""Password policy: a chain of small validators, each with its own code and message.

Defaults (SPEC §3, NIST SP 800-63B): at least 12 characters, up to 256 allowed, no forced
character classes, common and account-derived passwords refused, the last 5 remembered.

Bitrix group-policy rules can be set by their Bitrix names in the [policy] table, and a Bitrix
preset chosen with `preset`. The preset values are those of the main module
(Bitrix\\Main\\Authentication\\Policy\\RulesCollection::createByPreset, main 21+):

    preset   PASSWORD_LENGTH  UPPERCASE  LOWERCASE  DIGITS  PUNCTUATION  PASSWORD_UNIQUE_COUNT
    low      6                no         no         no      no           0
    middle   8                yes        yes        yes     no           1
    high     10               yes        yes        yes     yes          3

("medium" is accepted for "middle".) Keys written explicitly in [policy] win over the preset;
without a preset the NIST defaults above apply. Two deliberate differences from Bitrix:
the common-password list is always checked (Bitrix turns PASSWORD_CHECK_WEAK on from
"middle"), and the character classes count letters and digits of any script, not only A-Z/0-9,
so a Cyrillic password can meet them; punctuation is Bitrix's set (all ASCII punctuation) or
any other Unicode punctuation or symbol. The presets' CHECKWORD_TIMEOUT and session rules are
not applied: the link lifetime is [tokens] link_ttl (or CHECKWORD_TIMEOUT set by name).

Characters nobody can type into a sign-in form (control characters such as NUL, ESC or DEL)
are refused as `not_text`; everything else, any script, emoji and spaces included, is allowed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import string
import unicodedata
from dataclasses import dataclass
from typing import Sequence

from ..config import PolicySettings
from ..errors import B24Error

BITRIX_KEYS = ("PASSWORD_LENGTH", "PASSWORD_UPPERCASE", "PASSWORD_LOWERCASE", "PASSWORD_DIGITS",
               "PASSWORD_PUNCTUATION", "PASSWORD_UNIQUE_COUNT")

PRESETS: dict[str, dict[str, int | bool]] = {
    "low": {"PASSWORD_LENGTH": 6, "PASSWORD_UPPERCASE": False, "PASSWORD_LOWERCASE": False,
            "PASSWORD_DIGITS": False, "PASSWORD_PUNCTUATION": False, "PASSWORD_UNIQUE_COUNT": 0},
    "middle": {"PASSWORD_LENGTH": 8, "PASSWORD_UPPERCASE": True, "PASSWORD_LOWERCASE": True,
               "PASSWORD_DIGITS": True, "PASSWORD_PUNCTUATION": False, "PASSWORD_UNIQUE_COUNT": 1},
    "high": {"PASSWORD_LENGTH": 10, "PASSWORD_UPPERCASE": True, "PASSWORD_LOWERCASE": True,
             "PASSWORD_DIGITS": True, "PASSWORD_PUNCTUATION": True, "PASSWORD_UNIQUE_COUNT": 3},
}
_ALIASES = {"medium": "middle"}

MIN_MAX_LENGTH = 256  # SPEC §5: any password up to at least 256 characters is accepted
MAX_MAX_LENGTH = 4096  # the longest secret line the CLI reads
ZXCVBN_LIMIT = 72  # zxcvbn is quadratic-ish: 256 characters take ~1 s, 72 take ~50 ms
MIN_PART = 3  # account details shorter than this are too short to compare meaningfully

_LABELS = ("very weak", "weak", "fair", "good", "strong")


@dataclass
class Violation:
    code: str
    message: str


# ---- the effective policy ---------------------------------------------------------------------

def _preset_name(policy: PolicySettings) -> str:
    name = (policy.preset or "").strip().lower()
    name = _ALIASES.get(name, name)
    if name and name not in PRESETS:
        raise B24Error("config_invalid", f"[policy] preset must be one of low, middle, high (got {policy.preset!r})")
    return name


def _explicit_keys(policy: PolicySettings) -> set[str]:
    """Keys the config file wrote: those the loader recorded in `policy.explicit` (if it does),
    and in any case every key whose value differs from the default, since only writing it
    can have changed it."""
    defaults = PolicySettings()
    written = {k for k in BITRIX_KEYS if getattr(policy, k) != getattr(defaults, k)}
    return written | (set(getattr(policy, "explicit", None) or ()) & set(BITRIX_KEYS))


def _validate(policy: PolicySettings) -> None:
    if not MIN_MAX_LENGTH <= policy.max_length <= MAX_MAX_LENGTH:
        raise B24Error("config_invalid",
                       f"[policy] max_length must be from {MIN_MAX_LENGTH} to {MAX_MAX_LENGTH}")
    if not 1 <= policy.PASSWORD_LENGTH <= policy.max_length:
        raise B24Error("config_invalid", f"[policy] PASSWORD_LENGTH must be from 1 to {policy.max_length}")
    if policy.PASSWORD_UNIQUE_COUNT < 0:
        raise B24Error("config_invalid", "[policy] PASSWORD_UNIQUE_COUNT must not be negative")


def effective(policy: PolicySettings) -> PolicySettings:
    """The policy in force: the preset's values, overridden by keys written explicitly."""
    preset = _preset_name(policy)
    values = {}
    if preset:
        keep = _explicit_keys(policy)
        values = {k: v for k, v in PRESETS[preset].items() if k not in keep}
    result = dataclasses.replace(policy, preset=preset, **values)
    # Every rule is now settled: applying effective() again changes nothing.
    result.explicit = frozenset(BITRIX_KEYS)
    _validate(result)
    return result


# ---- the validators ---------------------------------------------------------------------------

def _length(p: PolicySettings, password: str, **_) -> list[Violation]:
    if len(password) < p.PASSWORD_LENGTH:
        return [Violation("too_short", f"use at least {p.PASSWORD_LENGTH} characters")]
    if len(password) > p.max_length:
        return [Violation("too_long", f"use at most {p.max_length} characters")]
    return []


def _typable(p: PolicySettings, password: str, **_) -> list[Violation]:
    # Cc: NUL, ESC, DEL, C1 controls; Cs: lone surrogates (cannot even be stored as UTF-8).
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in password):
        return [Violation("not_text", "use only characters you can type: no control characters")]
    return []


def _is_punctuation(ch: str) -> bool:
    return ch in string.punctuation or unicodedata.category(ch)[0] in ("P", "S")


_CLASSES = (
    ("PASSWORD_UPPERCASE", str.isupper, "needs_uppercase", "add an uppercase letter"),
    ("PASSWORD_LOWERCASE", str.islower, "needs_lowercase", "add a lowercase letter"),
    ("PASSWORD_DIGITS", str.isdecimal, "needs_digit", "add a digit"),
    ("PASSWORD_PUNCTUATION", _is_punctuation, "needs_punctuation",
     "add a punctuation mark or symbol, such as ! ? . , - _ # %"),
)


def _classes(p: PolicySettings, password: str, **_) -> list[Violation]:
    return [Violation(code, message) for key, test, code, message in _CLASSES
            if getattr(p, key) and not any(test(ch) for ch in password)]


def _common(p: PolicySettings, password: str, **_) -> list[Violation]:
    from .common_passwords import is_common

    if is_common(password):
        return [Violation("common", "choose a less common password: this one is on a list of "
                                    "frequently used passwords")]
    return []


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def account_parts(login: str = "", name: str = "", last_name: str = "",
                  email: str | None = None) -> list[tuple[str, str]]:
    """(what, folded text) for every account detail worth comparing: each value whole and
    each of its words, 3+ characters long."""
    local = (email or "").rpartition("@")[0] if "@" in (email or "") else (email or "")
    return [(what, part) for what, value in (("login", login), ("name", name), ("last name", last_name),
                                             ("email", local))
            for part in _words([value])]


def _similar(p: PolicySettings, password: str, *, login="", name="", last_name="", email=None, **_):
    folded = _fold(password)
    forms = (folded, folded[::-1])
    found = []
    for what, part in account_parts(login, name, last_name, email):
        if what in found:
            continue
        if any(part in f or (len(f) >= MIN_PART and f in part) for f in forms):
            found.append(what)
    if not found:
        return []
    return [Violation("similar_to_account", f"keep your {_join(found)} out of the password")]


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def history_digest(key: bytes, password: str) -> str:
    """How a previous password is remembered: HMAC-SHA256 under the key kept outside the
    database, so the history cannot be attacked offline without the key."""
    return hmac.new(key, password.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def _reused(p: PolicySettings, password: str, *, history: Sequence[str] = (), key: bytes | None = None, **_):
    recent = list(history)[: p.PASSWORD_UNIQUE_COUNT]
    if not recent:
        return []
    if key is None:
        raise ValueError("checking the password history needs the secret key")
    digest = history_digest(key, password)
    # Compare with every entry (no early exit) so the time does not tell which one matched.
    matched = False
    for old in recent:
        matched |= hmac.compare_digest(digest, old)
    if matched:
        return [Violation("reused", f"choose a password different from your last {p.PASSWORD_UNIQUE_COUNT}")]
    return []


# ---- repetitive and sequential passwords (NIST SP 800-63B 3.1.1.2) ------------------------------
#
# Each looks at the whole password (NFKC, case folded): a pattern inside a longer passphrase
# ("aaah, what a day") is no reason to refuse it; a password that IS the pattern is.

MIN_DISTINCT = 3  # fewer distinct runs than this: "aaaaaaaaaaaa", 12 spaces, "aaaaaabbbbbb"


def _repetitive(p: PolicySettings, password: str, **_) -> list[Violation]:
    folded = _fold(password)
    runs = sum(1 for i, ch in enumerate(folded) if i == 0 or ch != folded[i - 1])
    if folded and runs < MIN_DISTINCT:
        return [Violation("repetitive", "do not repeat one character over and over")]
    return []


def _step(a: str, b: str) -> int | None:
    """+1 or -1 when b follows a in a well-known order (code points; digits on a ring, as on a
    keyboard row where 0 follows 9), else None."""
    if a.isdecimal() and b.isdecimal():
        diff = (int(b) - int(a)) % 10
        return 1 if diff == 1 else -1 if diff == 9 else None
    diff = ord(b) - ord(a)
    return diff if diff in (1, -1) else None


def _sequential(p: PolicySettings, password: str, **_) -> list[Violation]:
    """The whole password is one or more runs of consecutive characters, each at least 3 long:
    "123456789012", "abcdefghijkl", "1234abcd", "zyxwvu"."""
    folded = _fold(password)
    if len(folded) < MIN_DISTINCT:
        return []
    start, direction = 0, None
    for i in range(1, len(folded) + 1):
        step = _step(folded[i - 1], folded[i]) if i < len(folded) else None
        if step is not None and direction in (None, step):
            direction = step
            continue
        if i - start < MIN_DISTINCT:  # a run too short to be a sequence: not a sequential password
            return []
        start, direction = i, None
    return [Violation("sequential", "do not use a run of consecutive characters such as 12345 or abcde")]


def _period(text: str) -> int:
    """The length of the shortest unit that, repeated, makes up text (prefix function)."""
    border = [0] * len(text)
    for i in range(1, len(text)):
        k = border[i - 1]
        while k and text[i] != text[k]:
            k = border[k - 1]
        border[i] = k + (text[i] == text[k])
    return len(text) - (border[-1] if text else 0)


STRONG_UNIT = 12  # a repeated part this long (or as long as PASSWORD_LENGTH) stands on its own


def _repeated_word(p: PolicySettings, password: str, **_) -> list[Violation]:
    """A short part said at least twice to reach the length: "passwordpassword", "abcabcabcabc".
    A part that would pass the length rule alone (a long passphrase, twice) is not refused."""
    folded = _fold(password)
    unit = _period(folded)
    if 2 <= unit <= len(folded) // 2 and unit < max(STRONG_UNIT, p.PASSWORD_LENGTH):
        return [Violation("repeated_word", "do not repeat the same word or part to make a password longer")]
    return []


def _repeats_login(p: PolicySettings, password: str, *, login: str = "", **_) -> list[Violation]:
    """The login said again and again ("h1h1h1h1h1h1" for h1), with little else: also for a
    login too short for similar_to_account."""
    key = _fold(login or "").strip()
    folded = _fold(password)
    if not key or folded.count(key) < 2:
        return []
    if len(folded.replace(key, "")) < MIN_DISTINCT:
        return [Violation("repeats_login", "do not build the password by repeating your login")]
    return []


VALIDATORS = (_length, _typable, _classes, _common, _repetitive, _sequential, _repeated_word, _repeats_login,
              _similar, _reused)


def violations(policy: PolicySettings, password: str, *, login: str = "", name: str = "", last_name: str = "",
               email: str | None = None, history: Sequence[str] = (), key: bytes | None = None) -> list[Violation]:
    """Every rule the password breaks, in a stable order; an empty list means it is accepted."""
    p = effective(policy)
    found: list[Violation] = []
    for validator in VALIDATORS:
        found += validator(p, password, login=login, name=name, last_name=last_name, email=email,
                           history=history, key=key)
    return found


def enforce(policy: PolicySettings, password: str, **account) -> None:
    """Raise password_policy listing every violation; the same check for every command."""
    found = violations(policy, password, **account)
    if found:
        raise B24Error(
            "password_policy",
            "the password does not meet the policy: " + "; ".join(v.message for v in found),
            violations=[dataclasses.asdict(v) for v in found],
        )


# ---- strength and description -----------------------------------------------------------------

def _words(values: Sequence[str]) -> list[str]:
    """Each value whole and each of its words: zxcvbn matches user inputs only as whole tokens."""
    found = []
    for value in values:
        folded = _fold(value or "")
        found += [folded.strip(), *"".join(ch if ch.isalnum() else " " for ch in folded).split()]
    return [w for w in dict.fromkeys(found) if len(w) >= MIN_PART]


def strength(password: str, user_inputs: Sequence[str] = ()) -> dict:
    """zxcvbn's estimate and advice. Only the first 72 characters are analysed (zxcvbn slows
    down sharply beyond that); the rest can only add to the guesses needed."""
    import math

    from zxcvbn import zxcvbn
    from zxcvbn.feedback import get_feedback

    analysed = password[:ZXCVBN_LIMIT]
    if not analysed:  # zxcvbn 4.5 fails on an empty string
        result = {"score": 0, "guesses": 1, "feedback": get_feedback(0, []),
                  "crack_times_display": {"offline_slow_hashing_1e4_per_second": "less than a second"}}
    else:
        result = zxcvbn(analysed, user_inputs=_words(user_inputs), max_length=ZXCVBN_LIMIT)
    feedback = result["feedback"]
    return {
        "score": result["score"],
        "label": _LABELS[result["score"]],
        # The scenario that matters for a stolen store: offline guessing against slow hashes.
        "crack_time": result["crack_times_display"]["offline_slow_hashing_1e4_per_second"],
        "guesses_log10": round(math.log10(max(float(result["guesses"]), 1.0)), 2),
        "warning": feedback.get("warning") or "",
        "suggestions": list(feedback.get("suggestions") or []),
        "analysed_length": len(analysed),
    }


def _rule(code, rule, bitrix, value, text) -> dict:
    return {"rule": rule, "code": code, "bitrix_name": bitrix, "value": value, "text": text}


def _required(flag: bool) -> str:
    return "required" if flag else "not required"


def describe(policy: PolicySettings) -> dict:
    """Every rule in force, its value and its Bitrix name (for `policy show`)."""
    from .common_passwords import count

    p = effective(policy)
    unique = p.PASSWORD_UNIQUE_COUNT
    rules = [
        _rule("too_short", "min_length", "PASSWORD_LENGTH", p.PASSWORD_LENGTH,
              f"at least {p.PASSWORD_LENGTH} characters"),
        _rule("too_long", "max_length", None, p.max_length, f"at most {p.max_length} characters"),
        _rule("needs_uppercase", "uppercase", "PASSWORD_UPPERCASE", p.PASSWORD_UPPERCASE,
              _required(p.PASSWORD_UPPERCASE)),
        _rule("needs_lowercase", "lowercase", "PASSWORD_LOWERCASE", p.PASSWORD_LOWERCASE,
              _required(p.PASSWORD_LOWERCASE)),
        _rule("needs_digit", "digit", "PASSWORD_DIGITS", p.PASSWORD_DIGITS, _required(p.PASSWORD_DIGITS)),
        _rule("needs_punctuation", "punctuation", "PASSWORD_PUNCTUATION", p.PASSWORD_PUNCTUATION,
              _required(p.PASSWORD_PUNCTUATION)),
        _rule("common", "common_passwords", "PASSWORD_CHECK_WEAK", True,
              f"refused ({count()} known, any letter case)"),
        _rule("similar_to_account", "account_details", None, True,
              "refused in the password, also reversed (login, name, last name, email)"),
        _rule("repetitive", "repetitive", None, True, "refused: one character repeated (aaaaaaaaaaaa)"),
        _rule("sequential", "sequential", None, True, "refused: consecutive characters (123456789012, abcdefghijkl)"),
        _rule("repeated_word", "repeated_word", None, True, "refused: a short part said twice or more (passwordpassword)"),
        _rule("repeats_login", "repeats_login", None, True, "refused: the login repeated (h1h1h1h1h1h1 for h1)"),
        _rule("reused", "history", "PASSWORD_UNIQUE_COUNT", unique,
              f"the last {unique} refused" if unique else "not checked"),
        _rule("not_text", "control_characters", None, True, "refused (NUL, ESC, DEL and the like)"),
    ]
    return {
        "preset": p.preset or None,
        "bitrix": {k: getattr(p, k) for k in BITRIX_KEYS},
        "max_length": p.max_length,
        "rules": rules,
        "presets": {name: dict(values) for name, values in PRESETS.items()},
    }


# ---- `policy check` ---------------------------------------------------------------------------

def check(ctx, password: str, login: str | None = None) -> dict:
    """Every violation and the strength estimate; with a login, that account's details and
    password history take part. Never raises for a bad password: the caller decides."""
    account: dict = {}
    if login is not None:
        account = _account_details(ctx, login)
    found = violations(ctx.settings.policy, password, **account)
    inputs = [account.get(k) or "" for k in ("login", "name", "last_name", "email")]
    result = {"ok": not found, "violations": [dataclasses.asdict(v) for v in found],
              "strength": strength(password, inputs)}
    if login is not None:
        result["login"] = account["login"]
    return result


def _account_details(ctx, login: str) -> dict:
    from ..store import users as user_store
    from .accounts import get_user

    row = get_user(ctx.store.conn, login)
    details = {"login": row["login"], "name": row["name"] or "", "last_name": row["last_name"] or "",
               "email": row["email"]}
    count = effective(ctx.settings.policy).PASSWORD_UNIQUE_COUNT
    history = user_store.history(ctx.store.conn, row["id"], count) if count else []
    if history:
        from ..store.keyfile import load_key

        details.update(history=history, key=load_key(ctx.settings.key_path))
    return details
