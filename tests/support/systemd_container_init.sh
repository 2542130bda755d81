#!/bin/sh
# PID 1 of a throw-away systemd container, before it becomes systemd. Run by
# tests/support/systemd_container.py inside `unshare --pid --mount --uts --ipc --net
# --propagation private`; never run it on the host's own namespaces.
#
#   stage1: join our own cgroup, then re-exec in a new cgroup namespace rooted there. Only
#           this process joins it: with the unshare parent inside too, systemd fails with
#           "Couldn't move remaining userspace processes".
#   stage2: build the root (overlay over the cached Debian root, /proc, /sys, /dev, /run,
#           read-only binds of host paths), pivot into it and exec systemd.
#
# Everything is configured through SC_* variables; every mount lands in the private mount
# namespace, so the host sees none of them.
set -eu

stage1() {
    echo 0 > "$SC_CGROUP/cgroup.procs"
    exec unshare --cgroup /bin/sh "$0" stage2
}

bind_ro() {  # bind_ro SRC DEST: DEST inside the new root, created as a file or directory
    if [ -d "$1" ]; then mkdir -p "$2"; else mkdir -p "$(dirname "$2")"; touch "$2"; fi
    mount --bind "$1" "$2"
    mount -o remount,bind,ro "$2"
}

mount_dev() {
    root=$1
    mount -t tmpfs -o mode=0755,nosuid,size=16m tmpfs "$root/dev"
    for node in null zero full random urandom tty; do
        touch "$root/dev/$node"
        mount --bind "/dev/$node" "$root/dev/$node"
    done
    mkdir "$root/dev/pts" "$root/dev/shm"
    mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$root/dev/pts"
    ln -s pts/ptmx "$root/dev/ptmx"
    ln -s /proc/self/fd "$root/dev/fd"
    ln -s /proc/self/fd/0 "$root/dev/stdin"
    ln -s /proc/self/fd/1 "$root/dev/stdout"
    ln -s /proc/self/fd/2 "$root/dev/stderr"
    # systemd logs nothing unless /dev/console is a terminal: our stdin is a pty slave.
    touch "$root/dev/console"
    mount --bind "$(readlink /proc/self/fd/0)" "$root/dev/console"
}

stage2() {
    root=$SC_MERGED
    mount -t overlay overlay \
        -o "lowerdir=$SC_LOWER,upperdir=$SC_UPPER,workdir=$SC_WORK" "$root"
    if [ -s "$SC_BINDS" ]; then
        while IFS='	' read -r src dest; do bind_ro "$src" "$root$dest"; done < "$SC_BINDS"
    fi
    mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
    # The container's sysctl must not reach the host's kernel.
    for path in sys sysrq-trigger; do
        [ -e "$root/proc/$path" ] || continue
        mount --bind "$root/proc/$path" "$root/proc/$path"
        mount -o remount,bind,ro "$root/proc/$path"
    done
    mount --bind "$SC_BOOT_ID" "$root/proc/sys/kernel/random/boot_id"
    mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
    mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$root/sys/fs/cgroup"
    mount_dev "$root"
    mount -t tmpfs -o mode=0755,nosuid,nodev,size=64m tmpfs "$root/run"
    cd "$root"
    mkdir -p .oldroot
    pivot_root . .oldroot
    umount -l /.oldroot
    rmdir /.oldroot
    # In a container PID 1's arguments act as the kernel command line. Debian's console
    # getty would hang up our pty console and take the whole chain down with it.
    exec env -i container="$SC_NAME" /lib/systemd/systemd --system \
        --log-target=journal-or-kmsg systemd.mask=console-getty.service
}

case "${1:-}" in
    stage1) stage1 ;;
    stage2) stage2 ;;
    *) echo "usage: $0 stage1|stage2" >&2; exit 2 ;;
esac
