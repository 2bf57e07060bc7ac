# shellcheck shell=bash
# tools/lib.sh: helpers shared by tools/check and tools/demo. Source it; it
# defines functions and the package list only, and changes no shell options.

# Debian 12 packages the project needs to build and test.
DXB_PACKAGES=(
    build-essential meson ninja-build pkg-config
    libzmq3-dev libczmq-dev libmsgpack-dev liblmdb-dev lmdb-utils libsodium-dev
    libyaml-dev libsystemd-dev libcmocka-dev libzstd-dev
    python3 python3-zmq python3-msgpack python3-pytest python3-nacl
    clang-14 libclang-rt-14-dev strace nftables iproute2 util-linux
    cppcheck clang-tidy-14 valgrind faketime libfaketime
)

dxb_say() { printf '%s\n' "$*"; }
dxb_step() { printf '\n==> %s\n' "$*"; }

# Installs the packages of DXB_PACKAGES (or of the arguments) that dpkg does
# not know as installed. Runs `apt-get update` once, and only when something
# is missing. Needs root (or sudo) only in that case. Returns non-zero when
# the installation failed.
dxb_install_missing() {
    local pkgs=("$@") missing=() p
    if [ ${#pkgs[@]} -eq 0 ]; then
        pkgs=("${DXB_PACKAGES[@]}")
    fi
    for p in "${pkgs[@]}"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        dxb_say "all ${#pkgs[@]} packages present"
        return 0
    fi
    dxb_say "installing missing packages: ${missing[*]}"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            dxb_say "error: not root and no sudo; install them by hand: apt-get install ${missing[*]}" >&2
            return 1
        fi
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update || return 1
    "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" || return 1
}

# Configures (or reconfigures) a meson build directory and compiles it.
#   dxb_build DIR [meson setup options...]
# When the compile fails, the targets that can still build are built
# (ninja -k 0) so that the tests of the healthy parts still run; the
# function then returns non-zero.
dxb_build() {
    local dir=$1 log rc=0
    shift
    log=$(mktemp)
    if [ -f "$dir/build.ninja" ]; then
        meson setup --reconfigure "$dir" "$@" >"$log" 2>&1 ||
            meson setup --wipe "$dir" "$@" >"$log" 2>&1 || rc=1
    else
        meson setup "$dir" "$@" >"$log" 2>&1 || rc=1
    fi
    if [ $rc -ne 0 ]; then
        cat "$log" >&2
        rm -f "$log"
        return 1
    fi
    rm -f "$log"
    if meson compile -C "$dir"; then
        return 0
    fi
    dxb_say "compile of $dir failed; building the remaining targets" >&2
    ninja -C "$dir" -k 0 >/dev/null 2>&1
    return 1
}
