"""A real systemd as PID 1 of its own namespaces over a throw-away Debian root (system tests).

A cached debootstrap root is the read-only lower layer of an overlayfs whose upper layer is
per run; the launcher (`systemd_container_init.sh`) runs in new pid/mount/uts/ipc/net/cgroup
namespaces under a pty (systemd logs nothing unless /dev/console is a tty), builds /proc,
/sys, /dev and /run, pivots into the overlay and execs systemd. The host drives it with
`nsenter -t PID -a`. Nothing is mounted in the host's namespaces and nothing on the host is
written except our temp dirs and our own cgroup, which `close()` removes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[2]
INIT_SCRIPT = Path(__file__).with_name("systemd_container_init.sh")
SUITE = "bookworm"
# python3 for test services; procps for the unit's /bin/kill; libasound2 (its `file` PCM
# is built in), libportaudio2 and mosquitto for the satellite itself.
ROOT_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "python3",
    "procps",
    "libasound2",
    "libportaudio2",
    "mosquitto",
)
# Bump when the tarball's making changes: /dev is left out (the container mounts its own, and
# a root without device nodes unpacks without root, e.g. for `systemd-analyze --root`).
FORMAT = "2"
# How long building the root may take: debootstrap from the network on a slow machine, then
# packing it. Tests that may build it (test_unit.py) take ROOT_BUILD_TIMEOUT_S as their limit.
DEBOOTSTRAP_TIMEOUT_S = 900
PACK_TIMEOUT_S = 300
UNPACK_TIMEOUT_S = 120
ROOT_BUILD_TIMEOUT_S = DEBOOTSTRAP_TIMEOUT_S + PACK_TIMEOUT_S + UNPACK_TIMEOUT_S
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BOUNDING_SET_DROP = "-sys_module,-sys_time,-sys_rawio,-syslog,-sys_boot"
NO_CORE_DUMPS = "[Manager]\nDefaultLimitCORE=0\n"
T = TypeVar("T")


class ContainerError(RuntimeError):
    """The container could not be built, booted or driven."""


def cache_dir() -> Path:
    """Where the root tarball is cached (SATELLITE_TEST_CACHE, else .cache/systemd-root)."""
    return Path(os.environ.get("SATELLITE_TEST_CACHE", ROOT / ".cache" / "systemd-root"))


def _cgroup2_mounts() -> list[str]:
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        return [line.split()[1] for line in mounts if line.split()[2] == "cgroup2"]


def cgroup2_root() -> Path | None:
    """The cgroup v2 hierarchy: /sys/fs/cgroup (pure v2) or /sys/fs/cgroup/unified (hybrid)."""
    found = _cgroup2_mounts()
    for candidate in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        if candidate in found:
            return Path(candidate)
    return None


def _probe_namespaces() -> str | None:
    with tempfile.TemporaryDirectory(prefix="sc-probe-") as tmp:
        for name in ("lower", "upper", "work", "merged"):
            os.mkdir(os.path.join(tmp, name))
        options = f"lowerdir={tmp}/lower,upperdir={tmp}/upper,workdir={tmp}/work"
        probe = (
            "unshare --pid --mount --uts --ipc --net --fork --kill-child --propagation private "
            f"mount -t overlay overlay -o {options} {tmp}/merged"
        )
        done = subprocess.run(
            ["sh", "-c", probe], capture_output=True, text=True, timeout=20, check=False
        )
        if done.returncode != 0:
            return f"cannot create namespaces with an overlay root: {done.stderr.strip()}"
    return None


def unavailable_reason() -> str | None:
    """Why this machine cannot boot a systemd container, or None if it can."""
    if os.geteuid() != 0:
        return "needs root to create pid/mount/net/cgroup namespaces"
    missing = [tool for tool in ("unshare", "nsenter", "setpriv") if not shutil.which(tool)]
    if missing:
        return f"util-linux without {' '.join(missing)}"
    with open("/proc/filesystems", encoding="utf-8") as filesystems:
        has_overlay = any(line.split()[-1] == "overlay" for line in filesystems if line.strip())
    if not has_overlay and shutil.which("modprobe"):
        subprocess.run(["modprobe", "overlay"], capture_output=True, timeout=10, check=False)
    root = cgroup2_root()
    if root is None or not os.access(root, os.W_OK):
        return "no writable cgroup v2 hierarchy (/sys/fs/cgroup or /sys/fs/cgroup/unified)"
    return _probe_namespaces()


def _deb822_mirrors(text: str) -> Iterable[tuple[list[str], list[str]]]:
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if ":" in line and not line.startswith(("#", " ")):
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
        if "deb" in fields.get("types", "").split():
            yield fields.get("uris", "").split(), fields.get("suites", "").split()


def debian_mirror() -> str:
    """The Debian mirror apt already uses for SUITE (SATELLITE_TEST_DEBIAN_MIRROR wins)."""
    if override := os.environ.get("SATELLITE_TEST_DEBIAN_MIRROR"):
        return override
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for uris, suites in _deb822_mirrors(path.read_text(encoding="utf-8")):
            if SUITE in suites and uris:
                return uris[0]
    one_line = Path("/etc/apt/sources.list")
    if one_line.exists():
        for line in one_line.read_text(encoding="utf-8").splitlines():
            words = [w for w in line.split() if not w.startswith("[")]
            if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                return words[1]
    raise ContainerError(f"no apt source for {SUITE}; set SATELLITE_TEST_DEBIAN_MIRROR")


def root_tarball(directory: Path | None = None) -> Path:
    """The cached zstd tarball of a minbase Debian root; built by debootstrap (~45 s) once."""
    if not shutil.which("zstd"):
        raise ContainerError("zstd is missing: apt-get install zstd")
    directory = directory or cache_dir()
    key = hashlib.sha256(" ".join((FORMAT, SUITE, *ROOT_PACKAGES)).encode()).hexdigest()[:12]
    tarball = directory / f"debian-{SUITE}-{key}.tar.zst"
    if tarball.exists():
        return tarball
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session may be building it right now
        if not tarball.exists():
            _build_tarball(tarball)
            for stale in directory.glob(f"debian-{SUITE}-*.tar.zst"):
                if stale != tarball:
                    stale.unlink()
    return tarball


def _build_tarball(tarball: Path, *, timeout: float = DEBOOTSTRAP_TIMEOUT_S) -> None:
    if not shutil.which("debootstrap"):
        raise ContainerError("debootstrap is missing: apt-get install debootstrap")
    with tempfile.TemporaryDirectory(prefix="debootstrap-", dir=tarball.parent) as tmp:
        target = Path(tmp) / "root"
        try:
            _debootstrap(target, timeout)
            partial = Path(tmp) / tarball.name
            pack = (
                f"tar -C {target} --one-file-system --exclude=./var/cache/apt/archives/*.deb "
                f"--exclude=./dev/* -cf - . | zstd -q -T0 -o {partial}"
            )
            subprocess.run(["sh", "-c", pack], check=True, timeout=PACK_TIMEOUT_S)
            partial.rename(tarball)
        finally:
            # Before the temp dir is removed: never rmtree into a mounted /proc or /sys.
            unmount_under(target)


def _debootstrap(target: Path, timeout: float) -> None:
    # debootstrap mounts /proc and /sys in the target and unmounts them only if it ends by
    # itself. In its own mount and pid namespaces (root only: it needs root anyway), killed on
    # a timeout, it and its children die together and take their mounts along.
    command = [
        "debootstrap",
        "--variant=minbase",
        "--include=" + ",".join(ROOT_PACKAGES),
        SUITE,
        str(target),
        debian_mirror(),
    ]
    if os.geteuid() == 0 and shutil.which("unshare"):
        private = ["--mount", "--pid", "--fork", "--kill-child", "--propagation", "private"]
        command = ["unshare", *private, *command]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ContainerError(f"debootstrap took longer than {timeout:.0f} s") from exc
    if done.returncode != 0:
        raise ContainerError(f"debootstrap failed:\n{done.stdout[-3000:]}{done.stderr}")


def unmount_under(path: Path) -> list[str]:
    """Lazily unmount everything mounted at or below `path`, deepest first; what it unmounted."""
    prefix = str(path)
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        points = [line.split()[1].replace("\\040", " ") for line in mounts]
    inside = [p for p in points if p == prefix or p.startswith(prefix + "/")]
    for point in sorted(set(inside), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, timeout=30, check=False)
    return inside


class DebianRoot:
    """The cached root unpacked into a temp dir (~1 s): the shared read-only lower layer."""

    def __init__(self, tarball: Path | None = None, *, parent: Path | None = None) -> None:
        self._tmp = Path(tempfile.mkdtemp(prefix="sc-root-", dir=parent))
        self.path = self._tmp / "root"
        self.path.mkdir()
        tarball = tarball or root_tarball()
        unpack = f"zstd -q -d -c {tarball} | tar -C {self.path} -xf -"
        subprocess.run(["sh", "-c", unpack], check=True, timeout=UNPACK_TIMEOUT_S)

    def close(self) -> None:
        """Remove the unpacked root; idempotent."""
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> DebianRoot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SystemdContainer:
    """systemd 252 booted over `lower` + a fresh upper layer; a context manager that boots.

    `prepare(container)` runs just before boot: put files in with `copy_in`/`write_file`
    (they land in the upper layer) and add to `binds`, host paths bound read-only at the
    given absolute paths inside. Whatever fails, `close()` has cleaned up.
    """

    def __init__(
        self,
        lower: Path,
        *,
        prepare: Callable[[SystemdContainer], None] | None = None,
        binds: Sequence[tuple[Path, str]] = (),
        name: str = "satellite-test",
        boot_timeout: float = 30.0,
        parent: Path | None = None,
    ) -> None:
        self.lower = lower
        self.prepare = prepare
        self.binds = list(binds)
        self.name = name
        self.boot_timeout = boot_timeout
        self.workdir = Path(tempfile.mkdtemp(prefix="sc-run-", dir=parent))
        self.upper = self.workdir / "upper"
        self.console_log = self.workdir / "console.log"
        for sub in ("upper", "work", "merged"):
            (self.workdir / sub).mkdir()
        self.pid = 0
        self._cgroup: Path | None = None
        self._launcher: subprocess.Popen[bytes] | None = None
        self._console_fd = -1
        self._console_thread: threading.Thread | None = None
        self._closed = False

    # -- before boot -----------------------------------------------------------------------

    def copy_in(self, src: Path, dest: str, *, mode: int | None = None) -> Path:
        """Copy a host file (or tree) to `dest` in the container: the upper layer, or live."""
        target = self.path(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, symlinks=True, dirs_exist_ok=True)
        else:
            shutil.copy2(src, target)
        if mode is not None:
            target.chmod(mode)
        return target

    def write_file(self, dest: str, text: str, *, mode: int = 0o644) -> Path:
        """Write `text` to `dest` in the container (the upper layer before boot)."""
        target = self.path(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        target.chmod(mode)
        return target

    def path(self, inside: str) -> Path:
        """The host path of `inside`: in the upper layer before boot, /proc/PID/root after."""
        base = Path(f"/proc/{self.pid}/root") if self.pid else self.upper
        return base / inside.lstrip("/")

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Boot; returns once `systemctl is-system-running` says running (or degraded)."""
        try:
            # A service killed by SIGABRT (the watchdog) must not dump core through the host's
            # kernel.core_pattern, which may pipe to a helper running on the host.
            self.write_file("/etc/systemd/system.conf.d/50-test-container.conf", NO_CORE_DUMPS)
            if self.prepare is not None:
                self.prepare(self)
            self._launch()
            self.pid = self._wait_for_pid1()
            self.wait_for(self._booted, self.boot_timeout, what="systemd to finish booting")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Power off (SIGKILL after a bounded wait), remove our cgroup and temp dirs."""
        if self._closed:
            return
        self._closed = True
        try:
            self._power_off()
        finally:
            self._stop_console()
            self._remove_cgroup()
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> SystemdContainer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- driving it ------------------------------------------------------------------------

    def run(
        self, *args: str, timeout: float = 30.0, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the container (all its namespaces and root)."""
        if not self.pid:
            raise ContainerError("the container is not running")
        env = {"PATH": CONTAINER_PATH, "LANG": "C.UTF-8", "SYSTEMD_PAGER": "", "TERM": "dumb"}
        command = ["nsenter", "-t", str(self.pid), "-a", "-r", "-w", *args]
        done = subprocess.run(
            command,
            env=env,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise ContainerError(
                f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
            )
        return done

    def systemctl(
        self, *args: str, timeout: float = 30.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """`systemctl ARGS` inside."""
        return self.run("systemctl", "--no-pager", *args, timeout=timeout, check=check)

    def journalctl(
        self, *args: str, timeout: float = 30.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """`journalctl ARGS` inside, flushed first so recent lines are there."""
        self.run("journalctl", "--sync", check=False)
        return self.run("journalctl", "--no-pager", *args, timeout=timeout, check=check)

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        """`systemctl show -p ...` as a dict."""
        args = [arg for prop in properties for arg in ("-p", prop)]
        out = self.systemctl("show", *args, unit).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_for(
        self,
        predicate: Callable[[], T | None],
        timeout: float,
        *,
        what: str = "",
        step: float = 0.1,
    ) -> T:
        """Poll `predicate` until it returns a truthy value; ContainerError after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise ContainerError(f"timed out after {timeout} s waiting for {what or predicate}")
            time.sleep(step)

    # -- internals -------------------------------------------------------------------------

    def _launch(self) -> None:
        root = cgroup2_root()
        if root is None:
            raise ContainerError("no cgroup v2 hierarchy")
        _remove_stale_cgroups(root, self.name)
        self._cgroup = root / f"{self.name}-{uuid.uuid4().hex[:12]}"
        self._cgroup.mkdir()
        binds = self.workdir / "binds"
        binds.write_text("".join(f"{src}\t{dest}\n" for src, dest in self.binds), "utf-8")
        boot_id = self.workdir / "boot_id"
        boot_id.write_text(str(uuid.uuid4()) + "\n", encoding="utf-8")
        env = {
            "PATH": CONTAINER_PATH,
            "SC_CGROUP": str(self._cgroup),
            "SC_LOWER": str(self.lower),
            "SC_UPPER": str(self.upper),
            "SC_WORK": str(self.workdir / "work"),
            "SC_MERGED": str(self.workdir / "merged"),
            "SC_BINDS": str(binds),
            "SC_BOOT_ID": str(boot_id),
            "SC_NAME": self.name,
        }
        command = [
            "setpriv",
            # If the test process dies, unshare dies, and --kill-child takes the container.
            "--pdeathsig",
            "SIGKILL",
            "--bounding-set",
            BOUNDING_SET_DROP,
            "unshare",
            "--kill-child",
            "--pid",
            "--mount",
            "--uts",
            "--ipc",
            "--net",
            "--propagation",
            "private",
            "/bin/sh",
            str(INIT_SCRIPT),
            "stage1",
        ]
        master, slave = os.openpty()
        try:
            # A new session without a controlling tty: no SIGHUP reaches the launcher.
            self._launcher = subprocess.Popen(
                command,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env=env,
                start_new_session=True,
            )
        finally:
            os.close(slave)
        self._console_fd = master
        self._console_thread = threading.Thread(
            target=self._drain_console, name="container-console", daemon=True
        )
        self._console_thread.start()

    def _drain_console(self) -> None:
        with self.console_log.open("ab") as log:
            while self._console_fd >= 0:
                ready, _, _ = select.select([self._console_fd], [], [], 0.2)
                if not ready:
                    continue
                try:
                    chunk = os.read(self._console_fd, 65536)
                except OSError:  # EIO: every slave end is closed
                    return
                if not chunk:
                    return
                log.write(chunk)
                log.flush()

    def _stop_console(self) -> None:
        fd, self._console_fd = self._console_fd, -1
        if self._console_thread is not None:
            self._console_thread.join(2)
        if fd >= 0:
            os.close(fd)

    def console(self) -> str:
        """What systemd wrote to its console so far (boot messages, launcher errors)."""
        with contextlib.suppress(FileNotFoundError):
            return self.console_log.read_text(encoding="utf-8", errors="replace")
        return ""

    def _wait_for_pid1(self) -> int:
        launcher = self._launcher
        assert launcher is not None
        children = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children")

        def child() -> int | None:
            if launcher.poll() is not None:
                raise ContainerError(f"launcher exited {launcher.returncode}:\n{self.console()}")
            with contextlib.suppress(FileNotFoundError):
                pids = children.read_text(encoding="utf-8").split()
                if pids:
                    return int(pids[0])
            return None

        return self.wait_for(child, 10, what="the container's PID 1")

    def _booted(self) -> bool:
        if self._launcher is not None and self._launcher.poll() is not None:
            raise ContainerError(f"systemd exited during boot:\n{self.console()}")
        state = self.run("systemctl", "is-system-running", check=False, timeout=10).stdout
        return state.strip() in ("running", "degraded")

    def _same_pid_namespace(self, pid: int) -> bool:
        try:
            return os.readlink(f"/proc/{pid}/ns/pid") == os.readlink("/proc/self/ns/pid")
        except OSError:
            return True  # gone, or not ours to judge: never kill it

    def _power_off(self) -> None:
        launcher = self._launcher
        if launcher is None:
            return
        if self.pid and launcher.poll() is None:
            with contextlib.suppress(ContainerError, subprocess.TimeoutExpired):
                self.run("systemctl", "poweroff", "--no-block", check=False, timeout=10)
        try:
            launcher.wait(15)
        except subprocess.TimeoutExpired:
            # PID 1 of our namespace (checked: PIDs get reused); its death kills the rest.
            if self.pid and not self._same_pid_namespace(self.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
            launcher.kill()
            launcher.wait(10)
        self.pid = 0

    def _remove_cgroup(self) -> None:
        cgroup, self._cgroup = self._cgroup, None
        if cgroup is None or not cgroup.exists():
            return
        deadline = time.monotonic() + 3
        while True:
            try:
                _remove_cgroup_tree(cgroup)
                return
            except OSError:  # EBUSY while dying tasks are reaped
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def _remove_cgroup_tree(cgroup: Path) -> None:
    # Deepest first: systemd left init.scope, system.slice, ... below ours. A cgroup that
    # still holds a process refuses rmdir (EBUSY), so a live container is never touched.
    for path in sorted(cgroup.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir():
            with contextlib.suppress(FileNotFoundError):
                path.rmdir()
    with contextlib.suppress(FileNotFoundError):
        cgroup.rmdir()


def _remove_stale_cgroups(root: Path, name: str, min_age_s: float = 600) -> None:
    """Empty cgroups left by a test process that was killed (nothing could clean up)."""
    for stale in root.glob(f"{name}-*"):
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > min_age_s:
                _remove_cgroup_tree(stale)
