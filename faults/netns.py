"""A second host on this machine: a network namespace joined to ours by a veth pair.

Only the two ends of the pair talk, over a private /30 in 10.200.0.0/16 that no
interface of the machine uses yet. beanstalkd listens on the host end; a
listener runs inside the namespace (``ip netns exec``). Taking the host end's
link down drops every packet between them without a word, as a pulled cable
does: no reset, no refusal, just silence.
"""

from __future__ import annotations

import ipaddress
import os
import random
import signal
import subprocess
import uuid


class NetnsUnavailable(Exception):
    """This machine (or this user) cannot make network namespaces."""


def _ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, ["ip", *args], done.stdout, done.stderr)
    return done.stdout


def _mac(interface: str, ns: str | None = None) -> str:
    words = _ip(*(["-n", ns] if ns else []), "-o", "link", "show", interface).split()
    return words[words.index("link/ether") + 1]


def _networks_in_use() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network this machine has an address or a route in."""
    found = []
    for line in (_ip("-4", "-o", "addr", "show") + _ip("-4", "route", "show", "table", "all")).splitlines():
        for word in line.split():
            try:
                found.append(ipaddress.ip_network(word, strict=False))
            except ValueError:
                continue
    return [n for n in found if n.version == 4]


def free_subnet(rng: random.Random) -> tuple[str, str]:
    """Two addresses of a /30 in 10.200.0.0/16 that nothing here uses."""
    used = _networks_in_use()
    for _ in range(1000):
        net = ipaddress.ip_network(f"10.200.{rng.randrange(256)}.{4 * rng.randrange(64)}/30")
        if not any(net.overlaps(other) for other in used):
            first, second = list(net.hosts())
            return str(first), str(second)
    raise NetnsUnavailable("no free /30 in 10.200.0.0/16 for the veth pair")


class NetCut:
    """A namespace and a veth pair, made on entry and always removed on exit."""

    def __init__(self, rng: random.Random):
        suffix = uuid.uuid4().hex[:6]
        self.ns, self.host_if, self.ns_if = f"glf-{suffix}", f"glfh{suffix}", f"glfn{suffix}"
        self.host_ip, self.ns_ip = "", ""
        self._rng = rng
        self.is_cut = False

    @property
    def prefix(self) -> list[str]:
        """What runs a command inside the namespace."""
        return ["ip", "netns", "exec", self.ns]

    def __enter__(self) -> "NetCut":
        check_available()
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _create(self) -> None:
        self.host_ip, self.ns_ip = free_subnet(self._rng)
        _ip("netns", "add", self.ns)
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        _ip("link", "set", self.ns_if, "netns", self.ns)
        _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")
        _ip("-n", self.ns, "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if)
        _ip("-n", self.ns, "link", "set", self.ns_if, "up")
        _ip("-n", self.ns, "link", "set", "lo", "up")
        # each end knows the other's hardware address for good: a cut stays silent, as across
        # a router, instead of turning into "no route to host" once a neighbour probe fails
        host_mac = _mac(self.host_if)
        ns_mac = _mac(self.ns_if, self.ns)
        _ip("neigh", "replace", self.ns_ip, "lladdr", ns_mac, "dev", self.host_if, "nud", "permanent")
        _ip("-n", self.ns, "neigh", "replace", self.host_ip, "lladdr", host_mac, "dev", self.ns_if,
            "nud", "permanent")

    def cut(self) -> None:
        _ip("link", "set", self.host_if, "down")
        self.is_cut = True

    def restore(self) -> None:
        _ip("link", "set", self.host_if, "up")
        self.is_cut = False

    def close(self) -> None:
        """Kill what still runs in the namespace (all started by us), remove link and namespace."""
        try:
            pids = _ip("netns", "pids", self.ns).split()
        except (subprocess.CalledProcessError, OSError):
            pids = []
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
        for args in (("link", "del", self.host_if), ("netns", "del", self.ns)):
            try:
                _ip(*args)
            except (subprocess.CalledProcessError, OSError):
                pass  # not made, or already gone with its peer


def check_available() -> None:
    """Raise :class:`NetnsUnavailable`, saying what is missing, unless namespaces can be made."""
    probe = f"glf-probe-{uuid.uuid4().hex[:6]}"
    try:
        _ip("netns", "add", probe)
    except FileNotFoundError:
        raise NetnsUnavailable("the network-cut scenarios need the 'ip' command: "
                               "apt-get install iproute2") from None
    except subprocess.CalledProcessError as exc:
        raise NetnsUnavailable(f"cannot make a network namespace ({exc.stderr.strip()}); the "
                               "network-cut scenarios need root (CAP_NET_ADMIN, CAP_SYS_ADMIN)") from None
    _ip("netns", "del", probe)
