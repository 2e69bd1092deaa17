#!/usr/bin/env bash
# Build the Debian package: target/debian/relaygate_VERSION_ARCH.deb.
#   dist/debian/build.sh            # builds the release binary first
#   BINARY=path dist/debian/build.sh   # packages that binary instead
# What goes in: the binary (/usr/bin), the systemd unit, the config as a
# conffile (/etc/relaygate/relaygate.toml: the embedded default written out),
# the man page and shell completions generated from the binary's own CLI
# definition, and the docs. The maintainer scripts beside this file add the
# `relaygate` system user and /var/cache/relaygate, and remove both on purge.
# Needs: dpkg-deb, gzip (Debian's own tools).
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ -z "${BINARY:-}" ]; then
    cargo build --release --locked --quiet -p relaygate --bin relaygate
    BINARY=target/release/relaygate
fi
version=$("$BINARY" --version | cut -d" " -f2)
arch=$(dpkg --print-architecture)
out=target/debian
stage=$out/relaygate_${version}_${arch}
rm -rf "$stage"
mkdir -p "$stage/DEBIAN" "$stage/usr/bin" "$stage/etc/relaygate" "$stage/lib/systemd/system" \
    "$stage/usr/share/man/man1" "$stage/usr/share/doc/relaygate" \
    "$stage/usr/share/bash-completion/completions" "$stage/usr/share/zsh/vendor-completions" \
    "$stage/usr/share/fish/vendor_completions.d"

install -m 0755 "$BINARY" "$stage/usr/bin/relaygate"
strip --strip-unneeded "$stage/usr/bin/relaygate" 2>/dev/null || true
install -m 0644 dist/debian/relaygate.toml "$stage/etc/relaygate/relaygate.toml"
# The unit as shipped in dist/, with the packaged binary's path.
sed 's#/usr/local/bin/relaygate#/usr/bin/relaygate#g; s#^\# Install the binary as .*#\# Installed by the Debian package.#' \
    dist/relaygate.service > "$stage/lib/systemd/system/relaygate.service"
chmod 0644 "$stage/lib/systemd/system/relaygate.service"
"$BINARY" generate man | gzip -9n > "$stage/usr/share/man/man1/relaygate.1.gz"
"$BINARY" generate completions bash > "$stage/usr/share/bash-completion/completions/relaygate"
"$BINARY" generate completions zsh > "$stage/usr/share/zsh/vendor-completions/_relaygate"
"$BINARY" generate completions fish > "$stage/usr/share/fish/vendor_completions.d/relaygate.fish"
install -m 0644 README.md ARCHITECTURE.md dist/relaygate.example.toml dist/relaygate.mailhost.toml \
    "$stage/usr/share/doc/relaygate/"
cp -r docs "$stage/usr/share/doc/relaygate/docs"
cat > "$stage/usr/share/doc/relaygate/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: relaygate
Files: *
Copyright: relaygate contributors
License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
COPYRIGHT
find "$stage/usr/share" -type f -exec chmod 0644 {} +

for script in postinst prerm postrm; do
    install -m 0755 "dist/debian/$script" "$stage/DEBIAN/$script"
done
echo /etc/relaygate/relaygate.toml > "$stage/DEBIAN/conffiles"
installed_kb=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CONTROL
Package: relaygate
Version: $version
Architecture: $arch
Maintainer: relaygate maintainers <relaygate@localhost>
Installed-Size: $installed_kb
Depends: libc6 (>= 2.34), libgcc-s1, adduser
Section: mail
Priority: optional
Description: SMTP filtering proxy with WebAssembly relay and AUTH policies
 relaygate sits in front of an existing mail server, asks a policy module at
 each SMTP stage (connect, HELO, AUTH, MAIL, RCPT, DATA) and forwards only what
 the policy accepts. The built-in policy reproduces Apple Mail Service's
 Restricted SMTP Relay and SMTP Authentication; site policies are WebAssembly
 components, hot-swapped without a restart.
CONTROL
dpkg-deb --build --root-owner-group "$stage" "$out/" >/dev/null
echo "$out/relaygate_${version}_${arch}.deb"
