"""A network lab on one machine: namespaces, veth, NAT routers and tracked processes.

Used by the end-to-end tests, the benchmarks and `make demo` (which is why it lives in the package and not
under tests/). Needs root. Everything it creates is torn down by `Topology.teardown()` and at exit.
"""
