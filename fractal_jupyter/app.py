"""The `fractal` Jupyter server extension app: configuration, handlers, start and stop."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.extension.application import ExtensionApp
from jupyter_server.extension.handler import ExtensionHandlerMixin
from jupyter_server.utils import url_path_join
from tornado import web
from traitlets import Bool, Dict, Enum, Float, Integer, List, Set, TraitError, Unicode, default
from traitlets.config.loader import ArgumentError

from ._version import __version__
from .configuration import (
    CHECK_ATTEMPT_SECONDS,
    ConfigurationError,
    check_outside_world,
    configuration_layers,
    invalid_settings,
    login_node_problem,
    settings_problems,
)
from .db.probe import nothing_under_way, postgres_dsn, postgres_nothing_under_way
from .file_modes import make_private_dir
from .file_watch import FileWatch, watch_files
from .handlers.dispatch import PREFIX_PATTERN, HandlerSpec, LazyRoutes
from .handlers.limits import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_IMPORT_BODY_BYTES,
    DEFAULT_MAX_WHEEL_UPLOAD_BYTES,
    read_long_headers,
)
from .runner.files import DOORBELL_FILE
from .runner.heartbeat import HEARTBEAT_SECONDS, HEARTBEAT_TIMEOUT_SECONDS
from .runner.launcher import JobLauncher, this_runner
from .runner.placement import SlurmPlacement
from .runner.resources import usable_cpus
from .runner.settings import Backend, RunnerSettings, SlurmSettings
from .tokens import TokenSigner, hub_access_scopes

# Everything below (SQLAlchemy, the models, schemas, services and handlers) loads with the
# first Fractal request, or at start-up when the database has work under way (`fractal_state`).
if TYPE_CHECKING:
    from .db.engine import ConnectionSettings, Database
    from .services.task_collection import TaskCollector
    from .state import FractalState


class FractalJupyter(ExtensionApp):
    """Fractal's v2 API inside a Jupyter server, under `<base_url>fractal/`."""

    name = "fractal"
    description = "Run Fractal bioimage-analysis workflows from Jupyter."
    version = __version__
    extension_url = "/fractal/api/alive/"
    load_other_extensions = True
    subcommands = {  # noqa: RUF012 (traitlets reads it from the class)
        "token": (
            "fractal_jupyter.token_command.TokenApp",
            "Print a bearer token for the `fractal` CLI, or write it where the CLI reads it.",
        ),
        "config": (
            "fractal_jupyter.config_command.ConfigApp",
            "`jupyter fractal config check`: every FractalJupyter setting, its value and "
            "where it comes from, and the start-up checks; exits non-zero on any problem.",
        ),
        "status": (
            "fractal_jupyter.cli.status.StatusApp",
            "Does the running Jupyter server serve Fractal: version, user, database, runner "
            "backend, running jobs.",
        ),
        "jobs": (
            "fractal_jupyter.cli.jobs.JobsApp",
            "Your jobs with their status; `jobs JOB_ID --follow` streams a job's log.",
        ),
        "db": (
            "fractal_jupyter.cli.db.DbApp",
            "`jupyter fractal db upgrade`: run the migrations on FractalJupyter.db_url.",
        ),
        "collect": (
            "fractal_jupyter.cli.collect.CollectApp",
            "Collect a task package (PyPI name or local wheel) and show its progress.",
        ),
    }
    # Why the configuration could not be applied (found when linking or loading); the
    # extension then serves nothing but that message (see `initialize_settings`).
    configuration_error: ConfigurationError | None = None
    # Built when first needed (`fractal_state`); until then nothing of the API is imported.
    _state: FractalState | None = None
    # Getting the state ready in the background (migrations checked, jobs followed).
    _readying: asyncio.Task[None] | None = None
    # While the state is not built: the jobs folder's doorbell, rung by a submission through
    # another server of this runner (its job is then ours to follow).
    _doorbell: FileWatch | None = None

    data_dir = Unicode(
        help="Folder for fractal_jupyter's own files (the SQLite database by default, the "
        "token signing key), created with mode 0700. Default: <Jupyter data dir>/fractal.",
    ).tag(config=True)

    db_url = Unicode(
        help="SQLAlchemy URL of the database, with an async driver: "
        "sqlite+aiosqlite:///<path> (the default, <data_dir>/fractal.db) or "
        "postgresql+asyncpg://user:password@host/dbname for a database shared by many servers.",
    ).tag(config=True)

    migrate_on_start = Bool(
        help="Bring the database to this version's schema when the server starts. Default: "
        "True for an SQLite file (each user's own database), False for a database server "
        "(PostgreSQL) shared by many servers: there an administrator runs `jupyter fractal db "
        "upgrade` once, with the servers' configuration, and servers only check the schema. "
        "A server whose database is behind answers 503 'run jupyter fractal db upgrade' on "
        "every Fractal route, one whose database a newer fractal-jupyter migrated answers "
        "503 'this server is older than its database; upgrade fractal-jupyter' (whatever "
        "this setting); either picks up the fixed schema within seconds, without a restart.",
    ).tag(config=True)

    db_pool_size = Integer(
        1,
        help="Connections to a database server (PostgreSQL) that a server keeps open once "
        "used: an idle server holds at most this many. Not used with SQLite.",
    ).tag(config=True)

    db_max_overflow = Integer(
        4,
        help="Connections a server may open beyond db_pool_size while requests need them; "
        "each is closed when its request ends. Not used with SQLite.",
    ).tag(config=True)

    db_pool_timeout = Float(
        30.0,
        help="Seconds a request waits for a connection when db_pool_size + db_max_overflow "
        "are in use, before it answers 503. Not used with SQLite.",
    ).tag(config=True)

    db_pool_pre_ping = Bool(
        True,
        help="Check a pooled connection (one round trip) before reusing it, so that a "
        "database restart, or a firewall or PgBouncer that dropped an idle connection, costs "
        "no failed request. Not used with SQLite.",
    ).tag(config=True)

    db_connect_timeout = Float(
        10.0,
        help="Seconds to wait for a new connection to the database server. Not used with "
        "SQLite (its busy timeout is 30 s).",
    ).tag(config=True)

    db_statement_timeout = Float(
        60.0,
        help="Longest a database statement may run, in seconds, before it is cancelled and "
        "its request answers 503 (asyncpg: its command_timeout, enforced by the client, so "
        "it works behind PgBouncer; psycopg: the server's statement_timeout). 0: no limit. "
        "Migrations run without it. Not used with SQLite.",
    ).tag(config=True)

    db_transaction_pooling = Bool(
        False,
        help="db_url is a pooler in transaction pooling mode (PgBouncer's pool_mode = "
        "transaction), which runs each transaction on any of its server connections: "
        "prepared statements then get a unique name each and are never reused (asyncpg). "
        "Without it, asyncpg's statements are looked up on the wrong backend and requests "
        "fail. Not needed with session pooling or without a pooler.",
    ).tag(config=True)

    startup_timeout = Float(
        10.0,
        help="Seconds the start-up checks that need the outside world (the database server, "
        "the SSH login node) keep retrying, with backoff, before `jupyter fractal` refuses to "
        "start. Inside another Jupyter application (jupyter lab) the database is retried in "
        "the background for as long as it takes, and the Fractal routes answer 503 meanwhile.",
    ).tag(config=True)

    admin_users = Set(
        Unicode(),
        help="Usernames that are Fractal administrators (fractal-server's superusers).",
    ).tag(config=True)

    default_username = Unicode(
        help="Who the caller is when Jupyter's identity is anonymous (a plain Jupyter server "
        "with a token or password). Default: the OS user running the server. Under JupyterHub "
        "the hub user is the caller and this is not used.",
    ).tag(config=True)

    working_dir = Unicode(
        help="Folder where every job gets its own folder (task arguments, outputs, logs). "
        "Default: <data_dir>/jobs.",
    ).tag(config=True)

    project_dir = Unicode(
        help="Folder of the datasets created without `zarr_dir` (fractal-server 2.18+'s "
        "form, e.g. fractal-client 2.24's `project add-dataset`) that name no `project_dir` "
        "either: their zarr_dir is <project_dir>/<zarr_subfolder>, by default "
        "<project_dir>/fractal/<project id>_<project name>/<dataset id>_<dataset name>. "
        "Default: ~/fractal (of the user running the server).",
    ).tag(config=True)

    local_max_workers = Integer(
        help="How many task processes a job runs at once on the local backend. A task's "
        "meta.parallel_tasks_per_job narrows it. Default: the CPUs this server may run on "
        "(its CPU affinity, which inside a SLURM allocation is the allocation's CPUs, capped "
        "by a cgroup v2 cpu.max quota), not every CPU of the node. Memory is not counted: "
        "the tasks share the server's (in an allocation: SLURM --mem, the cgroup's "
        "memory.max); lower this for memory-hungry tasks.",
    ).tag(config=True)

    warm_start = Bool(
        True,
        help="Run the calls of a task whose command is `<python> <script.py>` warm: one "
        "process of that Python imports the script once and forks a process per call; on "
        "the local backend it serves the whole job (the tasks of one package share their "
        "imports), on SLURM each SLURM job. A task opts out with "
        '`"warm_start": false` in its meta. Job processes, after the first job of a server, '
        "fork from a job starter that imported their modules once. False: a new process for "
        "every call and every job.",
    ).tag(config=True)

    warm_start_keep_seconds = Float(
        300.0,
        min=0.0,
        help="On the local backend, how long a warm starter stays after its last call, for "
        "the next jobs of the same task Python (and the same environment): a rerun then "
        "starts without paying the package's imports again (2-3 s a task Python for "
        "fractal-tasks-core). It costs that starter's memory meanwhile (about 250 MB for "
        "fractal-tasks-core). It listens on a socket in the user's private folder "
        "($XDG_RUNTIME_DIR, else /tmp/fractal-jupyter-warm-<uid>), lives on its own (it "
        "outlives a restart of the server, like jobs do) and is replaced when a file that it "
        "imported changed. 0: a job's starters end with the job.",
    ).tag(config=True)

    submit_rate_limit_seconds = Float(
        2.0,
        help="Refuse (429) a second submission of the same workflow on the same dataset "
        "within this many seconds, as fractal-server does. 0 disables the check.",
    ).tag(config=True)

    job_poll_interval = Float(
        0.5,
        help="Seconds between two passes over the running jobs while some run (a job process "
        "that crashed writes no event; new events are seen at once). Nothing polls while no "
        "job runs.",
    ).tag(config=True)

    job_heartbeat_timeout = Float(
        HEARTBEAT_TIMEOUT_SECONDS,
        min=3 * HEARTBEAT_SECONDS,
        help="Seconds without a heartbeat (touched every 5 s in the job folder) after which a "
        "server takes a job process of another host (same user, e.g. the last node of "
        "batchspawner) for dead and fails its job. Raise it where the job folders' filesystem "
        "is slow to show changes or the hosts' clocks differ by more than a few seconds.",
    ).tag(config=True)

    # -- task collection (issue 5) --

    tasks_dir = Unicode(
        help="Folder of the task packages collected with `POST api/v2/task/collect/pip/`: "
        "one venv per package and version under <tasks_dir>/.fractal/. Default: "
        "<data_dir>/tasks.",
    ).tag(config=True)

    python_interpreters = Dict(
        key_trait=Unicode(),
        value_trait=Unicode(),
        help="Python interpreters that task collection may build venvs with, by version, "
        "e.g. {'3.11': '/usr/bin/python3.11', '3.12': 'python3.12'} (fractal-server's "
        "FRACTAL_TASKS_PYTHON_<X_Y>). Default: the Python running this server.",
    ).tag(config=True)

    default_python_version = Unicode(
        help="Python version of a collection that names none (fractal-server's "
        "FRACTAL_TASKS_PYTHON_DEFAULT_VERSION). Default: the version of the Python running "
        "this server if it is in python_interpreters, else the lowest configured one.",
    ).tag(config=True)

    # -- where jobs run: the runner backend and the SLURM settings (issue 6) --

    runner_backend = Enum(
        [backend.value for backend in Backend],
        Backend.LOCAL.value,
        help="Where job tasks run: 'local' (processes on this machine), 'slurm' (sbatch, "
        "squeue and scancel are on this host and the job folders are on a filesystem the "
        "nodes share) or 'slurm_ssh' (the same commands on a login node over SSH, files "
        "copied with SFTP). Either way as the user running this server: no sudo.",
    ).tag(config=True)

    job_process_placement = Enum(
        ["auto", "server", "slurm"],
        "auto",
        help="Where the job process of a job runs (it follows the job's tasks and reports). "
        "'server': a process of this server's, outside its session, which outlives a restart "
        "of it but not the end of a SLURM allocation it runs in. 'slurm' (runner_backend "
        "'slurm' only): a SLURM job of its own (sbatch, 1 CPU, 2 GB, slurm_partition, the "
        "job's SLURM account), which outlives this server wherever it runs; any server of "
        "the user follows it. 'auto': 'slurm' on the 'slurm' backend when this server itself "
        "runs inside a SLURM allocation (SLURM_JOB_ID is set, as under batchspawner), else "
        "'server'.",
    ).tag(config=True)

    slurm_partition = Unicode(
        "", help="SLURM partition of the jobs (sbatch --partition). Empty: the cluster default."
    ).tag(config=True)

    slurm_default_options = Dict(
        {"cpus_per_task": 1, "mem": "1000M"},
        help="Default resources of one task call, as fractal-server's default_slurm_config: "
        "cpus_per_task, mem (MB as a number, or '<n>M', '<n>G' = n*1000 MB, '<n>T'), time, "
        "constraint, gres, gpus, partition, extra_lines. A task's meta overrides them.",
    ).tag(config=True)

    slurm_gpu_options = Dict(
        help="Resources that replace the defaults for tasks whose meta has needs_gpu=true "
        "(same keys as slurm_default_options, e.g. {'partition': 'gpu', 'gres': 'gpu:1'}). "
        "Empty: such tasks fail with a clear reason.",
    ).tag(config=True)

    slurm_extra_lines = List(
        Unicode(),
        help="Lines added to every sbatch script ('#SBATCH ...' options go with the others, "
        "other lines run before the worker). '#SBATCH --account' is refused: the account is "
        "the job's slurm_account.",
    ).tag(config=True)

    slurm_worker_init = Unicode(
        "",
        help="Shell lines run on the node before the worker (e.g. 'module load python'), "
        "before the job's own worker_init.",
    ).tag(config=True)

    slurm_batching = Dict(
        help="Limits of fractal-server's batching heuristic: target_cpus_per_job, "
        "max_cpus_per_job, target_mem_per_job, max_mem_per_job (MB or '<n>G'), "
        "target_num_jobs, max_num_jobs. Missing keys: 8, 16, 32000, 62000, 100, 200.",
    ).tag(config=True)

    slurm_poll_interval = Float(
        2.0,
        help="Seconds between two squeue calls of a running job (one call for all its SLURM jobs).",
    ).tag(config=True)

    slurm_unreachable_timeout = Float(
        120.0,
        help="Seconds a job keeps retrying when SLURM or the SSH connection does not answer; "
        "after that the job fails with the reason.",
    ).tag(config=True)

    slurm_python = Unicode(
        help="The Python the SLURM jobs run on the nodes (backend 'slurm'); it needs this "
        "version of fractal_jupyter installed. Default: this server's Python.",
    ).tag(config=True)

    slurm_ssh_host = Unicode("", help="Login node of the 'slurm_ssh' backend.").tag(config=True)

    slurm_ssh_port = Integer(22, help="SSH port of the login node.").tag(config=True)

    slurm_ssh_user = Unicode(
        help="User on the login node (the jobs run as this user). Default: this server's user."
    ).tag(config=True)

    slurm_ssh_key_path = Unicode(
        "", help="Private key used to log in to the login node (no password prompt)."
    ).tag(config=True)

    slurm_ssh_known_hosts = Unicode(
        "",
        help="known_hosts file with the login node's host key (unknown hosts are refused). "
        "Empty: ~/.ssh/known_hosts.",
    ).tag(config=True)

    slurm_ssh_remote_dir = Unicode(
        "",
        help="Folder on the cluster where each job gets its folder (arguments, logs, outputs "
        "of the task calls), readable and writable by the nodes.",
    ).tag(config=True)

    slurm_ssh_python = Unicode(
        "python3",
        help="The Python on the cluster (login node and nodes) with this version of "
        "fractal_jupyter installed.",
    ).tag(config=True)

    @default("slurm_python")
    def _slurm_python_default(self) -> str:
        return sys.executable

    @default("slurm_ssh_user")
    def _slurm_ssh_user_default(self) -> str:
        return getpass.getuser()

    def job_process_placement_used(self) -> str:
        """'slurm' or 'server': `job_process_placement` with 'auto' resolved."""
        if self.job_process_placement != "auto":
            return str(self.job_process_placement)
        in_allocation = bool(os.environ.get("SLURM_JOB_ID"))
        on_slurm = Backend(self.runner_backend) is Backend.SLURM
        return "slurm" if in_allocation and on_slurm else "server"

    def job_launcher(self) -> JobLauncher:
        placement = None
        slurm = self.slurm_settings()
        if slurm is not None and self.job_process_placement_used() == "slurm":
            placement = SlurmPlacement(slurm, sys.executable)
        return JobLauncher(heartbeat_timeout=self.job_heartbeat_timeout, slurm_placement=placement)

    def slurm_settings(self) -> SlurmSettings | None:
        """The SLURM traits as the job process gets them (None for the local backend)."""
        backend = Backend(self.runner_backend)
        if not backend.on_slurm:
            return None
        ssh = None
        if backend.over_ssh:
            ssh = {
                "host": self.slurm_ssh_host,
                "user": self.slurm_ssh_user,
                "key_path": self.slurm_ssh_key_path,
                "port": self.slurm_ssh_port,
                "known_hosts": self.slurm_ssh_known_hosts,
            }
        return SlurmSettings(
            partition=self.slurm_partition,
            default_options=dict(self.slurm_default_options),
            gpu_options=dict(self.slurm_gpu_options),
            extra_lines=list(self.slurm_extra_lines),
            worker_init=self.slurm_worker_init,
            batching=dict(self.slurm_batching),
            poll_interval=self.slurm_poll_interval,
            unreachable_timeout=self.slurm_unreachable_timeout,
            python=self.slurm_python,
            ssh=ssh,
            remote_dir=self.slurm_ssh_remote_dir,
            remote_python=self.slurm_ssh_python,
            warm_start=self.warm_start,
        )

    # -- limits of a request (issue 16) --

    max_body_bytes = Integer(
        DEFAULT_MAX_BODY_BYTES,
        help="Largest request body, in bytes, of every route but the dataset import: a body "
        "above it gets 413, before it is read when its Content-Length says so. Bodies above "
        "256 KiB are parsed in a worker thread, after the project membership check.",
    ).tag(config=True)

    max_import_body_bytes = Integer(
        DEFAULT_MAX_IMPORT_BODY_BYTES,
        help="Largest body, in bytes, of `POST .../dataset/import/` (413 above it); "
        "100,000 images with a few attributes each are about 30 MB.",
    ).tag(config=True)

    max_wheel_upload_bytes = Integer(
        DEFAULT_MAX_WHEEL_UPLOAD_BYTES,
        help="Largest request, in bytes, of `POST api/v2/task/collect/pip/` with a wheel file "
        "(fractal-client 2.24's `task collect <path>.whl`; 413 above it). fractal-tasks-core "
        "2.1.0's wheel is under 1 MB; its dependencies are downloaded, not uploaded.",
    ).tag(config=True)

    token_lifetime = Float(
        7 * 24 * 3600.0,
        help="Seconds a bearer token from auth/token/login/ (or `jupyter fractal token`) "
        "stays valid. Tokens are JWTs signed with a key kept in <data_dir>/jwt-signing-key; "
        "removing that file and restarting the server revokes every token.",
    ).tag(config=True)

    viewer_url_template = Unicode(
        "",
        help="The address of an image viewer (a vizarr instance, say) with `{zarr_url}` where "
        "an image's or a plate's zarr_url goes, e.g. "
        "`https://vizarr.example/?source={zarr_url}`: the image browser widget then shows a "
        "'view' link per image and per plate. Empty: no links.",
    ).tag(config=True)

    server_owner = Unicode(
        help="Under JupyterHub, the user who owns this server: only they may submit jobs or "
        "collect tasks, since those run as the server's OS user; any other caller (a hub "
        "admin, a user the server is shared with) gets 403. Empty: no such rule. "
        "Default: $JUPYTERHUB_USER.",
    ).tag(config=True)

    hub_api_url = Unicode(
        help="JupyterHub's API URL, where auth/token/login/ checks that the password it is "
        "given is an API token of that hub user with access to this server. Empty: the "
        "password must be this Jupyter server's token or password. "
        "Default: $JUPYTERHUB_API_URL.",
    ).tag(config=True)

    @default("tasks_dir")
    def _tasks_dir_default(self) -> str:
        return os.path.join(self.data_dir, "tasks")

    @default("python_interpreters")
    def _python_interpreters_default(self) -> dict[str, str]:
        return {f"{sys.version_info.major}.{sys.version_info.minor}": sys.executable}

    @default("default_python_version")
    def _default_python_version_default(self) -> str:
        running = f"{sys.version_info.major}.{sys.version_info.minor}"
        if running in self.python_interpreters or not self.python_interpreters:
            return running
        return min(self.python_interpreters, key=lambda v: tuple(map(int, v.split("."))))

    @default("project_dir")
    def _project_dir_default(self) -> str:
        return os.path.join(os.path.expanduser("~"), "fractal")

    @default("working_dir")
    def _working_dir_default(self) -> str:
        return os.path.join(self.data_dir, "jobs")

    @default("local_max_workers")
    def _local_max_workers_default(self) -> int:
        return usable_cpus()

    @default("data_dir")
    def _data_dir_default(self) -> str:
        return os.path.join(jupyter_data_dir(), "fractal")

    @default("db_url")
    def _db_url_default(self) -> str:
        return "sqlite+aiosqlite:///" + os.path.join(self.data_dir, "fractal.db")

    @default("migrate_on_start")
    def _migrate_on_start_default(self) -> bool:
        return self.db_url.startswith("sqlite")

    def _database_application_name(self) -> str:
        return f"fractal_jupyter {self.server_owner or self.default_username}"

    def connection_settings(self) -> ConnectionSettings:
        from .db.engine import ConnectionSettings

        return ConnectionSettings(
            pool_size=self.db_pool_size,
            max_overflow=self.db_max_overflow,
            pool_timeout=self.db_pool_timeout,
            pre_ping=self.db_pool_pre_ping,
            connect_timeout=self.db_connect_timeout,
            statement_timeout=self.db_statement_timeout,
            application_name=self._database_application_name(),
            transaction_pooling=self.db_transaction_pooling,
        )

    @default("server_owner")
    def _server_owner_default(self) -> str:
        return os.environ.get("JUPYTERHUB_USER", "")

    @default("hub_api_url")
    def _hub_api_url_default(self) -> str:
        return os.environ.get("JUPYTERHUB_API_URL", "")

    @default("default_username")
    def _default_username_default(self) -> str:
        return getpass.getuser()

    def _link_jupyter_server_extension(self, serverapp: Any) -> None:
        """Apply the configuration only if every value of every source is valid.

        traitlets would apply values one by one and stop at the first bad one, and
        jupyter_server only warns about a failed link: Fractal would then run on a partial
        configuration, often the defaults. Here a bad configuration is applied not at all,
        and `initialize_settings` refuses to start or serves the reason as a 503.
        """
        self.serverapp = serverapp
        try:
            problems = invalid_settings(type(self), configuration_layers(self, serverapp))
            if problems:
                raise ConfigurationError(problems)
            try:
                super()._link_jupyter_server_extension(serverapp)
            except (TraitError, ArgumentError, ValueError) as error:  # what the probe missed
                raise ConfigurationError([f"{error}"]) from error
            problems = settings_problems(self)
            if problems:
                raise ConfigurationError(problems)
        except ConfigurationError as error:
            self.configuration_error = error
        self._linked = True

    @property
    def started_by_fractal(self) -> bool:
        """`jupyter fractal` (Fractal is the point) rather than e.g. `jupyter lab`."""
        return self.serverapp is not None and self.serverapp.starter_app is self

    def initialize_settings(self) -> None:
        if self.configuration_error is None and self.started_by_fractal:
            problems = check_outside_world(self, self.startup_timeout, self.log)
            if problems:
                self.configuration_error = ConfigurationError(problems)
        if self.configuration_error is not None:
            self.log.error(self.configuration_error.message)
            if self.started_by_fractal:
                self.exit(1)
            # ExtensionApp put the app itself under its name; there is no state to serve.
            self.settings.pop("fractal", None)
            return
        make_private_dir(Path(self.data_dir), warn_if_open=True)
        # ExtensionApp put the app itself under its name: the state goes there once built.
        self.settings.pop("fractal", None)
        # PostgreSQL is asked once the event loop runs (`_start_jupyter_server_extension`).
        if postgres_dsn(self.db_url) is None and not self._nothing_under_way_in_sqlite():
            self.fractal_state()

    def _nothing_under_way_in_sqlite(self) -> bool:
        return nothing_under_way(self.db_url, this_runner())

    async def _nothing_under_way(self) -> bool:
        """Whether the state can wait for the first request (db/probe.py: a current database
        with no job of this runner to follow and no task collection to reap)."""
        if postgres_dsn(self.db_url) is None:
            return self._nothing_under_way_in_sqlite()
        return await postgres_nothing_under_way(
            self.db_url,
            this_runner(),
            self.db_connect_timeout,
            self._database_application_name(),
        )

    def fractal_state(self) -> FractalState:
        """The handlers' state: built on first need (the first Fractal request, a job to
        follow), then got ready in the background (migrations checked, jobs followed)."""
        if self._state is not None:
            return self._state
        from .db.engine import Database
        from .state import FractalState

        database = Database(self.db_url, connections=self.connection_settings())
        state = FractalState(
            database=database,
            admin_users=frozenset(self.admin_users),
            default_username=self.default_username,
            log=self.log,
            runner=RunnerSettings(
                working_dir=Path(self.working_dir),
                max_workers=self.local_max_workers,
                submit_rate_limit_seconds=self.submit_rate_limit_seconds,
                backend=Backend(self.runner_backend),
                slurm=self.slurm_settings(),
                warm_start=self.warm_start,
                warm_start_keep_seconds=self.warm_start_keep_seconds,
            ),
            collector=self.task_collector(database),
            job_poll_interval=self.job_poll_interval,
            launcher=self.job_launcher(),
            migrate_on_start=self.migrate_on_start,
            tokens=TokenSigner(Path(self.data_dir), self.token_lifetime),
            server_owner=self.server_owner,
            hub_api_url=self.hub_api_url,
            hub_access_scopes=frozenset(
                hub_access_scopes(
                    self.server_owner,
                    os.environ.get("JUPYTERHUB_SERVER_NAME", ""),
                    os.environ.get("JUPYTERHUB_OAUTH_ACCESS_SCOPES", ""),
                )
            ),
        )
        state.config = {name: getattr(self, name) for name in self.class_own_traits(config=True)}
        web_app = getattr(self.serverapp, "web_app", None)
        if web_app is not None:
            state.activity_times = web_app.settings.setdefault("last_activity_times", {})
            web_app.settings["fractal"] = state
        self.settings["fractal"] = state
        self._state = state
        self.log.info(
            "fractal_jupyter %s: database %s", __version__, state.database.url.render_as_string()
        )
        self._stop_doorbell()
        with contextlib.suppress(RuntimeError):  # no running loop: the caller gets it ready
            self._readying = asyncio.get_running_loop().create_task(self._get_ready(state))
        return state

    async def _get_ready(self, state: FractalState) -> None:
        from .errors import SchemaUnavailable, Unavailable

        try:
            await state.ensure_ready()
        except Unavailable as error:
            # No fallback: the Fractal routes answer 503 with this until the database is back.
            if not isinstance(error, SchemaUnavailable):  # ensure_ready said it
                self.log.error("fractal_jupyter: %s", error.detail)
            state.retry_until_ready()
            return
        await state.reap_orphaned_collections()

    def task_collector(self, database: Database) -> TaskCollector:
        from .services.task_collection import TaskCollector

        return TaskCollector(
            database=database,
            tasks_dir=Path(self.tasks_dir).absolute(),
            python_interpreters=dict(self.python_interpreters),
            default_python_version=self.default_python_version,
            log=self.log,
        )

    def initialize_handlers(self) -> None:
        if self.configuration_error is not None:
            from .handlers.unavailable import unavailable_handlers

            self.handlers.extend(unavailable_handlers(self.configuration_error.message))
            return
        # One router for all of <base_url>fractal/: the route table loads with the first
        # request. Added with Tornado's own `add_handlers`: ExtensionApp.handlers and
        # Jupyter's override take handler classes only (Jupyter's checks that each of their
        # methods requires authentication or says it does not; tests/test_app.py runs
        # that check on the route table).
        assert self.serverapp is not None  # ExtensionApp calls this with its server app
        web_app: web.Application = self.serverapp.web_app
        base_url = web_app.settings["base_url"]
        router = LazyRoutes(web_app, base_url, self._api_handlers)
        web.Application.add_handlers(
            web_app, ".*$", [(url_path_join(base_url, PREFIX_PATTERN), router)]
        )

    def _api_handlers(self) -> list[HandlerSpec]:
        """The route table's handlers, with what ExtensionApp would give them."""
        from .handlers.routes import tornado_handlers

        self.fractal_state()
        return [
            (
                pattern,
                handler,
                {"name": self.name} if issubclass(handler, ExtensionHandlerMixin) else {},
            )
            for pattern, handler in tornado_handlers()
        ]

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        read_long_headers(getattr(serverapp, "http_server", None))
        if self.configuration_error is not None:
            return
        if not self.started_by_fractal:
            # `jupyter fractal` checked it before serving; here the server is up already, and
            # jobs retry the connection for slurm_unreachable_timeout.
            problem = await login_node_problem(self, CHECK_ATTEMPT_SECONDS)
            if problem:
                self.log.error("fractal_jupyter: %s", problem)
        if self._state is None:
            self._watch_doorbell()
            # Looked at (again, on SQLite) now that the doorbell is watched: a job submitted
            # through another server since `initialize_settings` looked is not missed.
            if await self._nothing_under_way():
                self.log.info(
                    "fractal_jupyter %s: nothing under way; the Fractal API loads with its "
                    "first request",
                    __version__,
                )
                return
        state = self.fractal_state()
        if self._readying is None:
            self._readying = asyncio.ensure_future(self._get_ready(state))
        await self._readying

    def _watch_doorbell(self) -> None:
        jobs_dir = Path(self.working_dir)
        with contextlib.suppress(OSError):
            jobs_dir.mkdir(parents=True, exist_ok=True)
        self._doorbell = watch_files((DOORBELL_FILE,), self._doorbell_rang)
        self._doorbell.set_folders([jobs_dir], busy=False)

    def _doorbell_rang(self) -> None:
        """Another server of this runner submitted a job: follow it from now on."""
        self.fractal_state()

    def _stop_doorbell(self) -> None:
        if self._doorbell is not None:
            self._doorbell.close()
            self._doorbell = None

    async def stop_extension(self) -> None:
        self._stop_doorbell()
        if self._readying is not None:
            self._readying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._readying
        if self._state is not None:
            await self._state.stop()


main = launch_new_instance = FractalJupyter.launch_instance
