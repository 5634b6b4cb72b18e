"""A real authoritative DNS server (NSD) on 127.0.0.1 serving one zone from a temporary
directory, for tests and the DNS discovery benchmark: ``async with open_nsd(domain, zone) as
port``. NSD runs in the foreground as the current user, with no control socket, and is
killed and reaped on the way out.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

import trio

NSD: Final = "nsd"
HOST: Final = "127.0.0.1"
START_TIMEOUT: Final = 20.0  # seconds for NSD to load a zone of ~20,000 records and answer on a busy machine
REAP_TIMEOUT: Final = 5.0
PORT_TRIES: Final = 3  # a free port found by binding may be taken before NSD binds it


class NSDUnavailable(RuntimeError):
    """NSD is not installed (``apt-get install nsd``) or did not start; the message says why."""


def nsd_path() -> str | None:
    return shutil.which(NSD) or next((p for p in ("/usr/sbin/nsd",) if Path(p).exists()), None)


FREE_PORT_TRIES: Final = 32  # a UDP port the kernel picks may be taken for TCP by another test; pick again


def _free_port() -> int:
    """A port free on ``HOST`` for both UDP and TCP (NSD binds both)."""
    for _ in range(FREE_PORT_TRIES):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((HOST, 0))
            port: int = udp.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            try:
                tcp.bind((HOST, port))
            except OSError:
                continue
        return port
    raise NSDUnavailable(f"no port free for both UDP and TCP on {HOST} in {FREE_PORT_TRIES} tries")


def _config(directory: Path, port: int, domain: str) -> str:
    d = directory
    return f"""server:
    ip-address: {HOST}@{port}
    port: {port}
    do-ip6: no
    username: ""
    chroot: ""
    zonesdir: "{d}"
    database: ""
    zonelistfile: "{d}/zone.list"
    xfrdfile: "{d}/xfrd.state"
    xfrdir: "{d}"
    pidfile: "{d}/nsd.pid"
    logfile: "{d}/nsd.log"
    server-count: 1
    verbosity: 1
    hide-version: yes
remote-control:
    control-enable: no
zone:
    name: "{domain}"
    zonefile: "{d}/zone"
"""


async def _answers(port: int, domain: str) -> bool:
    import dns.asyncbackend
    import dns.asyncquery
    import dns.exception
    import dns.message
    import dns.rcode

    query = dns.message.make_query(domain, "SOA")
    try:
        response = await dns.asyncquery.udp(query, HOST, port=port, timeout=0.5,
                                            backend=dns.asyncbackend.get_backend("trio"))
    except (OSError, dns.exception.DNSException):
        return False
    return response.rcode() == dns.rcode.NOERROR and bool(response.answer)


@asynccontextmanager
async def open_nsd(domain: str, zone: str) -> AsyncIterator[int]:
    """Serve ``zone`` (zone-file text) for ``domain`` on 127.0.0.1; yields the port once NSD
    answers for the zone. Raises :class:`NSDUnavailable` when NSD is missing or will not start."""
    binary = nsd_path()
    if binary is None:
        raise NSDUnavailable("nsd is not installed (apt-get install nsd)")
    with tempfile.TemporaryDirectory(prefix="p2p-nsd-") as tmp:
        directory = Path(tmp)
        (directory / "zone").write_text(zone)
        last = ""
        for _ in range(PORT_TRIES):
            port = _free_port()
            conf = directory / "nsd.conf"
            conf.write_text(_config(directory, port, domain))
            process = await trio.lowlevel.open_process([binary, "-d", "-c", str(conf)], stdin=subprocess.DEVNULL,
                                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                with trio.move_on_after(START_TIMEOUT):
                    while process.poll() is None and not await _answers(port, domain):
                        await trio.sleep(0.05)
                if process.poll() is None and await _answers(port, domain):
                    yield port
                    return
                log_file = directory / "nsd.log"
                last = log_file.read_text()[-500:] if log_file.exists() else f"exit status {process.poll()}"
            finally:
                process.kill()
                with trio.move_on_after(REAP_TIMEOUT) as scope:
                    scope.shield = True
                    await process.wait()
        raise NSDUnavailable(f"nsd did not start: {last.strip()}")


__all__ = ["NSDUnavailable", "nsd_path", "open_nsd"]
