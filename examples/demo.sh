#!/usr/bin/env bash
# `make demo`: the main job end to end on the embedded defaults, in ./demo-run.
# Each command is shown before its output, the way you would type it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
export PATH="$ROOT/.venv/bin:$PATH"
rm -rf demo-run && mkdir -p demo-run
cp examples/demo.toml demo-run/b24recover.toml   # found as ./b24recover.toml: no --config needed
cd demo-run
export B24RECOVER_DB="$PWD/portal.db" NO_COLOR=1 PAGER=

if [ -t 1 ]; then bold=$'\033[1m' dim=$'\033[2m' off=$'\033[0m'; else bold='' dim='' off=''; fi
step() { printf '\n%s== %s ==%s\n' "$bold" "$*" "$off"; }
say() { printf '%s# %s%s\n' "$dim" "$*" "$off"; }
# The command line as you would type it: arguments with spaces or quotes in double quotes.
shown() {
    local out="" a
    for a in "$@"; do
        if [[ $a =~ ^[A-Za-z0-9_./:@=+,-]+$ ]]; then out+=" $a"; else out+=" \"${a//\"/\\\"}\""; fi
    done
    printf '%s' "${out# }"
}
# Show the command, then run it; the demo stops if it fails.
run() { printf '%s$ %s%s\n' "$bold" "$(shown "$@")" "$off"; "$@"; }
# Like run, with secrets on stdin that the listing shows only as variable names.
run_with() { local pipe=$1; shift; printf '%s$ %s | %s%s\n' "$bold" "$pipe" "$(shown "$@")" "$off"; "$@"; }
# A command that must fail with exit code $1 (the demo stops if it does not).
run_failing() {
    local want=$1 shown=$2; shift 2
    printf '%s$ %s | %s%s\n' "$bold" "$shown" "$(shown "$@")" "$off"
    local got=0; "$@" || got=$?
    [ "$got" = "$want" ] || { echo "expected exit $want, got $got" >&2; exit 1; }
    printf '%s(exit %s, as expected)%s\n' "$dim" "$got" "$off"
}
newest_mail() { ls -t portal.db.outbox/mail/new/* | head -1; }
mail_count() { ls portal.db.outbox/mail/new/ 2>/dev/null | wc -l; }
# `token request` answers first and delivers right after, in a process of its own (so its answer
# takes the same time whatever happened): wait until the message has landed.
await_mail() {
    local want=$1 i
    for i in $(seq 100); do [ "$(mail_count)" -ge "$want" ] && return 0; sleep 0.1; done
    echo "no message arrived; see: b24recover outbox list" >&2; exit 1
}
checkword() { grep -o 'USER_CHECKWORD=[0-9a-z]*' "$1" | head -1 | cut -d= -f2; }
# A message as a mail program shows it: decoded headers and text, not raw MIME.
show_mail() {
    "$ROOT/.venv/bin/python" - "$1" <<'PY'
import sys
from email import policy
from email.parser import BytesParser

msg = BytesParser(policy=policy.default).parse(open(sys.argv[1], "rb"))
for name in ("From", "To", "Subject"):
    print(f"{name}: {msg[name]}")
body = msg.get_body(preferencelist=("plain",))
print()
print(body.get_content().strip() if body else "")
PY
}

step "Create the store"
run b24recover init

step "Import accounts"
run b24recover user import ../examples/users.csv

step "Forgotten login"
say "by email, in any letter case"
run b24recover lookup ANNA.IVANOVA@example.ru
say "by a phone number written the local Russian way"
run b24recover lookup "8 (912) 345-67-89"
say "by login"
run b24recover lookup giulia.rossi
say "by name, in Cyrillic"
run b24recover lookup Петров --by name

step "A social-network-only account"
run b24recover user show vk_48151623

step "Forgot password by email: the portal asks, the message lands in the Maildir"
before=$(mail_count)
run b24recover token request anna.ivanova@example.ru
await_mail $((before + 1))
first=$(newest_mail)
say "the message, decoded ($first)"
show_mail "$first"
old=$(checkword "$first")

step "A second request two seconds later: only the newest link works"
sleep 2
before=$(mail_count)
run b24recover token request anna.ivanova@example.ru
await_mail $((before + 1))
new=$(checkword "$(newest_mail)")
say "trying the first link again"
run_failing 6 'printf "%s\n%s\n" "$OLD_LINK" "$PASSWORD"' b24recover redeem anna.ivanova --control-string-stdin --password-stdin \
    < <(printf '%s\nDemo passphrase number one\n' "$old")

step "Redeem the newest link and set a new password"
run_with 'printf "%s\n%s\n" "$NEW_LINK" "$PASSWORD"' b24recover redeem anna.ivanova --control-string-stdin --password-stdin \
    < <(printf '%s\nDemo passphrase number one\n' "$new")
say "the password-changed notice"
show_mail "$(newest_mail)"

step "Social-only account: diagnose, link an email, set the first password, diagnose again"
run b24recover diagnose vk_48151623
run b24recover link vk_48151623 --email dmitry.orlov@example.ru
link_cw=$(checkword "$(newest_mail)")
run_with 'printf "%s\n%s\n" "$LINK" "$PASSWORD"' b24recover redeem vk_48151623 --control-string-stdin --password-stdin \
    < <(printf '%s\nIvan sets a first passphrase\n' "$link_cw")
run b24recover diagnose vk_48151623

step "Messages sent"
run b24recover outbox list

step "Where every setting came from"
run b24recover config show
printf '\nDemo done: store and Maildir are in demo-run/.\n'
