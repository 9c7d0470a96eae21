"""A throw-away PostgreSQL cluster of a test's own, for tests that stop, restart or break the server.

The server that scripts/postgres.sh starts in .pg/ is shared by every PostgreSQL test of the session:
a test that stopped it would leave the rest of the run without a server. `PrivateCluster` never
touches it. It finds the PostgreSQL programs the way scripts/postgres.sh does (`postgres.sh bin`,
which installs Debian's package when they are missing), runs `initdb` into a fresh directory under
/tmp with its own unix socket directory and port (no TCP), and every start and restart waits until
a real connection answers, within a timeout. As root, every server command runs as the `postgres`
user (PostgreSQL refuses to run as root), as in scripts/postgres.sh.

    cluster = PrivateCluster.create()      # initdb, start, CREATE DATABASE, alembic upgrade head
    try:
        cluster.restart()                  # pg_ctl restart -w, then a connection must succeed
        cluster.stop(); cluster.start()
    finally:
        cluster.destroy()                  # stop, whatever state it is in, and remove the directory
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
DB = "promo_faults"
START_TIMEOUT = 60      # seconds pg_ctl waits for the server to start or stop
READY_TIMEOUT = 60      # seconds to wait, after pg_ctl, for a connection that answers


class ClusterError(RuntimeError):
    """The private cluster could not be created, started or stopped; the message holds its log's tail."""


def _as_owner() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _superuser() -> str:
    if os.geteuid() == 0:
        return "postgres"
    import pwd
    return pwd.getpwuid(os.geteuid()).pw_name


def postgres_bin() -> Path:
    """The directory of initdb and pg_ctl, found (and installed when missing) by scripts/postgres.sh."""
    done = subprocess.run([str(ROOT / "scripts" / "postgres.sh"), "bin"], capture_output=True, text=True,
                          timeout=900)
    if done.returncode != 0 or not done.stdout.strip():
        raise ClusterError(f"scripts/postgres.sh bin failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


class PrivateCluster:
    def __init__(self, bin_dir: Path, root: Path, port: int):
        self.bin = bin_dir
        self.root = root
        self.data = root / "data"
        self.sockets = root / "run"
        self.log = root / "server.log"
        self.port = port
        self.user = _superuser()

    @staticmethod
    def create() -> "PrivateCluster":
        """A new cluster, started, with the ledger's tables migrated into database promo_faults."""
        bin_dir = postgres_bin()
        # /tmp keeps the socket path well inside its 107-byte limit, and the postgres user can reach it.
        root = Path(tempfile.mkdtemp(prefix="promo-faults-pg-"))
        cluster = PrivateCluster(bin_dir, root, random.randint(20000, 60000))
        try:
            cluster.sockets.mkdir()
            if os.geteuid() == 0:
                shutil.chown(root, "postgres")
                shutil.chown(cluster.sockets, "postgres")
            cluster._run("initdb", "-D", str(cluster.data), "-U", cluster.user, "--auth=trust", "--encoding=UTF8",
                         "--no-locale")
            cluster.start()
            with psycopg.connect(cluster.conninfo("postgres"), autocommit=True, connect_timeout=5) as conn:
                conn.execute(f"CREATE DATABASE {DB}")
            from engine.ledger.store import make_engine, migrate
            engine = make_engine(cluster.url)
            migrate(engine)
            engine.dispose()
        except BaseException:
            cluster.destroy()
            raise
        return cluster

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{self.user}@/{DB}?host={self.sockets}&port={self.port}"

    def conninfo(self, database: str = DB) -> str:
        return f"host={self.sockets} port={self.port} user={self.user} dbname={database}"

    def start(self) -> None:
        """Start the server (nothing to do when it runs) and wait until a connection answers."""
        if not self.running():
            # Unix socket only; room for the burst's connections. Commits are flushed as usual
            # (synchronous_commit stays on): a restart must not lose what the ledger reported committed.
            self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", str(START_TIMEOUT), "start",
                      "-o", f"-c listen_addresses='' -c unix_socket_directories='{self.sockets}' -c port={self.port} "
                            "-c max_connections=100 -c fsync=off")
        self.wait_ready()

    def stop(self, mode: str = "fast") -> None:
        if self.running():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", str(START_TIMEOUT), "stop")

    def restart(self) -> None:
        """`pg_ctl restart -w` (fast: open connections are cut, as in a deploy), then a real connection."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-m", "fast", "-w", "-t", str(START_TIMEOUT),
                  "restart")
        self.wait_ready()

    def running(self) -> bool:
        return subprocess.run([*_as_owner(), str(self.bin / "pg_ctl"), "-D", str(self.data), "status"],
                              capture_output=True, timeout=30).returncode == 0

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """pg_ctl -w says the postmaster accepts connections; this waits until one is served a query."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.conninfo("postgres"), connect_timeout=2) as conn:
                    conn.execute("SELECT 1").fetchone()
                return
            except psycopg.Error as exc:
                if time.monotonic() > deadline:
                    raise ClusterError(f"no connection to the private cluster after {timeout} s: {exc}\n"
                                       f"{self._log_tail()}") from None
                time.sleep(0.1)

    def destroy(self) -> None:
        """Stop the server whatever state it is in and remove its directory: a fast stop, else an
        immediate one, else SIGKILL to the postmaster this cluster started (by the pid in its own
        postmaster.pid). Never a process found by name."""
        try:
            for mode in ("fast", "immediate"):
                try:
                    if not (self.data.exists() and self.running()):
                        return
                    self.stop(mode)
                    return
                except (ClusterError, subprocess.TimeoutExpired):
                    continue
            pid_file = self.data / "postmaster.pid"
            if pid_file.exists():
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run([*_as_owner(), str(self.bin / program), *args], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=START_TIMEOUT + 30)
        if done.returncode != 0:
            raise ClusterError(f"{program} {' '.join(args)} failed ({done.returncode}): "
                               f"{(done.stdout + done.stderr).strip()[-2000:]}\n{self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return "server log:\n" + "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
        except OSError:
            return "(no server log)"
