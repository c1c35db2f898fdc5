"""Cold starts that do not wait for the image (issue 15): on a cache miss the node boots the
instance from its root image as it arrives, each chunk fetched from Walrus when the guest reads
it (or the background fill reaches it) and checked against the SHA-256 Walrus recorded for it.
The roles run apart (cloud, cluster, node, Walrus) so that Walrus can be killed and started
again under a running guest."""

import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import Cloud, free_port, make_client, make_ec2
from test_instances import guest  # noqa: F401 - the test guest fixture
from test_instances import (Apart, console, domains, eventually, qemu_nodes, register_guest,
                            sha256_file, wait_markers, wait_state)

GIB = 1 << 30
# What the guest prints once it has mounted its root disk and read a file from it.
ROOT_READ = "koala-guest: root disk koala-test-root"


@pytest.fixture(scope="module")
def apart():
    """A cloud with its roles as separate processes: (cloud, node role, walrus role)."""
    port, walrus_port = free_port(), free_port()
    walrus_url = f"http://127.0.0.1:{walrus_port}/services/Walrus"
    cloud_dir = tempfile.mkdtemp(prefix="koala-e2e-cold-")
    c = Cloud(cloud_dir, port=port)
    roles = None
    try:
        c.start(command="cloud", args=["--walrus-url", walrus_url])
        roles = Apart(c, walrus_port, '[node]\nhost = "cold"\ncores = 2\n')
        node, walrus = roles.node, roles.walrus
        yield c, node, walrus
    finally:
        ec2 = make_ec2(c, c.access_key, c.secret_key)
        try:
            live = [i["InstanceId"] for r in ec2.describe_instances()["Reservations"]
                    for i in r["Instances"] if i["State"]["Name"] != "terminated"]
            if live:
                ec2.terminate_instances(InstanceIds=live)
                wait_state(ec2, live, {"terminated"}, timeout=60)
        except Exception:  # the roles are stopped below whatever happened
            pass
        if roles is not None:
            roles.stop()
        c.stop()
        if os.environ.get("KOALA_KEEP_DATA") is None:
            shutil.rmtree(cloud_dir, ignore_errors=True)


def clients(c):
    return (make_ec2(c, c.access_key, c.secret_key),
            make_client(c.s3_url, c.region, c.access_key, c.secret_key))


def node_cache(node):
    return os.path.join(node.data_dir, "node", "cache")


def node_record(node, instance_id):
    with open(os.path.join(node.data_dir, "node", "instances", instance_id, "state.json")) as f:
        return json.load(f)


def root_backing(node, instance_id):
    """The backing file named in the instance's root overlay."""
    root = os.path.join(node.data_dir, "node", "instances", instance_id, "root")
    out = subprocess.run(["qemu-img", "info", "-U", "--output=json", root],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return json.loads(out).get("backing-filename")


def unbundled(walrus, sha, timeout=300):
    """Waits until Walrus has unbundled the image whose SHA-256 is `sha` (RegisterImage
    started it): its plain image and chunk list on Walrus' disk; the plain image's path."""
    root = os.path.join(walrus.data_dir, "walrus", "images")
    plain, chunks = os.path.join(root, "sha256", sha), os.path.join(root, "chunks", sha)
    deadline = time.monotonic() + timeout
    while not (os.path.exists(plain) and os.path.exists(chunks)):
        assert time.monotonic() < deadline, f"Walrus did not unbundle {sha}"
        time.sleep(0.5)
    return plain


def wait_running_fast(ec2, instance_id, timeout=240):
    """Polls often until the instance runs (or ends); its description."""
    deadline = time.monotonic() + timeout
    while True:
        seen = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]
        state = seen["Instances"][0]["State"]["Name"]
        if state in ("running", "terminated"):
            return seen["Instances"][0]
        assert time.monotonic() < deadline, f"{instance_id} not running within {timeout} s"
        time.sleep(0.1)


def test_a_2_gib_image_boots_as_it_arrives_and_survives_walrus_restarting(
        apart, guest, tmp_path):
    c, node, walrus = apart
    ec2, s3 = clients(c)
    # The guest's 64 MiB root file system followed by random bytes to 2 GiB: an image that
    # neither compresses nor dedupes, of which the guest reads only its first blocks.
    disk = tmp_path / "disk-2g.img"
    shutil.copy(guest["disk"], disk)
    with open(disk, "ab") as f:
        while f.tell() < 2 * GIB:
            f.write(os.urandom(min(64 << 20, 2 * GIB - f.tell())))
    sha = sha256_file(disk)
    _, _, emi, _ = register_guest(c, s3, ec2, tmp_path, guest, disk=str(disk))
    os.remove(disk)
    unbundled(walrus, sha)
    assert sha not in cached_images_of(node)

    sent = time.monotonic()
    first = ec2.run_instances(ImageId=emi, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    seen = wait_running_fast(ec2, first)
    to_running = time.monotonic() - sent
    assert seen["State"]["Name"] == "running", seen.get("StateReason")
    # Walrus goes away at once, most of the image still to come: the guest's reads of chunks
    # not here wait, the background fill backs off.
    walrus.kill()
    fetched = eventually(lambda: node_record(node, first)["timings"].get("base_fetched_bytes"))
    print(f"\ncold start of a 2 GiB image: running after {to_running:.2f} s, "
          f"{fetched / (1 << 20):.1f} MiB fetched by then")
    assert fetched < 0.05 * 2 * GIB, fetched
    assert root_backing(node, first).startswith("nbd+unix:///" + sha), root_backing(node, first)
    time.sleep(3)
    assert sha not in cached_images_of(node), "the whole image arrived before Walrus stopped"
    walrus.spawn()
    # The guest carries on: it mounts its root disk, read through the export, and is ready.
    wait_markers(ec2, first, 1)
    assert ROOT_READ in console(ec2, first)

    # The rest arrives behind; once complete and verified it is the ordinary cached image.
    deadline = time.monotonic() + 300
    while sha not in cached_images_of(node):
        assert time.monotonic() < deadline, "the image was not completed in the cache"
        time.sleep(1)
    cached = os.path.join(node_cache(node), "sha256", sha)
    assert os.path.getsize(cached) == 2 * GIB
    assert sha256_file(cached) == sha
    assert os.listdir(os.path.join(node_cache(node), "tmp")) == []

    # A second instance is a plain hit: its overlay's backing is the cached file.
    second = ec2.run_instances(ImageId=emi, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    assert wait_running_fast(ec2, second)["State"]["Name"] == "running"
    assert root_backing(node, second) == cached
    assert "base_fetched_bytes" not in node_record(node, second)["timings"]
    wait_markers(ec2, second, 1)
    assert ROOT_READ in console(ec2, second)

    # The first guest's root was moved from the export to the cached file once complete: it
    # no longer needs the node controller's process. The node crashes and starts again; the
    # guest, rebooted, mounts its root once more.
    assert eventually(lambda: not any("nbd" in n["file"] for n in qemu_nodes(first)) or None,
                      timeout=30)
    assert cached in {n["file"] for n in qemu_nodes(first)}
    node.kill()
    node.spawn()
    ec2.reboot_instances(InstanceIds=[first])
    wait_markers(ec2, first, 2)
    assert console(ec2, first).count(ROOT_READ) == 2
    ec2.terminate_instances(InstanceIds=[first, second])
    wait_state(ec2, [first, second], {"terminated"}, timeout=60)
    assert not domains() & {first, second}


def test_a_damaged_chunk_never_reaches_the_guest_and_ends_the_instance(apart, guest, tmp_path):
    c, node, walrus = apart
    ec2, s3 = clients(c)
    # The guest's disk with a few MiB more, so that it is an image of its own.
    disk = tmp_path / "disk-damaged.img"
    shutil.copy(guest["disk"], disk)
    with open(disk, "ab") as f:
        f.write(os.urandom(3 << 20))
    sha = sha256_file(disk)
    _, _, emi, _ = register_guest(c, s3, ec2, tmp_path, guest, disk=str(disk))
    plain = unbundled(walrus, sha)
    # Damage on Walrus' disk in the first chunk, which holds the file system's superblock:
    # what the guest reads first.
    os.chmod(plain, 0o644)
    with open(plain, "r+b") as f:
        f.seek(1024 + 100)
        f.write(b"\xa5" * 8)
    iid = ec2.run_instances(ImageId=emi, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    done = wait_state(ec2, [iid], {"terminated"})[iid]
    reason = done["StateReason"]
    assert reason["Code"] == "Server.InternalError", reason
    assert "chunk 0" in reason["Message"] and "SHA-256" in reason["Message"], reason
    # Whatever the guest got to run, it never read its root disk.
    assert ROOT_READ not in console(ec2, iid)
    assert not domains() & {iid}
    # Nothing of the image is kept on the node (its temp file goes with its last user).
    assert sha not in cached_images_of(node)
    assert eventually(lambda: os.listdir(os.path.join(node_cache(node), "tmp")) == [] or None)


def cached_images_of(node):
    path = os.path.join(node_cache(node), "sha256")
    return sorted(os.listdir(path)) if os.path.isdir(path) else []
