"""A throwaway PostgreSQL cluster for the test suite and CI.

`start()` runs initdb into a fresh temporary directory, starts the server on a free
127.0.0.1 port with durability switched off (tests never need it), creates the
`funnelbot_test` role and database, and returns `(url, stop)`. PostgreSQL refuses to run
as root, so when we are root the binaries run as the `postgres` user through
`runuser -u postgres --`; otherwise they run as the current user.

CLI (used by `.ci/run`):

    python tests/pgcluster.py start        # line 1: the URL, line 2: the cluster directory
    python tests/pgcluster.py stop <dir>   # the directory printed by `start`
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

DATABASE = "funnelbot_test"
SUPERUSER = "postgres"
RUN_AS = "postgres"  # the OS user the server runs as when we are root
STATE_FILE = "cluster.json"


class ClusterError(RuntimeError):
    """PostgreSQL could not be found, initialised, started or stopped."""


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path)) or (0,)


def find_bindir() -> Path:
    """The directory holding initdb/pg_ctl: $PG_BINDIR, pg_config, Debian's layout, PATH."""
    candidates: list[str] = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(os.environ["PG_BINDIR"])
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=30
            )
            candidates.append(out.stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    candidates.extend(
        sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    )
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(os.path.dirname(initdb))
    for cand in candidates:
        if cand and all(os.access(os.path.join(cand, b), os.X_OK) for b in ("initdb", "pg_ctl")):
            return Path(cand)
    raise ClusterError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: install the `postgresql` "
        "package or set PG_BINDIR (looked in: " + ", ".join(candidates or ["nothing"]) + ")"
    )


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _as_server_user(argv: Sequence[str]) -> list[str]:
    if _is_root():
        runuser = shutil.which("runuser") or "/usr/sbin/runuser"
        return [runuser, "-u", RUN_AS, "--", *argv]
    return list(argv)


def _run(argv: Sequence[str], *, timeout: float = 120) -> str:
    proc = subprocess.run(
        list(argv),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise ClusterError(
            f"{' '.join(argv)} failed with exit code {proc.returncode}:\n"
            f"{proc.stdout}\n{proc.stderr}".rstrip()
        )
    return proc.stdout


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chown_tree(root: Path) -> None:
    import pwd

    entry = pwd.getpwnam(RUN_AS)
    for dirpath, dirnames, filenames in os.walk(root):
        os.chown(dirpath, entry.pw_uid, entry.pw_gid)
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), entry.pw_uid, entry.pw_gid)


def url_for(port: int, database: str = DATABASE) -> str:
    return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{port}/{database}"


def _server_options(port: int, sockdir: Path) -> str:
    return (
        f"-p {port} -k {sockdir} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )


def start(*, base_dir: str | os.PathLike[str] | None = None) -> tuple[str, Callable[[], None]]:
    """Initialise and start a cluster; return its SQLAlchemy URL and a function that stops it."""
    url, root = start_cluster(base_dir=base_dir)
    return url, lambda: stop(root)


def start_cluster(*, base_dir: str | os.PathLike[str] | None = None) -> tuple[str, Path]:
    """Like `start`, but return the cluster's directory (what `stop` takes) instead."""
    bindir = find_bindir()
    root = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="funnelbot-pg-"))
    data, sockdir, log = root / "data", root / "sock", root / "server.log"
    sockdir.mkdir(parents=True, exist_ok=True)
    if _is_root():
        _chown_tree(root)
    try:
        _run(
            _as_server_user(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    SUPERUSER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            )
        )
        port = _start_server(bindir, data, sockdir, log)
        psql = [str(bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1"]
        psql += ["-h", "127.0.0.1", "-p", str(port), "-U", SUPERUSER, "-d", "postgres"]
        _run([*psql, "-c", f"CREATE ROLE {DATABASE} LOGIN SUPERUSER"])
        _run([*psql, "-c", f"CREATE DATABASE {DATABASE}"])
    except BaseException:
        with contextlib.suppress(ClusterError):
            stop(root)
        raise
    url = url_for(port)
    (root / STATE_FILE).write_text(
        json.dumps({"url": url, "port": port, "data": str(data), "bindir": str(bindir)})
    )
    return url, root


def _start_server(bindir: Path, data: Path, sockdir: Path, log: Path) -> int:
    last: ClusterError | None = None
    for _ in range(3):  # a free port can be taken between probing and binding it
        port = free_port()
        try:
            _run(
                _as_server_user(
                    [
                        str(bindir / "pg_ctl"),
                        "-D",
                        str(data),
                        "-l",
                        str(log),
                        "-o",
                        _server_options(port, sockdir),
                        "-w",
                        "-t",
                        "60",
                        "start",
                    ]
                )
            )
            return port
        except ClusterError as exc:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            last = ClusterError(f"{exc}\n--- server.log ---\n{tail}")
    assert last is not None
    raise last


def _cluster_root(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    return p.parent if p.name == "data" and not (p / "data").exists() else p


def stop(path: str | os.PathLike[str]) -> None:
    """Stop the cluster in `path` (its root or its data directory) and delete its files."""
    root = _cluster_root(path)
    data = root / "data"
    if (data / "postmaster.pid").exists():
        bindir = find_bindir()
        state = root / STATE_FILE
        if state.exists():
            bindir = Path(json.loads(state.read_text()).get("bindir") or bindir)
        _run(_as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]))
    shutil.rmtree(root, ignore_errors=True)


def _state(root: Path) -> dict[str, object]:
    state = root / STATE_FILE
    if not state.exists():
        raise ClusterError(f"{root} holds no cluster started by this module")
    return json.loads(state.read_text())


def stop_server(path: str | os.PathLike[str]) -> None:
    """Stop the server of the cluster in `path` (fast shutdown: open sessions are cut off)
    and keep its files, so `start_server` can bring it back: a database outage."""
    root = _cluster_root(path)
    state = _state(root)
    data = Path(str(state["data"]))
    _run(
        _as_server_user(
            [
                str(Path(str(state["bindir"])) / "pg_ctl"),
                "-D",
                str(data),
                "-m",
                "fast",
                "-w",
                "stop",
            ]
        )
    )


def start_server(path: str | os.PathLike[str]) -> None:
    """Start a cluster stopped by `stop_server` again, on the same port: its URL holds."""
    root = _cluster_root(path)
    state = _state(root)
    data, port = Path(str(state["data"])), int(str(state["port"]))
    _run(
        _as_server_user(
            [
                str(Path(str(state["bindir"])) / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(root / "server.log"),
                "-o",
                _server_options(port, root / "sock"),
                "-w",
                "-t",
                "60",
                "start",
            ]
        )
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["start"] and len(args) == 1:
        try:
            url, root = start_cluster()
        except ClusterError as exc:
            print(exc, file=sys.stderr)
            return 1
        print(url)
        print(root)
        return 0
    if args[:1] == ["stop"] and len(args) == 2:
        try:
            stop(args[1])
        except ClusterError as exc:
            print(exc, file=sys.stderr)
            return 1
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
