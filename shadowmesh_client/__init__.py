"""ShadowMesh client: a mesh VPN whose trust and peer directory live on chain.

Module map (see README.md):
  protocol/   sans-I/O core: frames, handshake, sessions, replay window (no sockets, no asyncio)
  crypto.py   the one module that imports PyNaCl
  directory/  trust and peers as a pure function of DeviceRegistry events; chain reader feeds it
  transport/  asyncio + websockets: moves bytes between sockets and the protocol core
  tun/        TUN device (Linux) and an in-memory fake
  node.py, relay.py   the daemons (wiring only)
  chain.py, rewards.py  transactions and EIP-712 receipts
  config.py, cli.py     typed YAML config and the `shadowmesh-client` command
"""

__version__ = "0.1.0"
