"""End-to-end tests: real namespaces, TUN devices, processes (root only). Helpers: netns.py, nginx.py."""
