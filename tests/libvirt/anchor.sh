#!/bin/bash
# anchor.sh ROOT HOSTNAME: holds one test host's private mount + UTS namespace.
# Run under `unshare --mount --uts --propagation private`. It overlays ROOT's
# private directories on every path libvirt and highlanderd use, sets the
# hostname, writes its pid to ROOT/anchor.pid and sleeps; the host's daemons
# are started with `nsenter -t <anchor pid> -m -u`.
set -eu
R=$1
mount --make-rprivate /
mount --bind "$R/etc"   /etc/libvirt
mount --bind "$R/lib"   /var/lib/libvirt
mount --bind "$R/log"   /var/log/libvirt
mount --bind "$R/cache" /var/cache/libvirt
# All of /run: covers /run/libvirt, /run/highlander and the daemons' pid
# files, and hides /run/systemd so libvirt does not try machined.
mount --bind "$R/run"   /run
hostname "$2"
echo $$ > "$R/anchor.pid"
exec sleep infinity
