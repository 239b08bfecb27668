"""Starting or connecting to a Dask cluster from a YAML file in ``cluster_configs/``.

A config file names the kind of cluster and the keyword arguments of the class
that starts it::

    type: local            # local | ssh | slurm | pbs | kubernetes
    cluster:               # keyword arguments of that class
      n_workers: 2
    scale:                 # optional: how many workers/jobs to ask for
      jobs: 4
    security:              # optional: TLS (keyword arguments of distributed.Security)
      tls_ca_file: ca.pem
      require_encryption: true

The local default binds its scheduler and dashboard to 127.0.0.1: a Dask
scheduler runs whatever code its clients send it, so one reachable from a
network is remote code execution for anyone who can reach it. Remote configs
therefore show TLS with ``require_encryption``.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml

CLUSTER_CLASSES = {
    "local": ("distributed", "LocalCluster"),
    "ssh": ("distributed", "SSHCluster"),
    "slurm": ("dask_jobqueue", "SLURMCluster"),
    "pbs": ("dask_jobqueue", "PBSCluster"),
    "kubernetes": ("dask_kubernetes.operator", "KubeCluster"),
}
EXTRAS = {"dask_jobqueue": "jobqueue", "dask_kubernetes.operator": "kubernetes"}
# Options of classes we may not have installed (checked without importing them).
KUBERNETES_OPTIONS = {
    "name", "namespace", "image", "n_workers", "resources", "env", "worker_command",
    "port_forward_cluster_ip", "scheduler_service_type", "shutdown_on_close", "idle_timeout",
    "jupyter", "custom_cluster_spec",
}
JOBQUEUE_OPTIONS = {
    "queue", "account", "project", "walltime", "cores", "processes", "memory", "interface",
    "nanny", "local_directory", "death_timeout", "worker_extra_args", "job_extra_directives",
    "job_script_prologue", "job_directives_skip", "job_cpu", "job_mem", "resource_spec",
    "python", "name", "n_workers", "host", "scheduler_options", "shared_temp_directory",
    "dashboard_address", "log_directory", "silence_logs", "protocol", "worker_command",
}
LOCAL_DEFAULTS = {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:8787"}
LOOPBACK = ("127.", "localhost", "::1", "[::1]")


class ClusterConfigError(ValueError):
    """A cluster config that cannot be used (the message names the file and the fix)."""


@dataclass
class ClusterConfig:
    """A parsed, checked cluster config file."""

    type: str
    cluster: dict = field(default_factory=dict)
    scale: dict = field(default_factory=dict)
    security: dict | None = None
    source: str = "<dict>"

    def options(self) -> dict:
        """Keyword arguments for the cluster class (loopback defaults for 'local')."""
        if self.type == "local":
            return {**LOCAL_DEFAULTS, **self.cluster}
        return dict(self.cluster)


def load_config(source) -> ClusterConfig:
    """Read and check a cluster config (a YAML path or an equivalent dict)."""
    if isinstance(source, dict):
        raw, label = source, "<dict>"
    else:
        label = str(source)
        try:
            raw = yaml.safe_load(Path(source).read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{label}: no such cluster config file.") from None
        except yaml.YAMLError as error:
            raise ClusterConfigError(f"{label}: not valid YAML ({error}).") from None
    if not isinstance(raw, dict):
        raise ClusterConfigError(f"{label}: expected a mapping with 'type' and 'cluster'.")
    unknown = set(raw) - {"type", "cluster", "scale", "security"}
    if unknown:
        raise ClusterConfigError(
            f"{label}: unknown top-level key(s) {sorted(unknown)}; use type, cluster, scale, security."
        )
    kind = raw.get("type")
    if kind not in CLUSTER_CLASSES:
        raise ClusterConfigError(f"{label}: type must be one of {sorted(CLUSTER_CLASSES)}, got {kind!r}.")
    config = ClusterConfig(
        kind, dict(raw.get("cluster") or {}), dict(raw.get("scale") or {}), raw.get("security"), label
    )
    _check_options(config)
    return config


def _allowed_options(kind):
    if kind in ("slurm", "pbs"):
        return JOBQUEUE_OPTIONS
    if kind == "kubernetes":
        return KUBERNETES_OPTIONS
    cls = _cluster_class(kind)
    names = set(inspect.signature(cls).parameters) - {"kwargs", "args"}
    if kind == "local":  # LocalCluster passes the rest to its workers
        from distributed import Worker

        names |= set(inspect.signature(Worker).parameters)
    return names


def _check_options(config: ClusterConfig):
    allowed = _allowed_options(config.type)
    unknown = set(config.cluster) - allowed
    if unknown:
        raise ClusterConfigError(
            f"{config.source}: unknown option(s) {sorted(unknown)} for a {config.type} cluster."
        )
    if config.type == "local":
        for key in ("host", "dashboard_address"):
            value = str(config.options().get(key) or "")
            if value and not value.startswith(LOOPBACK):
                raise ClusterConfigError(
                    f"{config.source}: a local cluster must bind {key} to 127.0.0.1 (got {value!r}); "
                    "an exposed scheduler runs code for anyone who reaches it. Use an ssh/slurm "
                    "config with TLS for remote workers."
                )
    if config.type == "ssh" and len(config.cluster.get("hosts") or []) < 2:
        raise ClusterConfigError(f"{config.source}: an ssh cluster needs hosts: [scheduler, worker, ...].")
    if config.type == "kubernetes" and not config.cluster.get("name"):
        raise ClusterConfigError(f"{config.source}: a kubernetes cluster needs a name.")
    if config.security is not None:
        if not isinstance(config.security, dict):
            raise ClusterConfigError(f"{config.source}: security must be a mapping of TLS options.")
        from distributed import Security

        unknown = set(config.security) - set(Security.__slots__)
        if unknown:
            raise ClusterConfigError(f"{config.source}: unknown security option(s) {sorted(unknown)}.")


def _cluster_class(kind):
    module_name, class_name = CLUSTER_CLASSES[kind]
    try:
        module = __import__(module_name, fromlist=[class_name])
    except ImportError:
        extra = EXTRAS.get(module_name)
        raise ClusterConfigError(
            f"a {kind} cluster needs {module_name.split('.')[0]}: pip install 'daskgmm[{extra}]'."
        ) from None
    return getattr(module, class_name)


def security_files(config: ClusterConfig) -> dict:
    """The TLS files a config names: ``{option: expanded path}``."""
    import os

    return {key: os.path.expanduser(value) for key, value in (config.security or {}).items()
            if key.startswith("tls_") and isinstance(value, str)}


def missing_security_files(config: ClusterConfig) -> dict:
    """``{path: [options naming it]}`` for the TLS files that do not exist."""
    missing = {}
    for key, path in security_files(config).items():
        if not Path(path).is_file():
            missing.setdefault(path, []).append(key)
    return missing


def _describe_missing(missing: dict) -> str:
    return ", ".join(f"{path} ({', '.join(keys)})" for path, keys in missing.items())


def missing_packages(config: ClusterConfig) -> list:
    """What must be installed to start ``config``, as messages (empty: nothing)."""
    import importlib.util

    module_name = CLUSTER_CLASSES[config.type][0]
    needed = {"ssh": ("asyncssh", "ssh")}.get(config.type)  # SSHCluster imports asyncssh only when it starts
    if needed is None and module_name in EXTRAS:
        needed = (module_name.split(".")[0], EXTRAS[module_name])
    if needed is None or importlib.util.find_spec(needed[0]) is not None:
        return []
    return [f"cluster type {config.type} needs {needed[0]}: pip install 'daskgmm[{needed[1]}]'."]


def make_security(config: ClusterConfig):
    """The ``distributed.Security`` of a config, or None; a named TLS file that does not exist is
    an error naming it (and how to make certificates), before anything starts."""
    if not config.security:
        return None
    from distributed import Security

    missing = missing_security_files(config)
    if missing:
        raise ClusterConfigError(
            f"{config.source}: TLS file(s) missing: {_describe_missing(missing)}. Make a private CA and "
            f"certificate with `daskgmm certificates {Path(next(iter(missing))).parent}` (then copy that "
            "folder to every host that runs workers), or point security: at your own."
        )
    return Security(**{**config.security, **security_files(config)})


def dry_run(config: ClusterConfig) -> str:
    """What starting ``config`` would do, without starting it or needing its certificates or
    network: the batch job script for slurm/pbs (rendered with a scheduler on 127.0.0.1, which
    stops at once), the class and options otherwise; plus what is missing to really start it."""
    notes = [f"missing: {message}" for message in missing_packages(config)]
    missing = missing_security_files(config)
    if missing:
        notes.append(f"missing TLS file(s): {_describe_missing(missing)}; make them with "
                     f"`daskgmm certificates {Path(next(iter(missing))).parent}`")
    module_name, class_name = CLUSTER_CLASSES[config.type]
    lines = [f"# {config.source}: cluster type {config.type} ({module_name}.{class_name})"]
    if config.type in ("slurm", "pbs") and not any(note.startswith("missing: ") for note in notes):
        rendered = ClusterConfig(config.type, dict(config.cluster), {}, None if missing else config.security,
                                 config.source)
        rendered.cluster.pop("interface", None)
        rendered.cluster["scheduler_options"] = {**rendered.cluster.get("scheduler_options", {}),
                                                 "host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}
        cluster = create_cluster(rendered)
        try:
            script = cluster.job_script()
        finally:
            cluster.close()
        lines.append("# the job script, with the scheduler address it would have on this machine"
                     + (config.cluster.get("interface") and f" (there: interface {config.cluster['interface']})" or ""))
        if missing:
            lines.append("# (without the TLS options: the certificates do not exist yet)")
        lines.append(script)
    else:
        lines += [f"#   {key}: {value}" for key, value in config.options().items()]
    if config.scale:
        lines.append(f"# then scale({', '.join(f'{k}={v}' for k, v in config.scale.items())})")
    lines += [f"# {note}" for note in notes] or ["# ready to start: nothing is missing"]
    return "\n".join(lines)


def create_cluster(config: ClusterConfig):
    """Start the cluster a config describes (and scale it if asked)."""
    missing = missing_packages(config)
    if missing:
        raise ClusterConfigError(missing[0])
    cls = _cluster_class(config.type)
    options = config.options()
    security = make_security(config)
    if security is not None:
        options["security"] = security
        if config.type != "ssh":
            options.setdefault("protocol", "tls://")
    cluster = cls(**options)
    if config.scale:
        cluster.scale(**config.scale)
    return cluster


def connect_timeout_s() -> float:
    """How long to wait for a scheduler: Dask's connect time-out (config
    ``distributed.comm.timeouts.connect``, e.g. ``DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=5s``),
    at most 10 s, so that a wrong address is said within seconds, not after half a minute."""
    import dask
    from dask.utils import parse_timedelta

    return min(10.0, parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"), default="s"))


def client_security(address: str, tls_files: dict):
    """The client's ``distributed.Security`` for a scheduler address: None for tcp:// (Dask's
    configuration applies), the named files for tls://; a named file that does not exist is an
    error naming it before any connection is tried."""
    if not tls_files:
        return None
    from distributed import Security

    missing = [path for path in tls_files.values() if not Path(path).is_file()]
    if missing:
        raise ClusterConfigError(f"TLS file(s) not found: {', '.join(map(str, missing))}")
    if set(tls_files) != {"tls_ca_file", "tls_client_cert", "tls_client_key"}:
        raise ClusterConfigError("a tls:// scheduler needs all three of --tls-ca-file, --tls-cert and --tls-key")
    return Security(require_encryption=True, **{key: str(value) for key, value in tls_files.items()})


def _connect_failure(address, timeout, error) -> str:
    hint = ("If it runs, its CA may not have signed this client's certificate (or the reverse)."
            if address.startswith("tls://") else "Is it running, and is the address (protocol, host, port) right?")
    return (f"no Dask scheduler answered at {address} within {timeout:g} s ({type(error).__name__}). {hint}")


@contextmanager
def connect(target=None, tls_files=None):
    """A ``distributed.Client`` for ``target``, closed (with its cluster) on exit.

    Parameters
    ----------
    target : None, str or path
        None: a local cluster on 127.0.0.1 (the default). A scheduler address
        (``tcp://host:8786`` or ``tls://...``): connect to it. Anything else:
        a cluster config file to start.
    tls_files : dict, optional
        For a ``tls://`` address: ``tls_ca_file``, ``tls_client_cert``, ``tls_client_key`` (PEM
        paths). Without them the client takes Dask's configuration
        (``distributed.comm.tls.*``, e.g. ``DASK_DISTRIBUTED__COMM__TLS__CA_FILE``).
    """
    from distributed import Client

    if isinstance(target, str) and "://" in target:
        timeout = connect_timeout_s()
        security = client_security(target, tls_files or {})
        try:
            client = Client(target, timeout=timeout, security=security)
        except OSError as error:  # distributed's TimeoutError is an OSError
            raise ConnectionError(_connect_failure(target, timeout, error)) from None
        except TypeError:  # distributed asks for the ssl_context it was not given
            if not target.startswith("tls://") or security is not None:
                raise
            raise ConnectionError(
                f"{target} is a TLS scheduler and this client has no certificates: pass --tls-ca-file, "
                "--tls-cert and --tls-key (files the cluster's CA signed), or set Dask's "
                "distributed.comm.tls.* configuration.") from None
        with client:
            yield client
        return
    config = load_config(target) if target is not None else ClusterConfig("local", {"n_workers": 2, "threads_per_worker": 1})
    cluster = create_cluster(config)
    try:
        with Client(cluster, security=make_security(config)) as client:
            yield client
    finally:
        cluster.close()
