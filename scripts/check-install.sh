#!/usr/bin/env bash
# Checks `make install` / `make uninstall` into scratch DESTDIRs: the exact
# list of installed files, their modes, that the binaries run from there,
# the plugin exports libvirt's driver table, the unit points at the
# installed daemon, man pages format cleanly, completions load, config
# templates never overwrite an administrator's file, PREFIX is honoured,
# uninstall removes everything but the configuration, and `make deb`
# packages the same files with the configuration as conffiles.
# Builds the release binaries first (make build) unless NO_BUILD=1.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "check-install: FAILED: $*" >&2; exit 1; }
step() { echo "check-install: $*"; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
build=()
[ "${NO_BUILD:-0}" = 1 ] && build=(NO_BUILD=1)

multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || true)
libdir=/usr/lib${multiarch:+/$multiarch}

expected_files() { # $1 = prefix, $2 = libdir
    local p=$1 l=$2
    sort <<EOF
/etc/highlander/highlanderd.conf
/etc/libvirt/qemu-highlander.conf
/etc/libvirt/hooks/qemu.d/highlander
$p/sbin/highlanderd
$p/sbin/highlander
$l/libvirt/lock-driver/highlander.so
$p/lib/systemd/system/highlanderd.service
$p/share/man/man8/highlander.8
$p/share/man/man8/highlanderd.8
$p/share/bash-completion/completions/highlander
$p/share/zsh/vendor-completions/_highlander
$p/share/fish/vendor_completions.d/highlander.fish
$p/share/doc/highlander/README.md
$(for doc in docs/*.md; do echo "$p/share/doc/highlander/${doc#docs/}"; done)
$p/share/doc/highlander/examples/highlanderd.conf
$p/share/doc/highlander/examples/qemu-highlander.conf
$p/share/doc/highlander/examples/qemu.conf.snippet
$p/share/doc/highlander/examples/highlanderd.service
$p/share/doc/highlander/examples/icinga2-highlander.conf
$p/share/doc/highlander/examples/nagios-highlander.cfg
$p/share/doc/highlander/examples/domains/block-disk.xml
$p/share/doc/highlander/examples/domains/file-disk.xml
$p/share/doc/highlander/examples/domains/lease.xml
$p/share/doc/highlander/examples/domains/shareable-disk.xml
EOF
}

installed_files() { (cd "$1" && find . -type f | sed 's|^\.||' | sort); }

# --- default layout (PREFIX=/usr) ---------------------------------------------
d=$stage/usr-prefix
step "make install DESTDIR=$d"
make -s install DESTDIR="$d" "${build[@]}" >"$stage/install.log" 2>&1 || { cat "$stage/install.log" >&2; fail "make install"; }
diff -u <(expected_files /usr "$libdir") <(installed_files "$d") || fail "installed file list differs (- expected, + installed)"
[ -d "$d/var/lib/highlander" ] || fail "/var/lib/highlander not created"

for f in /usr/sbin/highlanderd /usr/sbin/highlander /etc/libvirt/hooks/qemu.d/highlander; do
    [ "$(stat -c %a "$d$f")" = 755 ] || fail "$f is not mode 755"
done
while read -r f; do
    case $f in /usr/sbin/* | /etc/libvirt/hooks/*) continue ;; esac
    [ "$(stat -c %a "$d$f")" = 644 ] || fail "$f is mode $(stat -c %a "$d$f"), not 644"
done < <(installed_files "$d")

"$d/usr/sbin/highlander" --version | grep -q '^highlander ' || fail "installed highlander does not run"
"$d/usr/sbin/highlanderd" --version | grep -q '^highlanderd ' || fail "installed highlanderd does not run"
# The hook stays out of the way of a libvirt that does not use highlander;
# with lock_manager = "highlander" in the qemu.conf beside its hooks
# directory it reads the qemu-highlander.conf there (the template, which
# must parse), refuses a start on bad XML, never a reconnect.
hook=$d/etc/libvirt/hooks/qemu.d/highlander
echo '<domain>' | "$hook" vm1 prepare begin - || fail "installed hook failed a start with no lock_manager = \"highlander\""
echo 'lock_manager = "highlander"' > "$d/etc/libvirt/qemu.conf"
out=$(echo '<domain>' | "$hook" vm1 prepare begin - 2>&1) && fail "installed hook accepted malformed XML at prepare"
grep -q 'not well-formed' <<<"$out" || fail "installed hook's prepare error: $out"
echo '<domain>' | "$hook" vm1 reconnect begin - 2>/dev/null || fail "installed hook failed a reconnect"
echo '<domain>' | "$hook" vm1 started begin - || fail "installed hook failed an op it does not handle"
rm "$d/etc/libvirt/qemu.conf"
# --check also reads the lockspaces the file names: point the template's at one.
"$d/usr/sbin/highlander" lockspace init "$stage/template.lockspace" --name default --max-hosts 4 --resources 4 >/dev/null || fail "installed highlander cannot format a lockspace"
sed "s|^lockspace = .*|lockspace = $stage/template.lockspace|" "$d/etc/highlander/highlanderd.conf" >"$stage/template.conf"
"$d/usr/sbin/highlanderd" --config "$stage/template.conf" --check >/dev/null || fail "installed highlanderd.conf template does not pass --check"

plugin=$d$libdir/libvirt/lock-driver/highlander.so
file -L "$plugin" 2>/dev/null | grep -q 'shared object' || fail "highlander.so is not a shared object"
readelf --dyn-syms -W "$plugin" | grep -qw virLockDriverImpl || fail "highlander.so does not export virLockDriverImpl"

unit=$d/usr/lib/systemd/system/highlanderd.service
grep -q '^ExecStart=/usr/sbin/highlanderd --config /etc/highlander/highlanderd.conf$' "$unit" || fail "unit's ExecStart"
grep -q '^Type=notify$' "$unit" || fail "unit's Type=notify (highlanderd sends READY=1 once its lockspaces are joined)"
# The unit's syntax and commands, with its binaries taken from the stage
# (man: links resolve only once the pages are installed for real).
sed "s|/usr/sbin/|$d/usr/sbin/|g" "$unit" > "$stage/highlanderd.service"
out=$(systemd-analyze verify "$stage/highlanderd.service" 2>&1 | grep -v "Command 'man " || true)
[ -z "$out" ] || { echo "$out" >&2; fail "systemd-analyze verify complains about the unit"; }

for page in highlander highlanderd; do
    f=$d/usr/share/man/man8/$page.8
    head -5 "$f" | grep -q "^\.TH $page 8" || fail "$page.8 has no .TH $page 8 line"
    warnings=$(groff -man -Tutf8 -ww -z "$f" 2>&1)
    [ -z "$warnings" ] || fail "groff warns about $page.8: $warnings"
done
bash -c "source '$d/usr/share/bash-completion/completions/highlander' && complete -p highlander" >/dev/null || fail "bash completion does not load"
grep -q '^#compdef highlander' "$d/usr/share/zsh/vendor-completions/_highlander" || fail "zsh completion"
grep -q 'complete -c highlander' "$d/usr/share/fish/vendor_completions.d/highlander.fish" || fail "fish completion"

# --- an administrator's configuration is never overwritten ----------------------
step "reinstall over edited configuration"
echo "host_id = 7  # edited" >> "$d/etc/highlander/highlanderd.conf"
echo 'timeout = 30  # edited' >> "$d/etc/libvirt/qemu-highlander.conf"
make -s install DESTDIR="$d" NO_BUILD=1 >"$stage/install2.log" 2>&1 || { cat "$stage/install2.log" >&2; fail "second make install"; }
grep -q 'edited' "$d/etc/highlander/highlanderd.conf" || fail "make install overwrote highlanderd.conf"
grep -q 'edited' "$d/etc/libvirt/qemu-highlander.conf" || fail "make install overwrote qemu-highlander.conf"
grep -q 'kept existing /etc/highlander/highlanderd.conf' "$stage/install2.log" || fail "second install does not say it kept the configuration"

# --- uninstall -----------------------------------------------------------------
step "make uninstall DESTDIR=$d"
make -s uninstall DESTDIR="$d" >/dev/null 2>&1 || fail "make uninstall"
left=$(installed_files "$d")
[ "$left" = "$(printf '%s\n' /etc/highlander/highlanderd.conf /etc/libvirt/qemu-highlander.conf)" ] || fail "uninstall left: $left"

# --- PREFIX=/usr/local, LOCKDRIVERDIR kept at libvirt's --------------------------
d=$stage/usr-local
step "make install PREFIX=/usr/local LOCKDRIVERDIR=$libdir/libvirt/lock-driver DESTDIR=$d"
make -s install DESTDIR="$d" PREFIX=/usr/local LOCKDRIVERDIR="$libdir/libvirt/lock-driver" NO_BUILD=1 >/dev/null 2>&1 || fail "make install PREFIX=/usr/local"
expected=$(expected_files /usr/local "$libdir")
diff -u <(sort <<<"$expected") <(installed_files "$d") || fail "PREFIX=/usr/local file list differs"
grep -q '^ExecStart=/usr/local/sbin/highlanderd ' "$d/usr/local/lib/systemd/system/highlanderd.service" || fail "unit does not point at /usr/local/sbin/highlanderd"
grep -q 'file:///usr/local/share/doc/highlander/' "$d/usr/local/lib/systemd/system/highlanderd.service" || fail "unit's Documentation path"

# --- make deb: the same files, configuration as conffiles -------------------------
step "make deb"
deb=$(make -s deb NO_BUILD=1 | tail -1)
[ -f "$deb" ] || fail "make deb did not print the package it built"
diff -u <(expected_files /usr "$libdir") <(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ {print substr($6, 2)}' | sort) || fail "the package's file list differs"
diff -u <(printf '%s\n' /etc/highlander/highlanderd.conf /etc/libvirt/qemu-highlander.conf) <(dpkg-deb -I "$deb" conffiles) || fail "conffiles"
dpkg-deb -f "$deb" Depends | grep -q 'libc6 (>= ' || fail "the package's Depends"

step "ok: $(expected_files /usr "$libdir" | wc -l) files, modes, unit, man pages, completions, config kept, uninstall, PREFIX"
expected_files /usr "$libdir"
