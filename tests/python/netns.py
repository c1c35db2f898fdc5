"""Network namespaces for the networking tests: hosts stood up inside this machine, so that
every bridge, rule, DHCP server and packet of a test stays in namespaces it creates and
deletes, and the host's own interfaces and rules are never touched.

A cloud run inside a namespace (`ip netns exec NS koala up`) listens on that namespace's
loopback. `Forward` makes its port reachable from the test process's own loopback: each
connection accepted on 127.0.0.1:PORT here is relayed by a thread that entered the namespace
(setns, per thread) to 127.0.0.1:PORT there. No packet crosses between namespaces: the bytes
cross inside this process, so the eucarc's URLs work unchanged from the tests."""

import ctypes
import os
import socket
import subprocess
import threading
import uuid

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def enter(name):
    """Moves the calling thread (only) into namespace `name`."""
    fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


def run_in(name, fn):
    """fn() called by a thread inside namespace `name` (sockets it opens are that
    namespace's); its result, or its OSError raised here."""
    result = {}

    def run():
        try:
            enter(name)
            result["value"] = fn()
        except OSError as e:
            result["error"] = e

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def connect_in(name, address, timeout=5.0):
    """A TCP connection to `address` made from inside namespace `name`."""
    return run_in(name, lambda: socket.create_connection(address, timeout=timeout))


class Netns:
    """A namespace named `kt-<tag>-<random>`, loopback up; deleted by `delete()`."""

    def __init__(self, tag):
        self.name = f"kt-{tag}-{uuid.uuid4().hex[:6]}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.run("ip", "link", "set", "lo", "up")

    @classmethod
    def existing(cls, name):
        """The namespace `name` made elsewhere (a cloud's), to run commands in."""
        ns = cls.__new__(cls)
        ns.name = name
        return ns

    def run(self, *args, check=True, timeout=60, **kw):
        """Runs a command inside the namespace."""
        return subprocess.run(["ip", "netns", "exec", self.name, *args], check=check,
                              capture_output=True, text=True, timeout=timeout, **kw)

    def popen(self, args, **kw):
        """Starts a command inside the namespace (`ip netns exec` execs it: same pid)."""
        return subprocess.Popen(["ip", "netns", "exec", self.name, *args], **kw)

    def delete(self):
        """Ends what still runs inside (a CC's dnsmasq outlives its CC on purpose: guests
        keep their leases while it restarts), then deletes the namespace."""
        pids = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True,
                              text=True, check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), 9)
            except (OSError, ValueError):
                pass
        subprocess.run(["ip", "netns", "del", self.name], check=False)


def _pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Forward:
    """127.0.0.1:`port` here (or inside namespace `listen_in`) relayed to 127.0.0.1:`port`
    inside namespace `name`: how roles in two namespaces standing for two hosts reach each
    other's loopback ports while only their guests' packets cross the namespaces' links."""

    def __init__(self, name, port, listen_in=None):
        self.name, self.port = name, port

        def listen():
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen(64)
            return s

        # A socket stays in the namespace it was made in.
        self.listener = run_in(listen_in, listen) if listen_in else listen()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client):
        try:
            enter(self.name)
            upstream = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            upstream.settimeout(None)
        except OSError:
            client.close()
            return
        threading.Thread(target=_pump, args=(client, upstream), daemon=True).start()
        _pump(upstream, client)
        client.close()
        upstream.close()

    def close(self):
        self.closed = True
        # shutdown wakes the accepting thread, so the port is free when this returns.
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
