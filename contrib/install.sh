#!/bin/sh
# Install conntrackd: the binary, its man pages, the hardened systemd unit and,
# if absent, the default configuration; optionally a GeoIP City database.
#
#   curl -fsSL https://github.com/conntrackd/conntrackd/releases/latest/download/install.sh | sudo sh
#   sudo sh install.sh [--from DIR] [--with-geoip] [--uninstall]
#
# Every downloaded file is checked against its .sha256 before anything is
# installed; a mismatch installs nothing. Re-running upgrades the binary,
# unit and man pages and keeps the configuration.
#
# Environment:
#   BASE_URL    where the release artifacts are (default: the latest GitHub release)
#   ARCH        amd64 | arm64 (default: from uname -m)
#   WITH_GEOIP  1 = as --with-geoip
#   GEOIP_FILE  a local City database (.mmdb, or a .tar.gz holding one) to install
#   GEOIP_URL   a URL to download it from (no default host: MaxMind requires
#               an account and a license key; DB-IP City Lite works too)
# URLs are printed without credentials and query strings (license keys).
#   DESTDIR     install below this directory instead of / (staging, tests);
#               the service is then neither enabled nor started
#   NO_COLOR    set to disable colours
set -eu

BASE_URL="${BASE_URL:-https://github.com/conntrackd/conntrackd/releases/latest/download}"
WITH_GEOIP="${WITH_GEOIP:-0}"
GEOIP_FILE="${GEOIP_FILE:-}"
GEOIP_URL="${GEOIP_URL:-}"
DESTDIR="${DESTDIR:-}"
FROM=""
ACTION="install"

BIN="/usr/local/bin/conntrackd"
UNIT="/etc/systemd/system/conntrackd.service"
MANDIR="/usr/local/share/man/man1"
CONFIG="/etc/conntrackd/conntrackd.toml"
GEOIP_DB="/var/lib/conntrackd/GeoLite2-City.mmdb"

if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
    C_INFO=$(printf '\033[0;32m'); C_WARN=$(printf '\033[0;33m'); C_ERR=$(printf '\033[0;31m'); C_OFF=$(printf '\033[0m')
else
    C_INFO=""; C_WARN=""; C_ERR=""; C_OFF=""
fi

info() { printf '%s[INFO]%s %s\n' "$C_INFO" "$C_OFF" "$*"; }
warn() { printf '%s[WARN]%s %s\n' "$C_WARN" "$C_OFF" "$*" >&2; }
fail() { printf '%s[ERROR]%s %s\n' "$C_ERR" "$C_OFF" "$*" >&2; exit 1; }

usage() {
    cat <<EOF
Usage: install.sh [--from DIR] [--with-geoip] [--uninstall] [--help]
  --from DIR     install from local artifacts in DIR instead of BASE_URL
  --with-geoip   install a City database from GEOIP_FILE or GEOIP_URL
  --uninstall    remove the binary, unit and man pages (keeps config and data)
EOF
}

parse_args() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --from) [ $# -ge 2 ] || fail "--from needs a directory"; FROM="$2"; shift 2 ;;
            --from=*) FROM="${1#--from=}"; shift ;;
            --with-geoip) WITH_GEOIP=1; shift ;;
            --uninstall) ACTION="uninstall"; shift ;;
            -h|--help) usage; exit 0 ;;
            *) usage >&2; fail "unknown argument: $1" ;;
        esac
    done
}

check_root() {
    if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then
        fail "run as root (sudo sh install.sh), or set DESTDIR to stage the files"
    fi
}

detect_arch() {
    if [ -n "${ARCH:-}" ]; then
        :
    else
        case "$(uname -m)" in
            x86_64|amd64) ARCH=amd64 ;;
            aarch64|arm64) ARCH=arm64 ;;
            *) fail "unsupported architecture $(uname -m): conntrackd is released for amd64 and arm64" ;;
        esac
    fi
    case "$ARCH" in
        amd64|arm64) ;;
        *) fail "ARCH=$ARCH: expected amd64 or arm64" ;;
    esac
    info "architecture: $ARCH"
}

# True when systemd manages this machine and we install into it.
systemd_running() {
    [ -z "$DESTDIR" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1
}

# fetch NAME: copies or downloads NAME into $WORK.
fetch() {
    if [ -n "$FROM" ]; then
        [ -f "$FROM/$1" ] || fail "$FROM/$1 is missing (run 'cargo xtask dist' to make the artifacts)"
        cp "$FROM/$1" "$WORK/$1"
    else
        download "$BASE_URL/$1" "$WORK/$1"
    fi
}

download() {
    if command -v curl >/dev/null 2>&1; then
        curl -fsSL --retry 2 -o "$2" "$1" || fail "cannot download $(redact "$1")"
    elif command -v wget >/dev/null 2>&1; then
        wget -q -O "$2" "$1" || fail "cannot download $(redact "$1")"
    else
        fail "neither curl nor wget is installed"
    fi
}

# redact URL: without credentials (user:password@) and query (license keys).
redact() {
    printf '%s' "$1" | sed -e 's#//[^/@]*@#//***@#' -e 's#?.*#?***#'
}

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    else
        openssl dgst -sha256 -r "$1" | cut -d' ' -f1
    fi
}

# fetch_verified NAME: NAME and NAME.sha256 into $WORK; fails on a mismatch.
fetch_verified() {
    fetch "$1"
    fetch "$1.sha256"
    expected=$(cut -d' ' -f1 "$WORK/$1.sha256")
    actual=$(sha256_of "$WORK/$1")
    if [ "$expected" != "$actual" ]; then
        fail "checksum mismatch for $1: expected $expected, got $actual; nothing was installed"
    fi
    info "verified $1 (sha256 $actual)"
}

# put SRC DEST MODE: installs atomically (a running binary can be replaced).
put() {
    mkdir -p "$(dirname "$2")"
    cp "$1" "$2.new.$$"
    chmod "$3" "$2.new.$$"
    mv -f "$2.new.$$" "$2"
}

fetch_geoip() {
    if [ -n "$GEOIP_FILE" ]; then
        [ -f "$GEOIP_FILE" ] || fail "GEOIP_FILE=$GEOIP_FILE does not exist"
        cp "$GEOIP_FILE" "$WORK/geoip.mmdb"
    elif [ -n "$GEOIP_URL" ]; then
        download "$GEOIP_URL" "$WORK/geoip.mmdb"
    else
        fail "--with-geoip needs GEOIP_FILE (a local .mmdb) or GEOIP_URL (where to download it)"
    fi
    # A tarball (MaxMind's download, geoipupdate's format): take its .mmdb.
    if [ "$(od -An -tx1 -N 2 "$WORK/geoip.mmdb" | tr -d ' \n')" = 1f8b ]; then
        mkdir -p "$WORK/geoip"
        tar -xzf "$WORK/geoip.mmdb" -C "$WORK/geoip" || fail "the GeoIP download is gzip but not a tar archive"
        found=$(find "$WORK/geoip" -name '*.mmdb' -type f | head -n 1)
        [ -n "$found" ] || fail "the GeoIP tarball holds no .mmdb file"
        mv -f "$found" "$WORK/geoip.mmdb"
    fi
    if ! LC_ALL=C grep -q 'MaxMind.com' "$WORK/geoip.mmdb"; then
        fail "the GeoIP file is not a MaxMind DB (.mmdb) database"
    fi
}

install_config() {
    if [ -f "$DESTDIR$CONFIG" ]; then
        info "$CONFIG exists; keeping it"
    else
        put "$WORK/conntrackd.toml" "$DESTDIR$CONFIG" 0644
        info "wrote the default configuration to $CONFIG"
    fi
}

install_geoip() {
    put "$WORK/geoip.mmdb" "$DESTDIR$GEOIP_DB" 0644
    info "installed the GeoIP database as $GEOIP_DB"
    if grep -q '^[[:space:]]*\[geoip\]' "$DESTDIR$CONFIG"; then
        if grep -q "^[[:space:]]*database[[:space:]]*=[[:space:]]*\"$GEOIP_DB\"" "$DESTDIR$CONFIG"; then
            info "$CONFIG already uses it"
        else
            warn "$CONFIG has its own [geoip] section; set database = \"$GEOIP_DB\" there to use the new file"
        fi
    else
        printf '\n[geoip]\n# Installed by install.sh --with-geoip.\ndatabase = "%s"\n' "$GEOIP_DB" >>"$DESTDIR$CONFIG"
        info "added a [geoip] section to $CONFIG"
    fi
}

do_install() {
    detect_arch
    WORK=$(mktemp -d)
    trap 'rm -rf "$WORK"' EXIT INT TERM
    if [ -n "$FROM" ]; then info "installing from $FROM"; else info "downloading from $(redact "$BASE_URL")"; fi
    # Everything is fetched and checked before anything is installed.
    fetch_verified "conntrackd-linux-$ARCH"
    fetch_verified conntrackd.service
    fetch_verified conntrackd.toml
    fetch_verified conntrackd-man.tar.gz
    case "$WITH_GEOIP" in 1|true|yes) WITH_GEOIP=1; fetch_geoip ;; *) WITH_GEOIP=0 ;; esac
    mkdir -p "$WORK/man"
    tar -xzf "$WORK/conntrackd-man.tar.gz" -C "$WORK/man"

    put "$WORK/conntrackd-linux-$ARCH" "$DESTDIR$BIN" 0755
    info "installed $BIN"
    for page in "$WORK"/man/man1/*.1; do
        put "$page" "$DESTDIR$MANDIR/$(basename "$page")" 0644
    done
    info "installed the man pages in $MANDIR"
    put "$WORK/conntrackd.service" "$DESTDIR$UNIT" 0644
    info "installed $UNIT"
    install_config
    if [ "$WITH_GEOIP" = 1 ]; then install_geoip; fi
    start_service
}

start_service() {
    if systemd_running; then
        systemctl daemon-reload || fail "systemctl daemon-reload failed"
        systemctl enable --quiet conntrackd.service || fail "cannot enable conntrackd.service"
        systemctl restart conntrackd.service || fail "conntrackd did not start; see: journalctl -u conntrackd -n 50"
        info "conntrackd is enabled and running: journalctl -u conntrackd -f"
    elif [ -n "$DESTDIR" ]; then
        info "staged into $DESTDIR; the service was not started"
    else
        info "systemd is not running; start the daemon with: $BIN run --config $CONFIG"
    fi
}

do_uninstall() {
    if systemd_running; then
        systemctl disable --now conntrackd.service >/dev/null 2>&1 || true
    fi
    for file in "$DESTDIR$BIN" "$DESTDIR$UNIT" "$DESTDIR$MANDIR"/conntrackd.1 "$DESTDIR$MANDIR"/conntrackd-*.1; do
        if [ -e "$file" ]; then
            rm -f "$file"
            info "removed ${file#"$DESTDIR"}"
        fi
    done
    if systemd_running; then systemctl daemon-reload; fi
    info "kept /etc/conntrackd and /var/lib/conntrackd (configuration and data); remove them by hand if unwanted"
}

main() {
    parse_args "$@"
    check_root
    if [ "$ACTION" = uninstall ]; then do_uninstall; else do_install; fi
}

main "$@"
