#!/usr/bin/env bash
# Install the package built by dist/debian/build.sh on this machine, check
# what it installed, then purge it and check that nothing is left: the
# service user, its cache, the conffile, the binary, the man page.
#   dist/debian/check.sh target/debian/relaygate_VERSION_ARCH.deb
# Needs root (dpkg -i) and man-db; runs `systemd-analyze verify` where the
# machine has it. Refuses to run where a relaygate package is installed
# already (it would be purged).
set -euo pipefail
deb=${1:?usage: dist/debian/check.sh PACKAGE.deb}
fail() { echo "package check FAILED: $*" >&2; exit 1; }
step() { echo "--- $*"; }

dpkg -s relaygate >/dev/null 2>&1 && fail "a relaygate package is installed already; not touching it"

step "dpkg -i $deb"
dpkg -i "$deb"
command -v relaygate | grep -qx /usr/bin/relaygate || fail "relaygate is not /usr/bin/relaygate"
step "the system user and its cache"
getent passwd relaygate >/dev/null || fail "no relaygate user"
[ "$(stat -c %U:%G /var/cache/relaygate)" = relaygate:relaygate ] || fail "/var/cache/relaygate is not the service user's"
grep -qx /etc/relaygate/relaygate.toml /var/lib/dpkg/info/relaygate.conffiles || fail "the config is not a conffile"

step "relaygate check --config /etc/relaygate/relaygate.toml (as the service user)"
runuser -u relaygate -- relaygate check --config /etc/relaygate/relaygate.toml | tee /tmp/relaygate-check.txt
grep -q "restricted relay ON" /tmp/relaygate-check.txt || fail "the packaged config does not restrict relaying"
relaygate check > /tmp/relaygate-embedded.txt
diff <(tail -n +2 /tmp/relaygate-check.txt) <(tail -n +2 /tmp/relaygate-embedded.txt) \
    || fail "the packaged config differs from the embedded default"

step "man relaygate"
if [ -f /usr/share/man/man1/relaygate.1.gz ]; then
    MANPAGER=cat MANWIDTH=80 man relaygate > /tmp/relaygate-man.txt
else
    # This machine's dpkg excludes man pages (a container image's path-exclude):
    # read the page from the package itself.
    extracted=$(mktemp -d)
    dpkg-deb -x "$deb" "$extracted"
    MANPAGER=cat MANWIDTH=80 man -l "$extracted/usr/share/man/man1/relaygate.1.gz" > /tmp/relaygate-man.txt
    rm -rf "$extracted"
fi
grep -q "SMTP filtering proxy" /tmp/relaygate-man.txt || fail "the man page does not describe relaygate"
grep -q "policy" /tmp/relaygate-man.txt || fail "the man page lists no subcommands"
head -12 /tmp/relaygate-man.txt
[ -s /usr/share/bash-completion/completions/relaygate ] || fail "no bash completions"

step "systemd unit"
grep -q '^ExecStart=/usr/bin/relaygate --config /etc/relaygate/relaygate.toml$' /lib/systemd/system/relaygate.service \
    || fail "the unit does not start the packaged binary"
if command -v systemd-analyze >/dev/null; then
    # Checks the unit's syntax and that the binaries it names exist.
    systemd-analyze verify /lib/systemd/system/relaygate.service
    echo "systemd-analyze verify: OK"
else
    echo "systemd-analyze not available: unit not verified"
fi

step "dpkg --purge relaygate"
dpkg --purge relaygate
for path in /usr/bin/relaygate /etc/relaygate /var/cache/relaygate /lib/systemd/system/relaygate.service \
    /usr/share/man/man1/relaygate.1.gz; do
    [ ! -e "$path" ] || fail "$path is left after purge"
done
! getent passwd relaygate >/dev/null || fail "the relaygate user is left after purge"
echo "package check: OK"
