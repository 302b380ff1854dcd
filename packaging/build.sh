#!/usr/bin/env bash
# Build allocwatch's OS packages: target/package/allocwatch_<version>-<rev>_<arch>.deb and
# target/package/allocwatch-<version>-<rev>.<arch>.rpm, from a release build of this tree.
#   bash packaging/build.sh [--revision N]
# Installs the packagers (cargo-deb, cargo-generate-rpm, pinned) when missing, then stages what
# is generated under target/package/: man pages and shell completions (from the command line's
# own definitions: `allocwatch generate`), the systemd unit of deploy/systemd with the packaged
# binary's path, and the maintainer scripts with packaging/account.sh inlined.
set -euo pipefail
cd "$(dirname "$0")/.."
revision=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --revision) revision=${2:?--revision needs a number}; shift 2 ;;
    *) echo "usage: packaging/build.sh [--revision N]" >&2; exit 2 ;;
  esac
done
CARGO_DEB_VERSION=3.8.0
CARGO_GENERATE_RPM_VERSION=0.21.1

have() { cargo "$1" --version 2>/dev/null | grep -q "$2"; }
# Tools that run for seconds: built at opt-level 1, without LTO (minutes less to compile).
quick_install() {
  CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_DEBUG=false \
    cargo install --locked "$@"
}
have deb "$CARGO_DEB_VERSION" || quick_install cargo-deb --version "$CARGO_DEB_VERSION"
have generate-rpm "$CARGO_GENERATE_RPM_VERSION" || quick_install cargo-generate-rpm --version "$CARGO_GENERATE_RPM_VERSION"

cargo build --release --locked --bin allocwatch
bin=target/release/allocwatch
out=target/package
rm -rf "$out/man" "$out/completions" "$out/debian" "$out/rpm"
mkdir -p "$out/debian" "$out/rpm"
rm -f "$out/allocwatch"

# The packaged binary: debug sections stripped, symbols kept (a panic's backtrace still names
# its functions). Both packages carry this same file.
objcopy --strip-debug "$bin" "$out/allocwatch"

"$bin" generate man --out "$out/man"
gzip -9n "$out"/man/*.1
"$bin" generate completions --out "$out/completions"

# The one unit file, deploy/systemd/allocwatch.service, with the path packages install to.
sed 's#/usr/local/bin/allocwatch#/usr/bin/allocwatch#g' deploy/systemd/allocwatch.service >"$out/allocwatch.service"
grep -q '^ExecStart=/usr/bin/allocwatch ' "$out/allocwatch.service" || { echo "build.sh: the unit's ExecStart was not rewritten" >&2; exit 1; }

# Maintainer scripts: packaging/account.sh inlined at #ACCOUNT# (POSIX sh, no include at install).
inline() { awk -v f=packaging/account.sh '/^#ACCOUNT#$/ { while ((getline l < f) > 0) print l; next } { print }' "$1" >"$2"; }
inline packaging/debian/postinst.in "$out/debian/postinst"
cp packaging/debian/prerm packaging/debian/postrm "$out/debian/"
chmod 0755 "$out"/debian/*
inline packaging/rpm/pre.sh.in "$out/rpm/pre.sh"
inline packaging/rpm/post.sh.in "$out/rpm/post.sh"
for s in "$out"/debian/* "$out"/rpm/*.sh packaging/rpm/*.sh; do sh -n "$s"; done

rm -f "$out"/allocwatch_*-"$revision"_*.deb "$out"/allocwatch-*-"$revision".*.rpm
cargo deb --no-build --locked --deb-revision "$revision" --output "$out/"
cargo generate-rpm --set-metadata "release = \"$revision\"" --output "$out/"
ls -1 "$out"/*.deb "$out"/*.rpm
