# Shared by up.sh and test.sh: install what is missing on a Debian machine.
# shellcheck shell=bash

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "error: need root (or sudo) to run: $*" >&2; exit 1; fi
}

pg_bin() {
    # Debian keeps the server binaries out of PATH, under /usr/lib/postgresql/<version>/bin.
    if command -v initdb >/dev/null && command -v postgres >/dev/null; then dirname "$(command -v initdb)"; return; fi
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$d" ] && echo "$d"
}

# install_missing PACKAGE... : apt-get installs only the packages whose tools are absent.
install_missing() {
    local want=()
    for pkg in "$@"; do
        case "$pkg" in
            nats-server) command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || want+=(nats-server) ;;
            postgresql) [ -n "$(pg_bin)" ] || want+=(postgresql) ;;
            postfix) command -v smtp-sink >/dev/null || [ -x /usr/sbin/smtp-sink ] || want+=(postfix) ;;
            curl) command -v curl >/dev/null || want+=(curl) ;;
            *) dpkg -s "$pkg" >/dev/null 2>&1 || want+=("$pkg") ;;
        esac
    done
    if [ "${#want[@]}" -gt 0 ]; then
        echo "==> installing ${want[*]}"
        as_root apt-get update -qq
        # postfix asks questions on install; this answers "no configuration".
        echo "postfix postfix/main_mailer_type select No configuration" | as_root debconf-set-selections 2>/dev/null || true
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
    fi
}

require_cargo() {
    if ! command -v cargo >/dev/null; then
        [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
    fi
    if ! command -v cargo >/dev/null; then
        echo "error: cargo not found. Postflow needs Rust 1.88 or newer (https://rustup.rs)." >&2
        exit 1
    fi
}
