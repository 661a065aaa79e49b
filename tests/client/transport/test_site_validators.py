"""Per-installation validators of the decoy (issue 12 "Camouflage": the same ETag/Last-Modified on every
host was a fingerprint): ``site_mtime_for(state_dir)`` stamps the state directory on the first start and
keeps that date across restarts; two installations serve different validators."""

from __future__ import annotations

import asyncio
import os
import re

from shadowmesh_client.transport import ServerConfig
from shadowmesh_client.transport.config import SITE_STAMP_FILE, site_mtime_for
from shadowmesh_client.transport.ws import LinkServer

GET = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


async def etag_and_date(state_dir) -> tuple[bytes, bytes]:
    async with LinkServer(ServerConfig(site_mtime=site_mtime_for(state_dir)), lambda hello: None, None) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(GET)
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
    etag = re.search(rb"\r\nETag: (\S+)\r\n", answer)
    modified = re.search(rb"\r\nLast-Modified: ([^\r]+)\r\n", answer)
    assert etag and modified, answer
    return etag.group(1), modified.group(1)


async def test_two_installations_differ_and_a_restart_keeps_the_validators(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    assert site_mtime_for(first) is not None and site_mtime_for(second) is not None
    os.utime(first / SITE_STAMP_FILE, (1_650_000_000, 1_650_000_000))   # installed on different days
    os.utime(second / SITE_STAMP_FILE, (1_710_000_000, 1_710_000_000))
    a = await etag_and_date(first)
    assert a == (b'"62590080-267"', b"Fri, 15 Apr 2022 05:20:00 GMT")
    assert await etag_and_date(second) != a
    assert await etag_and_date(first) == a  # restart: the first-start stamp is kept, not refreshed
    assert site_mtime_for(first) == 1_650_000_000


def test_without_a_state_dir_the_server_falls_back_to_its_environment():
    assert site_mtime_for(None) is None
