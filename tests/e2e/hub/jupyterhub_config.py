# JupyterHub 6.x configuration of the test hub started by scripts/jupyterhub-test.sh: local OS
# users, LocalProcessSpawner (the hub runs as root and setuids to each user), shared-password
# login (no PAM), a service token for the test driver, and fractal_jupyter in every server.
# Machine-specific values come from the environment the script sets.
import os
import sys

c = get_config()  # type: ignore[name-defined]  # noqa: F821

E = os.environ
STATE = E["HUB_STATE_DIR"]

# network: loopback only, ports picked by the script
c.JupyterHub.bind_url = f"http://127.0.0.1:{E['HUB_PORT']}"
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{E['HUB_API_PORT']}"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{E['HUB_PROXY_API_PORT']}"
c.ConfigurableHTTPProxy.command = [E["HUB_CHP"]]
c.ConfigurableHTTPProxy.pid_file = os.path.join(STATE, "jupyterhub-proxy.pid")

# state
c.JupyterHub.db_url = "sqlite:///" + os.path.join(STATE, "jupyterhub.sqlite")
c.JupyterHub.cookie_secret_file = os.path.join(STATE, "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = os.path.join(STATE, "jupyterhub.pid")
# HUB_KEEP_SERVERS=1: a stopped hub leaves the servers (and their jobs) and the proxy running,
# as a hub under systemd with KillMode=process should (docs/deploy-jupyterhub.md, section 5)
KEEP_SERVERS = E.get("HUB_KEEP_SERVERS") == "1"
c.JupyterHub.cleanup_servers = not KEEP_SERVERS
c.JupyterHub.cleanup_proxy = not KEEP_SERVERS

# login: one password for the users, another for the admin
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = E["HUB_USER_PASSWORD"]
c.SharedPasswordAuthenticator.admin_password = E["HUB_ADMIN_PASSWORD"]
c.Authenticator.allowed_users = set(E["HUB_USERS"].split())
c.Authenticator.admin_users = {E["HUB_ADMIN"]}

# servers: processes of the users' own OS accounts
c.JupyterHub.spawner_class = "localprocess"
c.Spawner.cmd = [sys.executable, "-m", "jupyterhub.singleuser"]
c.Spawner.args = ["--ServerApp.jpserver_extensions=fractal_jupyter=True"]
c.Spawner.environment = {"JUPYTERHUB_DISABLE_USER_CONFIG": "1"}
# the servers' (and their jobs') sbatch and squeue use the test cluster's private configuration
if E.get("SLURM_CONF"):
    c.Spawner.environment["SLURM_CONF"] = E["SLURM_CONF"]
c.Spawner.start_timeout = 90
c.Spawner.http_timeout = 90
# stop: SIGINT, then SIGTERM after this many seconds (on SIGINT a Jupyter server waits 5 s
# for a confirmation no one gives)
c.LocalProcessSpawner.interrupt_timeout = 1
# POST /hub/api/users/<name>/server answers 202 at once; the test polls `ready`
c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 0}

# the test driver: manage users, servers and tokens, but no access to the servers themselves
c.JupyterHub.services = [{"name": "fractal-test", "api_token": E["HUB_SERVICE_TOKEN"]}]
c.JupyterHub.load_roles = [
    {
        "name": "fractal-test",
        "description": "test driver: users, their servers and tokens",
        "scopes": ["admin:users", "admin:servers", "tokens", "list:users", "read:hub"],
        "services": ["fractal-test"],
    }
]
