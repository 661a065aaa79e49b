"""Every option `up` declares reaches its command line: the options declared below the routing options'
decorator (discovery, sessions on demand, idle timeout, punch port) were once dropped by it, so
`up --discovery` answered "No such option" and the daemon ran with the NodeSettings defaults."""

from __future__ import annotations

from tests.client.cli.helpers import run


def test_up_help_lists_the_discovery_on_demand_and_routing_options():
    p = run("up", "--help")
    assert p.returncode == 0, p.stderr
    for option in ("--discovery / --no-discovery", "--on-demand / --no-on-demand", "--idle-timeout",
                   "--punch-port", "--exit-node", "--qos / --no-qos", "--userspace", "--offload / --no-offload"):
        assert option in p.stdout, option


def test_up_reads_the_discovery_options_as_options():
    for args in (["--no-discovery"], ["--on-demand"], ["--idle-timeout", "60"], ["--punch-port", "0"],
                 ["--no-offload"]):
        p = run("up", *args, "--help")
        assert p.returncode == 0 and "No such option" not in p.stderr, (args, p.stderr)
