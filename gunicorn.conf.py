"""gunicorn settings, shared by the Procfile, the Dockerfile, scripts/run.sh and the benchmarks.

Metrics stay right across workers: PROMETHEUS_MULTIPROC_DIR is set before any worker imports the app (a
fresh folder if the environment gives none), cleaned of the metric files of a previous run when the server
starts, and a worker's live gauges are dropped when it exits (``child_exit``).

Slow clients cost nothing: the workers are gevent's (``worker_class = "gevent"``), where a connection is a
greenlet of a few kilobytes, not a thread. A client that trickles its headers, lingers after ``Connection:
close``, reads its answer slowly or stalls its body holds its own greenlet only, while ``/health`` and the
other requests are answered. gunicorn's async worker reads each request's headers within ``keepalive``
seconds (5) or closes the connection, and closes a connection without waiting on the client; the app answers
408 to a body not whole within BODY_TIMEOUT_SECONDS (src/web/body_guard.py); a worker holds up to
``worker_connections`` connections. The CPU work of a large body (thousands of students) runs in a small pool
of native threads per worker (src/web/body_guard.py ``HeavyWork``), so the event loop keeps answering
meanwhile. Production puts Elastic Beanstalk's nginx in front as well (.platform/nginx); these workers make
the run command hold the same way without it.

The access log escapes control characters, quotes and backslashes in every field (``\\r``, ``\\n``, ``\\x00``,
``\\"``): a path sent as ``%0d%0a...`` cannot write a line of its own. No control socket is opened: gunicorn's
default one is a single path for every server of the user, which one server's exit removes for all.

Only the files this program creates are ever deleted: prometheus_client's ``<type>_<pid>.db`` files and the
app's shared drift window (``drift/``). A configured folder that holds anything else is refused at start,
with a message naming what was found, and nothing in it is touched. A folder created here is removed, with
its files, when the server exits.
"""

import multiprocessing
import os
import re
import tempfile
from pathlib import Path

from gunicorn.glogging import Logger

# prometheus_client's multiprocess files: counter_<pid>.db, gauge_livesum_<pid>.db, histogram_<pid>.db ...
METRIC_FILE = re.compile(r"(counter|summary|histogram|gauge_(live)?(all|min|max|sum|mostrecent))_\d+\.db")
# The drift window the app keeps in <folder>/drift (src/monitoring/window.py), and its file being resized.
DRIFT_FOLDER = "drift"
DRIFT_FILE = re.compile(r"drift-window\.(bin|lock)|\.drift-window\.bin\.\d+\.tmp")


class ForeignFilesError(RuntimeError):
    """The metrics folder holds files this program did not create: it will not clean it."""


def own_entries(folder: Path) -> list[Path]:
    """The files in ``folder`` this program created; ForeignFilesError naming the others if there are any."""
    own: list[Path] = []
    foreign: list[str] = []
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and not entry.is_symlink() and METRIC_FILE.fullmatch(entry.name):
            own.append(entry)
        elif entry.name == DRIFT_FOLDER and entry.is_dir() and not entry.is_symlink():
            for inner in sorted(entry.iterdir()):
                if inner.is_file() and not inner.is_symlink() and DRIFT_FILE.fullmatch(inner.name):
                    own.append(inner)
                else:
                    foreign.append(f"{DRIFT_FOLDER}/{inner.name}")
        else:
            foreign.append(entry.name + ("/" if entry.is_dir() else ""))
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise ForeignFilesError(
            f"PROMETHEUS_MULTIPROC_DIR={folder} holds files this server did not create ({shown}); refusing to "
            "start rather than clean it. Point PROMETHEUS_MULTIPROC_DIR at an empty folder of its own, or leave "
            "it unset for a fresh temporary one."
        )
    return own


def clean(folder: Path) -> int:
    """Delete this program's files in ``folder`` (refusing a folder with foreign files); return how many."""
    own = own_entries(folder)
    for path in own:
        path.unlink(missing_ok=True)
    drift = folder / DRIFT_FOLDER
    if drift.is_dir() and not any(drift.iterdir()):
        drift.rmdir()
    return len(own)


# Which folder was created here, and by which master: it alone removes it at exit. Kept in the environment,
# as gunicorn may read this file more than once.
CREATED = "STUDENT_MATH_METRICS_CREATED"
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="student-math-metrics-")
    os.environ[CREATED] = f"{os.getpid()}:{os.environ['PROMETHEUS_MULTIPROC_DIR']}"

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY") or multiprocessing.cpu_count())


# gevent's workers: gunicorn monkey-patches each worker as it boots (sockets, threads, sleeps), before it imports
# the app. The background work (src/periodic.py) then runs as greenlets; heavy parses in native threads.
worker_class = "gevent"
worker_connections = int(os.environ.get("WORKER_CONNECTIONS") or 1000)
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5  # seconds for an idle connection's next request, and for each request's headers to arrive whole
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
# The request line without its query: a result page's query holds a student's details.
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(f)s" "%(a)s"'
errorlog = "-"
control_socket_disable = True
_UNSAFE = re.compile(r'[\x00-\x1f\x7f-\x9f"\\\u2028\u2029]')


def _escaped(match: re.Match) -> str:
    char = match.group()
    return "\\" + char if char in '"\\' else f"\\x{ord(char):02x}" if ord(char) < 256 else f"\\u{ord(char):04x}"


def escape_log_field(value: str) -> str:
    """A field of the access log on one line: control characters, quotes and backslashes escaped."""
    return _UNSAFE.sub(_escaped, value)


class AccessLogger(Logger):
    """gunicorn's logger, with every text field of an access log line escaped (paths are decoded: %0d%0a is CR LF)."""

    def atoms(self, resp, req, environ, request_time):
        return {
            key: escape_log_field(value) if isinstance(value, str) else value
            for key, value in super().atoms(resp, req, environ, request_time).items()
        }


logger_class = AccessLogger


# The libraries every worker imports, imported once in the master: the forked workers share these pages
# copy-on-write instead of each holding its own copy, and gc.freeze() keeps the collector from touching them.
# The answer's compiled arithmetic (src.answers.kernels) is compiled, or loaded from numba's cache, here too, so
# the workers share its machine code. Nothing else is built here (each worker still builds its own app, model,
# metrics and threads), and nothing that touches prometheus_client is imported: its multiprocess values belong
# to the workers.
SHARED_IMPORTS = (
    "numpy",
    "pandas",
    "scipy.sparse",
    "sklearn.compose",
    "sklearn.linear_model",
    "sklearn.ensemble",
    "sklearn.neighbors",
    "sklearn.preprocessing",
    "sklearn.pipeline",
    "sklearn.impute",
    "dill",
    "flask",
    "jinja2",
    "orjson",
    "src.answers.model",
)


def _share_imports():
    import gc
    import importlib

    for name in SHARED_IMPORTS:
        importlib.import_module(name)
    importlib.import_module("src.answers.kernels").warm_up()
    importlib.import_module("src.json_scan").warm_up()
    gc.freeze()


def on_starting(server):
    """Start from empty metric files: values of a previous server run must not be added to this one's."""
    folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    try:
        removed = clean(folder)
    except ForeignFilesError as err:
        server.log.error("%s", err)
        raise SystemExit(f"Error: {err}") from None
    if removed:
        server.log.info("removed %d metric files of a previous run from %s", removed, folder)
    _share_imports()


def post_worker_init(worker):
    """The worker's background threads start as it boots, not at its first request.

    The interpreter lock passes between threads every millisecond rather than every 5: while a large body's work
    runs in its native thread, the event loop (``/health``, every small request) waits that long for each turn."""
    import sys

    from src.periodic import start_app_background

    sys.setswitchinterval(0.001)
    start_app_background(worker.wsgi)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """Remove the temporary metrics folder this configuration created (a configured one is left as it is)."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder or os.environ.get(CREATED) != f"{os.getpid()}:{folder}":
        return
    try:
        clean(Path(folder))
        Path(folder).rmdir()
    except (ForeignFilesError, OSError) as err:
        server.log.warning("left the metrics folder %s in place: %s", folder, err)


def worker_exit(server, worker):
    """Past this point the worker's interpreter shuts down, and gevent's modules go before some logging handlers:
    each such handler, collected last, reaches logging's lock (made gevent's by the patching) and prints a
    "TypeError ... Exception ignored" traceback about a lock that no one holds any more. That one error alone is
    dropped; every other error at exit is reported as usual."""
    import sys

    default = sys.unraisablehook

    def hook(unraisable):
        if isinstance(unraisable.exc_value, TypeError) and getattr(unraisable.object, "__name__", "") == (
            "_removeHandlerRef"
        ):
            return
        default(unraisable)

    sys.unraisablehook = hook
