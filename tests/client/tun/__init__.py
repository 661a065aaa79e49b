"""Unit tests of shadowmesh_client.tun that need no kernel: packet helpers, the fake device."""
