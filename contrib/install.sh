#!/bin/sh
# Install conntrackd: the binary, its man pages, the hardened systemd unit and,
# if absent, the default configuration; optionally a GeoIP City database.
#
#   curl -fsSL https://github.com/conntrackd/conntrackd/releases/latest/download/install.sh | sudo sh
#   curl -fsSL …/install.sh | sudo WITH_GEOIP=1 sh -
#   sudo sh install.sh [--from DIR] [--with-geoip] [--geoip-only] [--uninstall]
#
# Every downloaded file is checked against its .sha256 before anything is
# installed; a mismatch installs nothing. Re-running upgrades the binary,
# unit and man pages and keeps the configuration.
#
# Environment:
#   BASE_URL    where the release artifacts are (default: the latest GitHub release)
#   ARCH        amd64 | arm64 (default: from uname -m)
#   WITH_GEOIP  1 = as --with-geoip
#   GEOIP_FILE  a local City database (.mmdb, .mmdb.gz, or a .tar.gz holding one)
#   GEOIP_URL   a URL to download it from
#   MAXMIND_ACCOUNT_ID, MAXMIND_LICENSE_KEY
#               download MaxMind's GeoLite2-City (free account) instead
#   Without any of these: DB-IP's IP-to-City Lite (free, CC BY 4.0), this
#   month's file or, before it is published, last month's.
#   GEOIP_MONTH the month (YYYY-MM) whose DB-IP file is tried first (default: this month, UTC)
#   GEOIP_TIMER 0 = no monthly refresh timer (conntrackd-geoip.timer)
#   DBIP_BASE_URL, MAXMIND_BASE_URL
#               other download hosts (mirrors, tests)
# URLs are printed without credentials and query strings (license keys).
#   DESTDIR     install below this directory instead of / (staging, tests);
#               the service is then neither enabled nor started
#   NO_COLOR    set to disable colours
set -eu

BASE_URL="${BASE_URL:-https://github.com/conntrackd/conntrackd/releases/latest/download}"
WITH_GEOIP="${WITH_GEOIP:-0}"
GEOIP_FILE="${GEOIP_FILE:-}"
GEOIP_URL="${GEOIP_URL:-}"
GEOIP_TIMER="${GEOIP_TIMER:-1}"
MAXMIND_ACCOUNT_ID="${MAXMIND_ACCOUNT_ID:-}"
MAXMIND_LICENSE_KEY="${MAXMIND_LICENSE_KEY:-}"
DBIP_BASE_URL="${DBIP_BASE_URL:-https://download.db-ip.com/free}"
MAXMIND_BASE_URL="${MAXMIND_BASE_URL:-https://download.maxmind.com}"
DESTDIR="${DESTDIR:-}"
FROM=""
ACTION="install"

BIN="/usr/local/bin/conntrackd"
UNIT="/etc/systemd/system/conntrackd.service"
MANDIR="/usr/local/share/man/man1"
CONFIG="/etc/conntrackd/conntrackd.toml"
GEOIP_DB="/var/lib/conntrackd/City.mmdb"
GEOIP_ENV="/etc/conntrackd/geoip.env"
LIBDIR="/usr/local/lib/conntrackd"
GEOIP_UNIT="/etc/systemd/system/conntrackd-geoip"

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
Usage: install.sh [--from DIR] [--with-geoip] [--geoip-only] [--uninstall] [--help]
  --from DIR     install from local artifacts in DIR instead of BASE_URL
  --with-geoip   also install a City database (GEOIP_FILE, GEOIP_URL, MaxMind
                 with MAXMIND_ACCOUNT_ID/MAXMIND_LICENSE_KEY, else DB-IP City
                 Lite) and a monthly refresh timer (GEOIP_TIMER=0: none)
  --geoip-only   only refresh the City database (what the timer runs)
  --uninstall    remove the binary, units and man pages (keeps config and data)
EOF
}

parse_args() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --from) [ $# -ge 2 ] || fail "--from needs a directory"; FROM="$2"; shift 2 ;;
            --from=*) FROM="${1#--from=}"; shift ;;
            --with-geoip) WITH_GEOIP=1; shift ;;
            --geoip-only) ACTION="geoip"; shift ;;
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
    try_download "$1" "$2" || fail "cannot download $(redact "$1")"
}

# try_download URL DEST [USER:PASSWORD]: false on failure (a 404 included).
# Credentials go to curl/wget through a config file, never the command line.
try_download() {
    if command -v curl >/dev/null 2>&1; then
        if [ -n "${3:-}" ]; then
            printf 'user = "%s"\n' "$3" | curl -fsSL --retry 2 -K - -o "$2" "$1"
        else
            curl -fsSL --retry 2 -o "$2" "$1"
        fi
    elif command -v wget >/dev/null 2>&1; then
        if [ -n "${3:-}" ]; then
            printf 'user = %s\npassword = %s\nauth_no_challenge = on\n' "${3%%:*}" "${3#*:}" >"$WORK/wgetrc"
            WGETRC="$WORK/wgetrc" wget -q -O "$2" "$1"
        else
            wget -q -O "$2" "$1"
        fi
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

# previous_month YYYY-MM: the month before it.
previous_month() {
    year=${1%-*}
    month=${1#*-}
    month=${month#0}
    if [ "$month" -eq 1 ]; then
        printf '%04d-12\n' $((year - 1))
    else
        printf '%04d-%02d\n' "$year" $((month - 1))
    fi
}

# dbip_months YYYY-MM: the DB-IP months to try, newest first (the file of a
# month appears in its first days).
dbip_months() {
    case "$1" in
        [0-9][0-9][0-9][0-9]-0[1-9] | [0-9][0-9][0-9][0-9]-1[0-2]) ;;
        *) fail "GEOIP_MONTH=$1: expected YYYY-MM" ;;
    esac
    printf '%s %s\n' "$1" "$(previous_month "$1")"
}

# fetch_geoip: the City database into $WORK/geoip.mmdb; sets GEOIP_SOURCE,
# GEOIP_FROM (the URL, redacted), GEOIP_CREDIT (attribution, may be empty)
# and GEOIP_KEEP (the variables that choose this source, for the timer).
fetch_geoip() {
    GEOIP_CREDIT=""
    GEOIP_KEEP=""
    if [ -n "$GEOIP_FILE" ]; then
        [ -f "$GEOIP_FILE" ] || fail "GEOIP_FILE=$GEOIP_FILE does not exist"
        cp "$GEOIP_FILE" "$WORK/geoip.mmdb"
        GEOIP_SOURCE="local file"; GEOIP_FROM="$GEOIP_FILE"
    elif [ -n "$GEOIP_URL" ]; then
        download "$GEOIP_URL" "$WORK/geoip.mmdb"
        GEOIP_SOURCE="download"; GEOIP_FROM=$(redact "$GEOIP_URL"); GEOIP_KEEP="GEOIP_URL"
    elif [ -n "$MAXMIND_ACCOUNT_ID" ] || [ -n "$MAXMIND_LICENSE_KEY" ]; then
        if [ -z "$MAXMIND_ACCOUNT_ID" ] || [ -z "$MAXMIND_LICENSE_KEY" ]; then
            fail "MaxMind needs both MAXMIND_ACCOUNT_ID and MAXMIND_LICENSE_KEY"
        fi
        url="$MAXMIND_BASE_URL/geoip/databases/GeoLite2-City/download?suffix=tar.gz"
        info "downloading GeoLite2-City from $(redact "$url") (account $MAXMIND_ACCOUNT_ID)"
        try_download "$url" "$WORK/geoip.mmdb" "$MAXMIND_ACCOUNT_ID:$MAXMIND_LICENSE_KEY" \
            || fail "cannot download GeoLite2-City from $(redact "$url"): check MAXMIND_ACCOUNT_ID and MAXMIND_LICENSE_KEY"
        GEOIP_SOURCE="MaxMind GeoLite2-City"; GEOIP_FROM=$(redact "$url"); GEOIP_KEEP="MAXMIND_ACCOUNT_ID MAXMIND_LICENSE_KEY MAXMIND_BASE_URL"
        GEOIP_CREDIT="This product includes GeoLite2 Data created by MaxMind, available from https://www.maxmind.com (GeoLite2 End User License Agreement)."
    else
        months=$(dbip_months "${GEOIP_MONTH:-$(date -u +%Y-%m)}")
        GEOIP_FROM=""
        for month in $months; do
            url="$DBIP_BASE_URL/dbip-city-lite-$month.mmdb.gz"
            info "downloading DB-IP IP-to-City Lite $month from $(redact "$url")"
            if try_download "$url" "$WORK/geoip.mmdb"; then
                GEOIP_FROM=$(redact "$url")
                break
            fi
            warn "$(redact "$url") is not available"
        done
        [ -n "$GEOIP_FROM" ] || fail "no DB-IP City Lite file for $(echo "$months" | sed 's/ / or /') at $(redact "$DBIP_BASE_URL"); set GEOIP_FILE, GEOIP_URL or MAXMIND_ACCOUNT_ID/MAXMIND_LICENSE_KEY"
        GEOIP_SOURCE="DB-IP IP-to-City Lite"; GEOIP_KEEP="DBIP_BASE_URL"
        GEOIP_CREDIT="IP Geolocation by DB-IP (https://db-ip.com), licensed under CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/): credit DB-IP wherever its data is shown."
    fi
    unpack_geoip
}

# A gzip file is a tarball (MaxMind's download, geoipupdate's format; its
# .mmdb is taken) or a gzipped .mmdb (DB-IP's).
unpack_geoip() {
    [ "$(od -An -tx1 -N 2 "$WORK/geoip.mmdb" | tr -d ' \n')" = 1f8b ] || return 0
    gzip -dc "$WORK/geoip.mmdb" >"$WORK/geoip.raw" || fail "the GeoIP download is not a valid gzip file"
    if [ "$(dd if="$WORK/geoip.raw" bs=1 skip=257 count=5 2>/dev/null)" = ustar ]; then
        mkdir -p "$WORK/geoip"
        tar -xf "$WORK/geoip.raw" -C "$WORK/geoip" || fail "the GeoIP tarball cannot be unpacked"
        found=$(find "$WORK/geoip" -name '*.mmdb' -type f | head -n 1)
        [ -n "$found" ] || fail "the GeoIP tarball holds no .mmdb file"
        mv -f "$found" "$WORK/geoip.mmdb"
    else
        mv -f "$WORK/geoip.raw" "$WORK/geoip.mmdb"
    fi
}

# verify_geoip BINARY: the file must open as a City database in conntrackd.
verify_geoip() {
    if ! LC_ALL=C grep -q 'MaxMind.com' "$WORK/geoip.mmdb"; then
        fail "the GeoIP file is not a MaxMind DB (.mmdb) database"
    fi
    if ! "$1" version >/dev/null 2>&1; then
        warn "cannot run $1 here; the database was only checked to be a MaxMind DB file"
        return 0
    fi
    printf '[sink.stream]\nenable = true\nwriter = "discard"\n' >"$WORK/verify.toml"
    if ! report=$("$1" check --config "$WORK/verify.toml" --geoip.database="$WORK/geoip.mmdb" 2>&1); then
        fail "the GeoIP file is not a City database conntrackd can use: $report"
    fi
    line=$(printf '%s\n' "$report" | grep '^geoip.database ' | head -n 1)
    info "verified the GeoIP database: ${line#*: }"
}

install_config() {
    if [ -f "$DESTDIR$CONFIG" ]; then
        info "$CONFIG exists; keeping it"
    else
        put "$WORK/conntrackd.toml" "$DESTDIR$CONFIG" 0644
        info "wrote the default configuration to $CONFIG"
    fi
}

# install_geoip_file: the verified database, atomically (the daemon reloads
# a replaced file and never sees half of one), and its provenance beside it.
install_geoip_file() {
    if [ -f "$DESTDIR$GEOIP_DB" ] && [ "$(sha256_of "$DESTDIR$GEOIP_DB")" = "$(sha256_of "$WORK/geoip.mmdb")" ]; then
        info "$GEOIP_DB is already this database"
    else
        put "$WORK/geoip.mmdb" "$DESTDIR$GEOIP_DB" 0644
        info "installed the GeoIP database as $GEOIP_DB ($GEOIP_SOURCE)"
    fi
    printf 'source: %s\nfrom: %s\ninstalled: %s\nattribution: %s\n' "$GEOIP_SOURCE" "$GEOIP_FROM" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
        "${GEOIP_CREDIT:-as the provider states}" >"$WORK/geoip.source"
    put "$WORK/geoip.source" "$DESTDIR$GEOIP_DB.source" 0644
    if [ -n "$GEOIP_CREDIT" ]; then info "GeoIP data: $GEOIP_CREDIT"; fi
}

install_geoip() {
    install_geoip_file
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

# The timer runs this script's GeoIP step (--geoip-only) once a month with
# the same source, kept in $GEOIP_ENV (mode 0600: it may hold a license key).
install_geoip_timer() {
    case "$GEOIP_TIMER" in 0 | false | no) info "GEOIP_TIMER=$GEOIP_TIMER: no monthly refresh"; return 0 ;; esac
    if [ -n "$GEOIP_FILE" ]; then
        info "the database is a local file (GEOIP_FILE): no refresh timer"
        return 0
    fi
    put "$WORK/install.sh" "$DESTDIR$LIBDIR/install.sh" 0755
    : >"$WORK/geoip.env"
    for var in $GEOIP_KEEP; do
        value=$(eval "printf '%s' \"\${$var}\"")
        case "$var=$value" in
            DBIP_BASE_URL=https://download.db-ip.com/free | MAXMIND_BASE_URL=https://download.maxmind.com | *=) continue ;;
        esac
        case "$value" in *"'"* | *'
'*) fail "$var holds a quote or a newline; it cannot be kept for the refresh timer" ;; esac
        printf "%s='%s'\n" "$var" "$value" >>"$WORK/geoip.env"
    done
    put "$WORK/geoip.env" "$DESTDIR$GEOIP_ENV" 0600
    cat >"$WORK/geoip.service" <<EOF
[Unit]
Description=conntrackd: refresh the GeoIP City database
Documentation=man:conntrackd(1)
After=network-online.target
Wants=network-online.target

[Service]
Type=oneshot
EnvironmentFile=-$GEOIP_ENV
ExecStart=/bin/sh $LIBDIR/install.sh --geoip-only
Environment=NO_COLOR=1
NoNewPrivileges=yes
PrivateTmp=yes
ProtectHome=yes
ProtectSystem=strict
ReadWritePaths=-/var/lib/conntrackd -/var/lib/private/conntrackd
EOF
    cat >"$WORK/geoip.timer" <<'EOF'
[Unit]
Description=conntrackd: refresh the GeoIP City database monthly

[Timer]
OnCalendar=*-*-03 04:00:00
RandomizedDelaySec=6h
Persistent=true

[Install]
WantedBy=timers.target
EOF
    put "$WORK/geoip.service" "$DESTDIR$GEOIP_UNIT.service" 0644
    put "$WORK/geoip.timer" "$DESTDIR$GEOIP_UNIT.timer" 0644
    if systemd_running; then
        systemctl daemon-reload || fail "systemctl daemon-reload failed"
        systemctl enable --now --quiet conntrackd-geoip.timer || fail "cannot enable conntrackd-geoip.timer"
    fi
    info "installed conntrackd-geoip.timer: refreshes $GEOIP_DB monthly (systemctl start conntrackd-geoip.service now; GEOIP_TIMER=0 skips it)"
}

# --geoip-only: fetch, verify with the installed binary, replace the file.
do_geoip() {
    WORK=$(mktemp -d)
    trap 'rm -rf "$WORK"' EXIT INT TERM
    [ -x "$DESTDIR$BIN" ] || fail "$BIN is missing: install conntrackd first"
    fetch_geoip
    verify_geoip "$DESTDIR$BIN"
    install_geoip_file
    if ! grep -q "^[[:space:]]*database[[:space:]]*=[[:space:]]*\"$GEOIP_DB\"" "$DESTDIR$CONFIG" 2>/dev/null; then
        warn "$CONFIG does not use $GEOIP_DB: set database = \"$GEOIP_DB\" in its [geoip] section"
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
    case "$WITH_GEOIP" in 1 | true | yes) WITH_GEOIP=1 ;; *) WITH_GEOIP=0 ;; esac
    if [ "$WITH_GEOIP" = 1 ]; then
        fetch_verified install.sh
        chmod 0755 "$WORK/conntrackd-linux-$ARCH"
        fetch_geoip
        verify_geoip "$WORK/conntrackd-linux-$ARCH"
    fi
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
    if [ "$WITH_GEOIP" = 1 ]; then
        install_geoip
        install_geoip_timer
    fi
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
        systemctl disable --now conntrackd.service conntrackd-geoip.timer >/dev/null 2>&1 || true
    fi
    for file in "$DESTDIR$BIN" "$DESTDIR$UNIT" "$DESTDIR$GEOIP_UNIT.service" "$DESTDIR$GEOIP_UNIT.timer" "$DESTDIR$LIBDIR/install.sh" \
        "$DESTDIR$MANDIR"/conntrackd.1 "$DESTDIR$MANDIR"/conntrackd-*.1; do
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
    case "$ACTION" in
        uninstall) do_uninstall ;;
        geoip) do_geoip ;;
        *) do_install ;;
    esac
}

# INSTALL_SH_LIBRARY=1: only define the functions (the tests source the script).
[ "${INSTALL_SH_LIBRARY:-0}" = 1 ] || main "$@"
