"""Private state directories of the emulated hosts: folders, users, mounts, hand-back.

Every host has a state directory of its own: processes on host h see it at one fixed
path, the state path (`NetworkConfig.host_state_dir`, `/var/lib/fl-crb`, the same on
every host, as on a real machine), and the emulator reads it during and after the run at
`<hosts_dir>/h` (`RUN/hosts/h` when the run folder's `hosts` is given; otherwise the run
slot's temporary folder `<state dir>/slot-<n>-hosts`, removed at stop). `<hosts_dir>/h`
belongs to the host's own user (`host_uid`, one unprivileged user per host and run slot)
with mode 0700; at stop every file under `<hosts_dir>` is handed back to root. How it
works, measured on this machine (Mininet 2.3.0, util-linux 2.38, kernel 6.18):

- `mnexec -n`, which starts every host's shell, unshares the mount namespace as well as
  the network one and marks `/` recursively private: each host shell's `/proc/PID/ns/mnt`
  differs from the root namespace's and from every other host's, and a tmpfs mounted in
  one host shows in neither the root namespace's mountinfo nor another host's.
- `mnexec -a PID` (what `Host.popen` and `MininetPlacement.command` use) enters PID's
  mount namespace too (setns; chroot into `/proc/PID/root` only if that fails): its
  `/proc/self/ns/mnt` is the host shell's.
- So inside each host its configuration script (`mount_commands`) bind-mounts
  `<hosts_dir>/h` on the state path, then mounts an empty read-only tmpfs over
  `<hosts_dir>` (after the bind, which keeps the directory it already holds): the backing
  folders of every host, its own included, are hidden there; the rest of the run folder
  stays visible. Nothing is mounted in the root namespace, and a host's mounts go with its
  namespace when Mininet stops its shell: teardown leaves the root mountinfo as it was.
- Mininet's own `Host(privateDirs=[...])` does the same (a tmpfs per string entry, a bind
  mount of `dir % host.__dict__` per `(mountpoint, dir)` tuple, in list order, through
  the host shell), but ignores a failed mount; the configuration script fails the build.
- Mounts alone do not fence off a root process. Measured from a root process on t2: it
  unmounts the tmpfs (its host's namespace is its own) and reads t1's state through
  `/proc/<pid of any process on t1>/root/var/lib/fl-crb/...` (every host shares the
  process-id namespace). A process started as the host's own user
  (`MininetPlacement.confined_command`: no capabilities, no new privileges) can do none of
  that, since the state directories are 0700 and `/proc/PID/root` of another user's
  process needs CAP_SYS_PTRACE. The parties of today's runs still run as root through
  `command` and share the run folder.

The hosts' users run the code from where it is installed. When a folder above it is
closed to other users (a `mktemp -d` clone is 0700), `code_exposure_commands` opens it
inside each host's mount namespace: a tmpfs over the closed folder with the code bound
back at its own paths, nothing copied. Measured for a checkout with its venv inside a
0700 folder: 9 shell lines per host, 32 ms per host (about 1 s for four-edge's 30 hosts,
which configure in parallel). Outside the hosts nothing changes.

A killed run leaves its hosts' folders behind, some of their files owned by the host
users. The emulator records `<hosts_dir>` in the run slot's state (`RunState.hosts_dir`)
before it creates any of them, and `clean_after_killed_run` (part of
`teardown.cleanup_slot`, so of `fl-crb netcheck --cleanup` and of the next run on the
slot) removes the slot's temporary folder and hands a kept `RUN/hosts` back to root.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import sys
from pathlib import Path

HOST_UID_BASE = 1_700_000_000
"""User and group id of slot 0's first host: far above ordinary users (1000-60000) and
the subordinate ids container tools hand out (100000 onwards, 65536 per user)."""
UIDS_PER_SLOT = 1000
"""User ids reserved per run slot, one per host."""
HIDING_TMPFS = "fl-crb-private"
"""Source name of the read-only tmpfs that hides `<hosts_dir>` inside every host."""
CODE_TMPFS, CODE_STASH_TMPFS = "fl-crb-code", "fl-crb-code-stash"
"""Source names of the tmpfs that replaces a closed folder above the code inside every
host, and of the one that holds the code for a moment meanwhile
(`code_exposure_commands`)."""


class HostStateError(ValueError):
    """The hosts' state directories cannot be laid out as asked; the message says why."""


class HostStateDirs:
    """The private state directories of one run's hosts; see the module docstring."""

    def __init__(
        self,
        slot: int,
        hosts: list[str],
        state_path: Path,
        hosts_dir: Path | None,
        state_dir: Path,
        code: list[Path] | None = None,
    ) -> None:
        """Lay out the directories of `hosts` (topology order) in run slot `slot`: seen
        at `state_path` on every host, backed by `hosts_dir` (None: the slot's temporary
        folder under `state_dir`), with the code in `code` (None: `code_roots()`) open to
        the hosts' users. Nothing is created until `create`."""
        if len(hosts) > UIDS_PER_SLOT:
            raise HostStateError(
                f"the topology has {len(hosts)} hosts; the emulator gives at most "
                f"{UIDS_PER_SLOT} hosts a user of their own"
            )
        self.temporary = hosts_dir is None
        """Whether `hosts_dir` is the slot's temporary folder, removed at stop."""
        self.hosts_dir = hosts_dir or temporary_hosts_dir(state_dir, slot)
        """Backing folder: `<hosts_dir>/<host>` is each host's state directory."""
        self.state_path = state_path
        """Where every process on a host sees that host's state directory."""
        if self.hosts_dir.is_relative_to(state_path) or state_path.is_relative_to(self.hosts_dir):
            raise HostStateError(
                f"host_state_dir {state_path} and the hosts' folder {self.hosts_dir} must not "
                "contain each other: the state path is mounted over, and the hosts' folder hidden"
            )
        self._uids = {name: host_uid(slot, index) for index, name in enumerate(hosts)}
        self.code = code_roots() if code is None else code
        """The folders every host's processes run code from (`code_roots`)."""

    def uid(self, host: str) -> int:
        """User and group id that owns `host`'s state directory."""
        return self._uids[host]

    def backing_dir(self, host: str) -> Path:
        """`host`'s state directory as the root namespace sees it: `<hosts_dir>/<host>`."""
        return self.hosts_dir / host

    def create(self) -> None:
        """`<hosts_dir>/<host>` for every host, owned by the host's user, mode 0700, and
        the (empty) mount point of the state path in the root file system."""
        self.hosts_dir.mkdir(parents=True, exist_ok=True)
        self.state_path.mkdir(parents=True, exist_ok=True)
        for host, uid in self._uids.items():
            backing = self.backing_dir(host)
            backing.mkdir(exist_ok=True)
            os.chown(backing, uid, uid)
            backing.chmod(0o700)

    def mount_commands(self, host: str) -> list[str]:
        """Shell lines, run in `host`'s mount namespace, that show its state directory at
        the state path, hide every host's backing folder and open the code to the host's
        user (`code_exposure_commands`)."""
        backing = shlex.quote(str(self.backing_dir(host)))
        state = shlex.quote(str(self.state_path))
        hosts_dir = shlex.quote(str(self.hosts_dir))
        return [
            f"mount --bind {backing} {state}",
            f"mount -t tmpfs -o ro,mode=0555,size=4k {HIDING_TMPFS} {hosts_dir}",
            *code_exposure_commands(self.code, self.state_path),
        ]

    def hand_back(self) -> None:
        """Give every file under `hosts_dir` to root (once the hosts' processes are gone)."""
        hand_back_to_root(self.hosts_dir)

    def remove(self) -> None:
        """Delete the temporary backing folder (a kept `RUN/hosts` is never removed)."""
        if self.temporary and self.hosts_dir.exists():
            shutil.rmtree(self.hosts_dir)


def code_roots() -> list[Path]:
    """The folders every host's processes run code from: the project's packages (`fl_crb`
    and `emulation`: a checkout's folders under an editable install, whose finder maps
    each package to its folder; or site-packages' own), the Python environment
    (`sys.prefix`: its interpreter, console scripts, packages) and the Python it is made
    from (`sys.base_prefix`). The packages, not the checkout: a `mktemp -d` clone is
    itself the closed folder, which only its children bound back can open."""
    import emulation
    import fl_crb

    packages = [Path(package.__file__).resolve().parent for package in (fl_crb, emulation)]
    return [*packages, Path(sys.prefix), Path(sys.base_prefix)]


def closed_ancestor(folder: Path) -> Path | None:
    """The outermost folder above `folder` that users other than its owner cannot
    enter (no o+x), or None."""
    closed = [f for f in folder.parents if f.is_dir() and not f.stat().st_mode & stat.S_IXOTH]
    return closed[-1] if closed else None


def code_exposure_commands(roots: list[Path], stash: Path) -> list[str]:
    """Shell lines, run as root in a host's own mount namespace, that let any user reach
    the code in `roots` at its own paths, with nothing else of the folders around it.

    A root under a closed folder (a `mktemp -d` clone is 0700) cannot be run by the host's
    user. So, for each outermost closed folder C above a root: the roots under C are
    bound, recursively (with what is mounted in them, the hiding tmpfs included), onto
    the folders of a tmpfs mounted for the moment on `stash` (the state path: its own
    bind stays beneath); a tmpfs (0755, then read-only) is mounted over C; each root gets
    its folder path in it and is bound back there; the stash goes. Paths are unchanged
    (console scripts' `#!` lines, an editable install's finder, `sys.prefix`), files keep
    their owners and modes, and C's other contents stay out of sight. The root namespace
    holds none of it. No lines when no root lies under a closed folder."""
    under: dict[Path, list[Path]] = {}
    for root in roots:
        closed = closed_ancestor(root)
        if closed is not None:
            under.setdefault(closed, []).append(root)
    for closed, roots_under in under.items():  # a root inside another comes with it
        under[closed] = [
            root for root in dict.fromkeys(roots_under)
            if not any(root != other and root.is_relative_to(other) for other in roots_under)
        ]  # fmt: skip
    if not under:
        return []
    q = shlex.quote
    exposed = [root for roots_under in under.values() for root in roots_under]
    lines = [f"mount -t tmpfs -o mode=0700,size=4k {CODE_STASH_TMPFS} {q(str(stash))}"]
    for index, root in enumerate(exposed):
        lines += [f"mkdir {q(str(stash / str(index)))}",
                  f"mount --rbind {q(str(root))} {q(str(stash / str(index)))}"]  # fmt: skip
    for closed in under:
        lines.append(f"mount -t tmpfs -o mode=0755,size=4k {CODE_TMPFS} {q(str(closed))}")
    for index, root in enumerate(exposed):
        lines += [f"mkdir -p {q(str(root))}",
                  f"mount --rbind {q(str(stash / str(index)))} {q(str(root))}"]  # fmt: skip
    lines += [f"mount -o remount,bind,ro {q(str(closed))}" for closed in under]
    lines += [f"umount -R {q(str(stash / str(index)))}" for index in range(len(exposed))]
    lines.append(f"umount {q(str(stash))}")
    return lines


def host_uid(slot: int, host_index: int) -> int:
    """User and group id of the host at `host_index` (topology order) in run slot `slot`."""
    return HOST_UID_BASE + slot * UIDS_PER_SLOT + host_index


def temporary_hosts_dir(state_dir: Path, slot: int) -> Path:
    """Backing folder of slot `slot`'s hosts when the run keeps none in its run folder."""
    return state_dir / f"slot-{slot}-hosts"


def hand_back_to_root(root: Path) -> int:
    """Give every file under `root` not yet root's to user and group 0 (symbolic links
    themselves, never what they point to); returns how many were handed back."""
    handed = 0
    for directory, subdirs, files in os.walk(root):
        for name in [*subdirs, *files]:
            path = os.path.join(directory, name)
            owner = os.lstat(path)
            if owner.st_uid != 0 or owner.st_gid != 0:
                os.lchown(path, 0, 0)
                handed += 1
    return handed


def clean_after_killed_run(slot: int, recorded_hosts_dir: str | None, state_dir: Path) -> list[str]:
    """Remove slot `slot`'s temporary backing folder and hand `recorded_hosts_dir` (what
    the killed run recorded, None if nothing) back to root; one line per thing done.
    Call only while no process of the killed run's hosts lives."""
    done = []
    temporary = temporary_hosts_dir(state_dir, slot)
    if temporary.exists():
        shutil.rmtree(temporary)
        done.append(f"slot {slot}: removed the hosts' state directories in {temporary}")
    kept = Path(recorded_hosts_dir) if recorded_hosts_dir is not None else None
    if kept is not None and kept != temporary and kept.is_dir():
        handed = hand_back_to_root(kept)
        if handed:
            done.append(f"slot {slot}: handed {handed} files in {kept} back to root")
    return done
