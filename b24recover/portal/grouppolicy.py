"""The security policy of a user's groups (b_group.SECURITY_POLICY), strictest rule wins.

Bitrix (CUser::GetGroupPolicy) starts from its defaults and lets each of the user's groups make
a rule stricter, never looser: the shortest CHECKWORD_TIMEOUT, the longest PASSWORD_LENGTH, any
group requiring a character class requires it. Group 2 ("everyone") applies to every user. A
value that is missing, empty or malformed in one group leaves the others' rules standing.
"""

from __future__ import annotations

from .phpser import PhpSerializeError, loads

EVERYONE_GROUP = 2
# rule -> how two groups' values combine into the stricter one
_STRICTEST = {
    "CHECKWORD_TIMEOUT": min,      # minutes a control string stays valid
    "PASSWORD_LENGTH": max,
    "PASSWORD_UNIQUE_COUNT": max,
    "PASSWORD_CHANGE_DAYS": min,   # 0 means never, so only positive values count
}
_FLAGS = ("PASSWORD_UPPERCASE", "PASSWORD_LOWERCASE", "PASSWORD_DIGITS", "PASSWORD_PUNCTUATION")


def parse(text: str | None, charset: str = "utf-8") -> dict:
    """One group's rules that b24recover uses, normalised (ints, bools); {} when unreadable."""
    if not text:
        return {}
    try:
        value = loads(text, charset)
    except PhpSerializeError:
        return {}
    if not isinstance(value, dict):
        return {}
    rules: dict = {}
    for key in _STRICTEST:
        number = _whole(value.get(key))
        if number is not None and number > 0:
            rules[key] = number
    for key in _FLAGS:
        if key in value:
            rules[key] = value[key] in ("Y", "y", True, 1, "1")
    return rules


def _whole(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def strictest(policies) -> dict:
    """Combine several groups' parsed rules."""
    out: dict = {}
    for rules in policies:
        for key, value in rules.items():
            if key in _STRICTEST:
                out[key] = _STRICTEST[key](out[key], value) if key in out else value
            else:
                out[key] = out.get(key, False) or value
    return out
