#!/usr/bin/env bash
# `make demo`: the main job end to end on the embedded defaults, in ./demo-run.
set -euo pipefail
cd "$(dirname "$0")/.."
B24="$PWD/.venv/bin/b24recover"
rm -rf demo-run && mkdir -p demo-run
cp examples/demo.toml demo-run/b24recover.toml
cd demo-run
export B24RECOVER_DB="$PWD/portal.db"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
newest_mail() { ls -t portal.db.outbox/mail/new/* | head -1; }
checkword() { grep -o 'USER_CHECKWORD=[0-9a-z]*' "$1" | head -1 | cut -d= -f2; }

step "Create the store"
$B24 init

step "Import accounts (examples/users.csv)"
$B24 user import ../examples/users.csv

step "Forgotten login: look up by email, by a phone written the local way, by login, by name"
$B24 lookup ANNA.IVANOVA@example.ru
$B24 lookup "8 (912) 345-67-89"
$B24 lookup giulia.rossi
$B24 lookup Петров --by name

step "A social-only account"
$B24 user show vk_48151623

step "Forgot password by email: the portal asks, the message lands in the Maildir"
$B24 token request anna.ivanova@example.ru
first=$(newest_mail)
sed -n '1,40p' "$first"
old=$(checkword "$first")

step "A second request two seconds later: only the newest link works"
sleep 2
$B24 token request anna.ivanova@example.ru
new=$(checkword "$(newest_mail)")
printf 'Trying the first link again:\n'
printf '%s\nDemo passphrase number one\n' "$old" | $B24 redeem anna.ivanova --control-string-stdin --password-stdin || echo "(exit $?, as expected)"

step "Redeem the newest link and set a new password"
printf '%s\nDemo passphrase number one\n' "$new" | $B24 redeem anna.ivanova --control-string-stdin --password-stdin
step "The password-changed notice"
sed -n '/^Subject:/p;/^$/,$p' "$(newest_mail)" | head -20

step "Social-only account: diagnose, link an email, set the first password, diagnose again"
$B24 diagnose vk_48151623
$B24 link vk_48151623 --email dmitry.orlov@example.ru
link_cw=$(checkword "$(newest_mail)")
printf '%s\nIvan sets a first passphrase\n' "$link_cw" | $B24 redeem vk_48151623 --control-string-stdin --password-stdin
$B24 diagnose vk_48151623

step "Messages sent"
$B24 outbox list
printf '\nDemo done: store and Maildir are in demo-run/.\n'
