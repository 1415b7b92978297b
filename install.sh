#!/usr/bin/env bash
# Install genai-proxy as a systemd service, in a container (podman) or
# natively (twistd from a virtualenv). Safe to run again: existing
# settings and models.yaml are kept, changed unit files are replaced.
#
#   sudo ./install.sh [--mode container|native] [--no-start] [--key-stdin]
#
# The key goes to /etc/genai-proxy/credentials/genai_api_key (mode 600),
# never to a command line or the settings file: from --key-stdin (one line
# on standard input), else from GENAI_API_KEY in the environment, else asked
# for on the terminal. An existing key file is kept.
#
# Options for packaging and tests:
#   --root DIR   install under DIR instead of / (no systemctl, no users)
#   --no-build   container mode: do not build the image
#   --no-venv    native mode: do not create the virtualenv
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
mode=""
root=""
start=yes
build=yes
venv=yes
key_stdin=no

usage() {
    # The comment block at the top of this file, without its "# ".
    local text
    text=$(awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0")
    if [ "${1:-0}" -eq 0 ]; then echo "$text"; else echo "$text" >&2; fi
    exit "${1:-0}"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --mode) mode=${2:-}; shift 2 ;;
        --mode=*) mode=${1#--mode=}; shift ;;
        --root) root=${2:-}; shift 2 ;;
        --root=*) root=${1#--root=}; shift ;;
        --no-start) start=no; shift ;;
        --no-build) build=no; shift ;;
        --no-venv) venv=no; shift ;;
        --key-stdin) key_stdin=yes; shift ;;
        -h|--help) usage 0 ;;
        *) echo "install.sh: unknown option: $1" >&2; usage 2 ;;
    esac
done

engine=""
if command -v podman >/dev/null 2>&1; then
    engine=podman
elif command -v docker >/dev/null 2>&1; then
    engine=docker
fi
if [ -z "$mode" ]; then
    if [ -n "$engine" ]; then mode=container; else mode=native; fi
fi
case "$mode" in
    container|native) ;;
    *) echo "install.sh: --mode must be container or native, not '$mode'" >&2; exit 2 ;;
esac

live=yes
[ -n "$root" ] && live=no
if [ "$live" = yes ] && [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (sudo ./install.sh)" >&2
    exit 1
fi

etc="$root/etc/genai-proxy"
opt="$root/opt/genai-proxy"
units="$root/etc/systemd/system"
env_file="$etc/genai-proxy.env"
key_dir="$etc/credentials"
key_file="$key_dir/genai_api_key"

step() { printf '==> %s\n' "$*"; }

echo "genai-proxy installer ($mode mode)"

step "Preparing $opt and $etc"
mkdir -p "$opt" "$etc" "$units"
chmod 755 "$opt"

# Settings from an earlier install may hold the key: it moves to its own file.
key=""
if [ -e "$env_file" ] && [ ! -e "$key_file" ] && grep -q '^GENAI_API_KEY=' "$env_file"; then
    key=$(sed -n 's/^GENAI_API_KEY=//p' "$env_file" | tail -n 1)
    sed -i '/^GENAI_API_KEY=/d' "$env_file"
    moved_key=yes
fi

step "Settings in $env_file"
if [ -e "$env_file" ]; then
    echo "    kept: it exists already (edit it, then: systemctl restart genai-proxy)"
    [ "${moved_key:-no}" = yes ] && echo "    its GENAI_API_KEY line moved to $key_file"
else
    umask 077
    {
        echo "# genai-proxy settings (see README.md, Configuration). Mode 600."
        echo "# The key is not here: it is in $key_file."
        echo "GENAI_SUBSCRIPTION_NAME=${GENAI_SUBSCRIPTION_NAME:-Ocp-Apim-Subscription-Key}"
        echo "GENAI_BASE_URL=${GENAI_BASE_URL:-https://gateway.example.com/genai}"
        echo "# HTTPS_PROXY=http://proxy.example:8080"
        echo "# NO_PROXY=localhost,127.0.0.1"
        echo "# GENAI_CA_BUNDLE=/etc/genai-proxy/ca.pem"
        echo "# AUTH_TOKENS_FILE=/etc/genai-proxy/tokens.yaml"
        echo "# LOG_BODIES=false"
    } > "$env_file"
    umask 022
    chmod 600 "$env_file"
    echo "    written; fill in the URL before starting"
fi

step "Key in $key_file"
mkdir -p "$key_dir"
chmod 700 "$key_dir"
if [ -e "$key_file" ]; then
    echo "    kept: it exists already (to rotate it, see README.md, As a systemd service)"
else
    if [ -n "$key" ]; then
        :
    elif [ "$key_stdin" = yes ]; then
        IFS= read -r key || true
    elif [ -n "${GENAI_API_KEY:-}" ]; then
        key=$GENAI_API_KEY
    elif [ -t 0 ] && [ "$live" = yes ]; then
        IFS= read -rsp "    the gateway's key (not shown): " key || true
        echo
    fi
    umask 077
    # printf is a shell builtin: the key is in no process's arguments.
    printf '%s\n' "${key:-change-me}" > "$key_file"
    umask 022
    chmod 600 "$key_file"
    if [ -n "$key" ]; then echo "    written"; else echo "    written with a placeholder: put the key in it"; fi
fi
key=""

step "Model list in $opt/models.yaml"
if [ -e "$opt/models.yaml" ]; then
    echo "    kept: it exists already (edits are picked up without a restart)"
else
    cp "$here/models.yaml" "$opt/models.yaml"
    chmod 644 "$opt/models.yaml"
    echo "    copied the example list"
fi

install_unit() {
    local source=$1 target="$units/genai-proxy.service"
    if [ -e "$target" ] && cmp -s "$source" "$target"; then
        echo "    unchanged: $target"
    else
        install -m 644 "$source" "$target"
        echo "    installed: $target"
    fi
}

if [ "$mode" = container ]; then
    step "Container image localhost/genai-proxy:latest"
    if [ "$build" = no ]; then
        echo "    skipped (--no-build)"
    elif [ -z "$engine" ]; then
        echo "install.sh: container mode needs podman or docker" >&2
        exit 1
    else
        # podman's default (OCI) image format would drop the HEALTHCHECK.
        format=()
        [ "$engine" = podman ] && format=(--format docker)
        "$engine" build "${format[@]}" -t localhost/genai-proxy:latest -f "$here/Containerfile" "$here"
    fi
    step "Podman secret genai_api_key"
    if [ "$live" = no ]; then
        echo "    skipped (--root)"
    elif [ "$engine" != podman ]; then
        echo "install.sh: the container unit runs podman, which is not installed" >&2
        exit 1
    elif podman secret inspect genai_api_key >/dev/null 2>&1; then
        echo "    kept: it exists already"
    else
        podman secret create genai_api_key - < "$key_file" >/dev/null
        echo "    created from $key_file"
    fi
    step "systemd unit"
    install_unit "$here/genai-proxy.service"
else
    step "Service user genai-proxy"
    if [ "$live" = no ]; then
        echo "    skipped (--root)"
    elif id genai-proxy >/dev/null 2>&1; then
        echo "    exists"
    else
        useradd --system --user-group --home-dir /opt/genai-proxy --shell /usr/sbin/nologin genai-proxy
        echo "    created"
    fi
    step "Virtualenv $opt/venv"
    if [ "$venv" = no ]; then
        echo "    skipped (--no-venv)"
    else
        [ -x "$opt/venv/bin/python" ] || python3 -m venv "$opt/venv"
        "$opt/venv/bin/pip" install --quiet --upgrade "$here"
        echo "    genai-proxy installed (again) from $here"
    fi
    step "systemd unit"
    install_unit "$here/deploy/genai-proxy-native.service"
fi

if [ "$live" = no ]; then
    echo "==> Done (files under $root; systemctl not run)"
    exit 0
fi

step "Reloading systemd"
systemctl daemon-reload
if [ "$start" = yes ]; then
    step "Enabling and (re)starting genai-proxy"
    systemctl enable genai-proxy.service
    systemctl restart genai-proxy.service
    systemctl --no-pager status genai-proxy.service || true
else
    echo "    not started (--no-start): systemctl enable --now genai-proxy"
fi
echo "==> Done"
