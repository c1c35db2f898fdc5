"""The cloud controller's records on PostgreSQL (issue 16): a throwaway server from Debian's
postgresql-15, started by the test itself (scripts/pg-temp), holds the CLC's records and the
accounts; cloud controllers sharing it take turns, one leading, the others waiting: the leader
killed is replaced within 10 s, and a leader cut off from the database stops by itself and is
replaced, without an instance lost or doubled."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import ceph  # noqa: F401 - a Ceph cluster of the test's own
from conftest import (KOALA_BIN, Cloud, free_port, make_client, make_ec2, pg_start, pg_stop,
                      walrus_on_rados)
from test_instances import guest  # noqa: F401 - the test guest fixture
from test_instances import Apart, domains, register_guest, terminate_all, wait_state

@pytest.fixture
def database():
    """A PostgreSQL server of the test's own; its libpq connection string."""
    folder, url = pg_start()
    try:
        yield url
    finally:
        pg_stop(folder)


def sql(url, query):
    out = subprocess.run(["psql", url, "-Atc", query], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def cloud_dir(url, keys_from=None, more=""):
    """A data dir whose koala.toml names the database (and holds `more`); with the cloud CA
    of `keys_from`'s."""
    d = tempfile.mkdtemp(prefix="koala-e2e-pgclc-")
    os.chmod(d, 0o755)
    with open(os.path.join(d, "koala.toml"), "w") as f:
        f.write(f'[cloud]\ndatabase = "{url}"\n{more}')
    if keys_from:
        shutil.copytree(os.path.join(keys_from, "keys"), os.path.join(d, "keys"))
    return d


def logged(path, text):
    with open(path, errors="replace") as f:
        return text in f.read()


def instance_states(ec2):
    return {i["InstanceId"]: i["State"]["Name"]
            for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]}


def test_koala_up_on_postgresql_and_rados_runs_instances_across_restarts(
        database, ceph, guest, tmp_path):
    # The CLC's records in PostgreSQL, Walrus' object bytes (the bundles) in RADOS.
    d = cloud_dir(database, more=walrus_on_rados(ceph))
    c = Cloud(d)
    try:
        c.start()
        assert logged(c.log_path, "This cloud controller leads the cloud in postgresql")
        ec2 = make_ec2(c, c.access_key, c.secret_key)
        s3 = make_client(c.s3_url, c.region, c.access_key, c.secret_key)
        _, _, emi, _ = register_guest(c, s3, ec2, tmp_path, guest)
        ran = ec2.run_instances(ImageId=emi, MinCount=1, MaxCount=1)["Instances"][0]
        iid = ran["InstanceId"]
        seen = wait_state(ec2, [iid], {"running", "terminated"})
        assert seen[iid]["State"]["Name"] == "running", seen[iid].get("StateReason")

        # The records are PostgreSQL's and the bundles' bytes RADOS', none on the data dir's
        # disk.
        assert not os.path.exists(os.path.join(d, "clc"))
        assert not os.path.exists(os.path.join(d, "identity"))
        assert not os.path.exists(os.path.join(d, "walrus", "data"))
        stored = subprocess.run(["rados", "-c", ceph, "-p", "koala", "ls"], capture_output=True,
                                text=True, timeout=60, check=True).stdout.split()
        assert stored, "no object bytes in the pool"
        assert sql(database, "SELECT value::jsonb->'record'->>'image_id' FROM koala_records "
                             f"WHERE store = 'clc' AND key = 'instance/{iid}'") == emi
        assert sql(database, "SELECT count(*) FROM koala_records "
                             "WHERE store = 'identity'") != "0"

        # Restarted, the cloud reads them back: the same keys work, the instance still runs.
        c.stop()
        c.start()
        assert logged(c.log_path, "(term 2)")
        ec2 = make_ec2(c, c.access_key, c.secret_key)
        assert instance_states(ec2)[iid] == "running"
        assert ec2.describe_images(ImageIds=[emi])["Images"][0]["State"] == "available"
        ec2.terminate_instances(InstanceIds=[iid])
        wait_state(ec2, [iid], {"terminated"}, timeout=60)
        assert iid not in domains()
    finally:
        terminate_all(c)
        c.stop()
        shutil.rmtree(d, ignore_errors=True)


def listening(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_a_leader_killed_or_cut_off_is_replaced_and_no_instance_is_lost_or_doubled(
        database, guest, tmp_path):
    port, walrus_port = free_port(), free_port()
    walrus_url = f"http://127.0.0.1:{walrus_port}/services/Walrus"
    first_dir = cloud_dir(database)
    first = Cloud(first_dir, port=port)
    roles, dirs, standbys = None, [first_dir], []
    try:
        first.start(command="cloud", args=["--walrus-url", walrus_url])
        roles = Apart(first, walrus_port, '[node]\nhost = "pg-node"\ncores = 4\n')
        node = roles.node

        def standby():
            """Another CLC waiting to take over: its own data dir holding a copy of the cloud
            CA, the same database and the same address (the one name clients and components
            know). (The process, its log.)"""
            data_dir = cloud_dir(database, keys_from=first_dir)
            dirs.append(data_dir)
            log = os.path.join(data_dir, "koala.log")
            proc = subprocess.Popen(
                [KOALA_BIN, "cloud", "--walrus-url", walrus_url, "--data-dir", data_dir,
                 "--listen", f"127.0.0.1:{port}", "--console-listen", "127.0.0.1:0"],
                stdout=open(log, "ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            standbys.append(proc)
            wait_logged(proc, log, "waits to take over")
            return proc, log

        second, second_log = standby()

        ec2 = make_ec2(first, first.access_key, first.secret_key)
        s3 = make_client(first.s3_url, first.region, first.access_key, first.secret_key)
        _, _, emi, _ = register_guest(first, s3, ec2, tmp_path, guest)
        ran = ec2.run_instances(ImageId=emi, MinCount=2, MaxCount=2)["Instances"]
        running = [i["InstanceId"] for i in ran]
        wait_state(ec2, running, {"running"})
        # A third is launched and its leader killed at once, before it runs.
        pending = ec2.run_instances(ImageId=emi, MinCount=1, MaxCount=1,
                                    ClientToken="pg-failover")["Instances"][0]["InstanceId"]
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait()
        killed = time.monotonic()

        # The standby takes over at the same address and answers within 10 s.
        while True:
            assert second.poll() is None, open(second_log).read()
            if listening(port):
                try:
                    states = instance_states(ec2)
                    break
                except Exception:  # noqa: BLE001 - still starting
                    pass
            assert time.monotonic() - killed < 10, "no leader answered within 10 s:\n" + \
                open(second_log).read()
            time.sleep(0.1)
        took = time.monotonic() - killed
        assert logged(second_log, "(term 2)"), open(second_log).read()
        assert set(running) | {pending} <= set(states), states

        # Nothing lost, nothing doubled: the three run, each once, and a retried launch with
        # the same client token names the same instance.
        ids = [*running, pending]
        settled = wait_state(ec2, ids, {"running", "terminated"})
        assert all(settled[i]["State"]["Name"] == "running" for i in ids), settled
        again = ec2.run_instances(ImageId=emi, MinCount=1, MaxCount=1,
                                  ClientToken="pg-failover")["Instances"][0]["InstanceId"]
        assert again == pending
        assert set(os.listdir(os.path.join(node.data_dir, "node", "instances"))) == set(ids)
        assert set(ids) <= domains()
        live = [i for i, s in instance_states(ec2).items() if s != "terminated"]
        assert sorted(live) == sorted(ids), live
        print(f"the standby answered {took:.2f} s after the leader was killed")

        # The new leader loses its database session (its host cut off from the database,
        # say) while it runs: it stops by itself, saying why, and a third CLC waiting at the
        # same address takes over with the instances as they were.
        third, third_log = standby()
        sql(database, "SELECT pg_terminate_backend(pid) FROM pg_locks "
                      "WHERE locktype = 'advisory' AND granted")
        assert second.wait(timeout=30) != 0, "the deposed leader went on"
        assert logged(second_log, "lost the leadership of the cloud"), open(second_log).read()
        wait_logged(third, third_log, "(term 3)")
        deadline = time.monotonic() + 30
        while True:
            try:
                states = instance_states(ec2)
                break
            except Exception:  # noqa: BLE001 - the third is still starting
                assert time.monotonic() < deadline, open(third_log).read()
                time.sleep(0.2)
        assert all(states[i] == "running" for i in ids), states
        assert set(os.listdir(os.path.join(node.data_dir, "node", "instances"))) == set(ids)

        ec2.terminate_instances(InstanceIds=ids)
        wait_state(ec2, ids, {"terminated"}, timeout=60)
        assert not domains() & set(ids)
    finally:
        # Whichever controller leads answers at the port: end what the test ran.
        try:
            if first.env is not None:
                terminate_all_at(first)
        except Exception:  # noqa: BLE001 - the processes are stopped below regardless
            pass
        for standby in standbys:
            if standby.poll() is None:
                standby.terminate()
                standby.wait(timeout=30)
        if roles is not None:
            roles.stop()
        first.stop()
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


def wait_logged(proc, log, text, timeout=60):
    """Waits until the log of the running `proc` holds `text`."""
    deadline = time.monotonic() + timeout
    while not logged(log, text):
        assert proc.poll() is None, open(log).read()
        assert time.monotonic() < deadline, open(log).read()
        time.sleep(0.2)


def terminate_all_at(c):
    """Terminates every live instance through whichever CLC answers at `c`'s port."""
    ec2 = make_ec2(c, c.access_key, c.secret_key)
    live = [i for i, s in instance_states(ec2).items() if s != "terminated"]
    if live:
        ec2.terminate_instances(InstanceIds=live)
        wait_state(ec2, live, {"terminated"}, timeout=60)
