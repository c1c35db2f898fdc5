"""Real instances through the real `koala up`: Koala's test guest (scripts/build-test-guest: a
Debian kernel, a busybox initramfs, a 64 MiB ext4 root disk) bundled by our euca-bundle-image,
uploaded, registered, then run, described, rebooted and terminated with the aws CLI, boto3
and our euca-* tools. Guests boot under QEMU's TCG here (10-20 s each), so the tests boot
few of them. Each fault case ends in `terminated` with a `stateReason` saying why, and
leaves no domain and no disk behind."""

import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

from conftest import (KOALA_BIN, REPO, Cloud, assert_ec2_error, assert_error, empty_and_delete,
                      free_port, make_client, make_ec2, raw_request, unique_bucket)
from test_ec2_cloud import describe_properties, query
from test_ec2_images import TOOLS, upload

GUEST_DIR = os.path.join(REPO, "target", "tmp", "test-guest")
MARKER = "KOALA-GUEST-READY"
DISKS = "KOALA-GUEST-DISKS"
# Under TCG on 2 busy cores a guest reaches its marker in 8-40 s.
BOOT_TIMEOUT = 240


@pytest.fixture(scope="session")
def guest():
    """The test guest's kernel, ramdisk and root disk (built once, cached in target/tmp)."""
    subprocess.run([os.path.join(REPO, "scripts", "build-test-guest"), GUEST_DIR],
                   check=True, timeout=1200)
    return {"kernel": os.path.join(GUEST_DIR, "vmlinux"),
            "ramdisk": os.path.join(GUEST_DIR, "initrd.img"),
            "disk": os.path.join(GUEST_DIR, "disk.img")}


def bundle_file(cloud, tmp_path, path, extra=()):
    """Bundles the file at `path` with euca-bundle-image; (manifest, parts)."""
    name = os.path.basename(path)
    dest = tmp_path / f"{name}-{uuid.uuid4().hex[:6]}"
    dest.mkdir()
    cmd = [os.path.join(TOOLS, "euca-bundle-image"), "-i", path, "-r", "x86_64",
           "-d", str(dest), "--no-progress", *extra]
    result = subprocess.run(cmd, env=cloud.admin_env(), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    manifest = dest / f"{name}.manifest.xml"
    parts = sorted(p for p in dest.iterdir() if ".part." in p.name)
    return manifest, parts


def register_guest(cloud, s3, ec2, tmp_path, guest, disk=None):
    """Registers the guest's kernel, ramdisk and a machine image of `disk` (the guest's root
    disk by default); (eki, eri, emi, bucket)."""
    bucket = unique_bucket("guest")
    s3.create_bucket(Bucket=bucket)
    tag = uuid.uuid4().hex[:8]
    km, kp = bundle_file(cloud, tmp_path, guest["kernel"], ["--kernel", "true"])
    rm, rp = bundle_file(cloud, tmp_path, guest["ramdisk"], ["--ramdisk", "true"])
    eki = ec2.register_image(ImageLocation=upload(s3, bucket, "k", km, kp),
                             Name=f"guest-kernel-{tag}")["ImageId"]
    eri = ec2.register_image(ImageLocation=upload(s3, bucket, "r", rm, rp),
                             Name=f"guest-ramdisk-{tag}")["ImageId"]
    mm, mp = bundle_file(cloud, tmp_path, disk or guest["disk"],
                         ["--kernel", eki, "--ramdisk", eri])
    emi = ec2.register_image(ImageLocation=upload(s3, bucket, "m", mm, mp),
                             Name=f"guest-{tag}")["ImageId"]
    return eki, eri, emi, bucket


def cli(aws, *args):
    """Runs the aws CLI on the eucarc's endpoints (AWS_ENDPOINT_URL_EC2); its stdout."""
    return aws(*args, endpoint=False).stdout


def instances(ec2, ids):
    """The instances by id, as DescribeInstances shows them."""
    found = {}
    for r in ec2.describe_instances(InstanceIds=list(ids))["Reservations"]:
        for i in r["Instances"]:
            found[i["InstanceId"]] = i
    return found


def wait_state(ec2, ids, states, timeout=BOOT_TIMEOUT):
    """Waits until every instance is in one of `states`; the last description."""
    deadline = time.monotonic() + timeout
    while True:
        seen = instances(ec2, ids)
        if all(seen[i]["State"]["Name"] in states for i in ids):
            return seen
        if time.monotonic() > deadline:
            pytest.fail(f"instances not {states} within {timeout} s: "
                        + json.dumps({i: (s["State"], s.get("StateReason")) for i, s in
                                      seen.items()}))
        time.sleep(1)


def console(ec2, instance_id):
    out = ec2.get_console_output(InstanceId=instance_id)
    assert out["InstanceId"] == instance_id
    return out.get("Output") or ""


def markers(ec2, instance_id):
    return [line.strip() for line in console(ec2, instance_id).splitlines()
            if line.startswith(MARKER) or f"\n{MARKER}" in line or MARKER in line]


def wait_markers(ec2, instance_id, count, timeout=BOOT_TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        found = [m[m.index(MARKER):] for m in markers(ec2, instance_id)]
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"{instance_id}: {count} marker(s) not on the console within {timeout} s;"
                        f" console:\n{console(ec2, instance_id)[-3000:]}")
        time.sleep(1)


def guest_disks(ec2, instance_id):
    """The block devices the guest saw, one {device: bytes} per boot (its DISKS lines)."""
    boots = []
    for line in console(ec2, instance_id).splitlines():
        if DISKS in line:
            fields = line[line.index(DISKS) + len(DISKS):].split()
            boots.append({k: int(v) for k, v in (f.split("=", 1) for f in fields)})
    return boots


def domains():
    """The names of the libvirt domains of the host."""
    out = subprocess.run(["virsh", "-c", "qemu:///system", "list", "--all", "--name"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return {line.strip() for line in out.splitlines() if line.strip()}


def qemu_nodes(instance_id):
    """The block nodes of the instance's QEMU, as its monitor lists them."""
    out = subprocess.run(["virsh", "-c", "qemu:///system", "qemu-monitor-command", instance_id,
                          '{"execute":"query-named-block-nodes","arguments":{"flat":true}}'],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return json.loads(out)["return"]


def eventually(probe, timeout=10):
    """The first value of `probe()` that is not None, polled for up to `timeout` s."""
    deadline = time.monotonic() + timeout
    while (value := probe()) is None:
        assert time.monotonic() < deadline, "waited in vain"
        time.sleep(0.1)
    return value


def instance_dir(cloud, instance_id):
    return os.path.join(cloud.data_dir, "node", "instances", instance_id)


def cached_images(cloud):
    path = os.path.join(cloud.data_dir, "node", "cache", "sha256")
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


def assert_cleaned_up(cloud, ids):
    """No domain, no disk, no config drive left of the instances; their logs stay."""
    left = domains() & set(ids)
    assert not left, f"domains left behind: {left}"
    for i in ids:
        d = instance_dir(cloud, i)
        assert not os.path.exists(os.path.join(d, "root")), f"{i}: root disk left"
        assert not os.path.exists(os.path.join(d, "config.iso")), f"{i}: config drive left"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@pytest.fixture(scope="module")
def guest_images(cloud, s3, ec2, guest, tmp_path_factory):
    """The guest registered in the session cloud: (eki, eri, emi)."""
    eki, eri, emi, bucket = register_guest(cloud, s3, ec2, tmp_path_factory.mktemp("guest"),
                                           guest)
    yield eki, eri, emi
    terminate_all(cloud)
    empty_and_delete(s3, bucket)


def test_aws_cli_runs_reboots_and_terminates_real_guests(cloud, aws, ec2, guest, guest_images):
    eki, eri, emi = guest_images
    cli(aws, "ec2", "create-key-pair", "--key-name", "cli-key")
    ran = json.loads(cli(aws, "ec2", "run-instances", "--image-id", emi, "--count", "2",
                            "--instance-type", "m1.small", "--key-name", "cli-key",
                            "--output", "json"))
    ids = [i["InstanceId"] for i in ran["Instances"]]
    assert len(ids) == 2 and ran["ReservationId"].startswith("r-")
    for i in ran["Instances"]:
        assert i["State"]["Name"] == "pending"
        assert (i["ImageId"], i["KernelId"], i["RamdiskId"]) == (emi, eki, eri)
        assert i["KeyName"] == "cli-key" and i["InstanceType"] == "m1.small"
    assert sorted(i["AmiLaunchIndex"] for i in ran["Instances"]) == [0, 1]

    wait_state(ec2, ids, {"running"})
    # Each guest read its own instance id and the key name from its config drive.
    for i in ids:
        assert wait_markers(ec2, i, 1) == [f"{MARKER} instance-id={i} key=cli-key"]
    described = json.loads(cli(aws, "ec2", "describe-instances", "--instance-ids", *ids,
                                  "--output", "json"))
    assert {i["InstanceId"] for r in described["Reservations"] for i in r["Instances"]} == set(ids)
    assert [r["ReservationId"] for r in described["Reservations"]] == [ran["ReservationId"]]
    status = json.loads(cli(aws, "ec2", "describe-instance-status", "--instance-ids", *ids,
                               "--output", "json"))["InstanceStatuses"]
    assert {(s["InstanceId"], s["InstanceState"]["Name"], s["InstanceStatus"]["Status"])
            for s in status} == {(i, "running", "ok") for i in ids}

    # The machine image is on the node once, its disks are copy-on-write clones of it.
    disk_sha = sha256_file(guest["disk"])
    assert disk_sha in cached_images(cloud)
    base_size = os.path.getsize(guest["disk"])
    for i in ids:
        root = os.path.join(instance_dir(cloud, i), "root")
        assert os.stat(root).st_blocks * 512 < base_size // 4, "the root disk is a full copy"
    assert set(ids) <= domains()

    # The VM type's disk holds the root disk (the image), 512 MiB of swap and an ephemeral
    # disk with the rest, as in Eucalyptus. The guest sees the root, ephemeral0, swap, then
    # the config drive; the blank disks are sparse files, taking no room until written.
    vm_type = describe_properties(cloud, "cloud.vmtypes.m1.small")["cloud.vmtypes.m1.small"][0]
    type_disk = int(vm_type.split()[2]) << 30
    swap = 512 << 20
    ephemeral = type_disk - base_size - swap
    for i in ids:
        d = instance_dir(cloud, i)
        assert guest_disks(ec2, i) == [{
            "vda": base_size, "vdb": ephemeral, "vdc": swap,
            "vdd": os.path.getsize(os.path.join(d, "config.iso"))}], console(ec2, i)[-3000:]
        for name, size in [("ephemeral0", ephemeral), ("swap", swap)]:
            blank = os.stat(os.path.join(d, name))
            assert blank.st_size == size, (i, name)
            assert blank.st_blocks * 512 < size // 1000, f"{i}: {name} is not sparse"

    # A reboot resets the guest: its marker comes a second time.
    cli(aws, "ec2", "reboot-instances", "--instance-ids", ids[0])
    wait_markers(ec2, ids[0], 2)
    assert len(wait_markers(ec2, ids[1], 1)) == 1
    rebooted = guest_disks(ec2, ids[0])
    assert len(rebooted) == 2 and rebooted[1] == rebooted[0], rebooted

    out = json.loads(cli(aws, "ec2", "terminate-instances", "--instance-ids", *ids,
                            "--output", "json"))["TerminatingInstances"]
    assert {(t["InstanceId"], t["PreviousState"]["Name"]) for t in out} == {
        (i, "running") for i in ids}
    done = wait_state(ec2, ids, {"terminated"}, timeout=60)
    for i in ids:
        assert done[i]["StateReason"]["Code"] == "Client.UserInitiatedShutdown"
    assert_cleaned_up(cloud, ids)
    for i in ids:
        for name in ["ephemeral0", "swap"]:
            assert not os.path.exists(os.path.join(instance_dir(cloud, i), name)), (i, name)
    # The cached base stays for the next launch; the console log stays readable.
    assert disk_sha in cached_images(cloud)
    assert wait_markers(ec2, ids[1], 1, timeout=5)
    # Terminating again is harmless; terminated instances cannot be rebooted.
    again = ec2.terminate_instances(InstanceIds=ids)["TerminatingInstances"]
    assert {t["CurrentState"]["Name"] for t in again} == {"terminated"}
    assert_ec2_error(ec2.reboot_instances, "IncorrectInstanceState", InstanceIds=[ids[0]])


def test_run_instances_refuses_bad_requests(cloud, ec2, ec2_other, guest_images):
    eki, eri, emi = guest_images
    run = ec2.run_instances
    assert_ec2_error(run, "InvalidAMIID.NotFound", ImageId="emi-00000000", MinCount=1,
                     MaxCount=1)
    assert_ec2_error(run, "InvalidAMIID.Malformed", ImageId="emi-xyz", MinCount=1, MaxCount=1)
    assert_ec2_error(run, "InvalidParameterValue", ImageId=eki, MinCount=1, MaxCount=1)
    assert_ec2_error(run, "InvalidParameterValue", ImageId=emi, MinCount=1, MaxCount=1,
                     InstanceType="m9.huge")
    assert_ec2_error(run, "InvalidParameterValue", ImageId=emi, MinCount=2, MaxCount=1)
    assert_ec2_error(run, "InvalidKeyPair.NotFound", ImageId=emi, MinCount=1, MaxCount=1,
                     KeyName="no-such-key")
    assert_ec2_error(run, "InvalidGroup.NotFound", ImageId=emi, MinCount=1, MaxCount=1,
                     SecurityGroups=["no-such-group"])
    assert_ec2_error(run, "InvalidParameterValue", ImageId=emi, MinCount=1, MaxCount=1,
                     Placement={"AvailabilityZone": "elsewhere"})
    assert_ec2_error(run, "InvalidParameterValue", ImageId=emi, MinCount=1, MaxCount=1,
                     UserData="x" * 20000)
    # More than the node holds (a 2-core node, c1.xlarge takes 2 cores each).
    assert_ec2_error(run, "InsufficientInstanceCapacity", ImageId=emi, MinCount=50,
                     MaxCount=50, status=503)
    # Another account sees neither the image (private) nor anything to terminate.
    assert_ec2_error(ec2_other.run_instances, "InvalidAMIID.NotFound", ImageId=emi,
                     MinCount=1, MaxCount=1)
    assert_ec2_error(ec2.describe_instances, "InvalidInstanceID.Malformed",
                     InstanceIds=["i-nothex!"])
    assert_ec2_error(ec2.terminate_instances, "InvalidInstanceID.NotFound",
                     InstanceIds=["i-0badc0de"])
    assert_ec2_error(ec2.get_console_output, "InvalidInstanceID.NotFound",
                     InstanceId="i-0badc0de")
    # None of these left an instance behind.
    left = [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
            if i["State"]["Name"] != "terminated"]
    assert left == []


# ---------------------------------------------------------------------------------------------
# Fault cases, each in a cloud of its own so that property changes and full caches stay there.


def terminate_all(c):
    """Terminates what a cloud still runs: stopping Koala leaves guests running (on purpose),
    and a test's cloud is deleted with its data dir."""
    if c.proc is None:
        return
    ec2 = make_ec2(c, c.access_key, c.secret_key)
    live = [i["InstanceId"] for r in ec2.describe_instances()["Reservations"]
            for i in r["Instances"] if i["State"]["Name"] != "terminated"]
    if live:
        ec2.terminate_instances(InstanceIds=live)
        wait_state(ec2, live, {"terminated"}, timeout=60)


@pytest.fixture
def fault_cloud():
    """Starts a private cloud with `koala.toml` text; stops and removes it at the end."""
    made = []

    def make(config=""):
        # Under /tmp, not pytest's 0700 tmp_path: QEMU's user must reach the node's disks.
        data_dir = tempfile.mkdtemp(prefix="koala-e2e-fault-")
        with open(os.path.join(data_dir, "koala.toml"), "w") as f:
            f.write(config)
        c = Cloud(data_dir).start()
        made.append(c)
        ec2 = make_ec2(c, c.access_key, c.secret_key)
        s3 = make_client(c.s3_url, c.region, c.access_key, c.secret_key)
        return c, ec2, s3

    yield make
    for c in made:
        terminate_all(c)
        c.stop()
        if os.environ.get("KOALA_KEEP_DATA") is None:
            shutil.rmtree(c.data_dir, ignore_errors=True)


def test_guest_power_off_libvirt_refusal_and_corrupt_image_end_in_terminated(
        fault_cloud, guest, tmp_path):
    # A node that offers many cores, so that a VM type with more vCPUs than QEMU's machine
    # allows passes placement and reaches libvirt.
    c, ec2, s3 = fault_cloud("[node]\ncores = 1024\n")
    eki, eri, emi, _ = register_guest(c, s3, ec2, tmp_path, guest)

    # A guest that powers off at once: terminated by the guest, its disks gone.
    off = ec2.run_instances(ImageId=emi, MinCount=1, MaxCount=1,
                            UserData="koala.poweroff")  # boto3 base64-encodes it
    off_id = off["Instances"][0]["InstanceId"]

    # libvirt refuses the domain (300 vCPUs: more than QEMU's pc machine takes).
    status, root = query(c, "ModifyPropertyValue",
                         [("Name", "cloud.vmtypes.c1.xlarge"), ("Value", "300 256 1")])
    assert status == 200, root
    refused = ec2.run_instances(ImageId=emi, MinCount=1, MaxCount=1, InstanceType="c1.xlarge")
    refused_id = refused["Instances"][0]["InstanceId"]

    # A corrupt image in Walrus: unbundled once, then damaged on Walrus' disk; the node
    # checks the SHA-256 and refuses it.
    odd_disk = tmp_path / "odd-disk.img"
    odd_disk.write_bytes(os.urandom(3 << 20))
    _, _, bad_emi, _ = register_guest(c, s3, ec2, tmp_path, guest, disk=str(odd_disk))
    location = ec2.describe_images(ImageIds=[bad_emi])["Images"][0]["ImageLocation"]
    akid, secret, cert = c.component("nc-")
    status, headers, _ = raw_request(c, "HEAD", "/_koala/images",
                                     query="manifest=" + location.replace("/", "%2F"),
                                     access_key=akid, secret_key=secret, cert=cert)
    assert status == 200
    plain = os.path.join(c.data_dir, "walrus", "images", "sha256",
                         headers["x-koala-image-sha256"])
    os.chmod(plain, 0o644)
    with open(plain, "r+b") as f:
        f.seek(1 << 20)
        f.write(b"\xff" * 16)
    corrupt = ec2.run_instances(ImageId=bad_emi, MinCount=1, MaxCount=1)
    corrupt_id = corrupt["Instances"][0]["InstanceId"]

    ids = [off_id, refused_id, corrupt_id]
    done = wait_state(ec2, ids, {"terminated"})
    reasons = {i: done[i]["StateReason"] for i in ids}
    assert reasons[off_id]["Code"] == "Client.InstanceInitiatedShutdown", reasons
    assert reasons[refused_id]["Code"] == "Server.InternalError", reasons
    assert "libvirt refused" in reasons[refused_id]["Message"], reasons
    assert reasons[corrupt_id]["Code"] == "Server.InternalError", reasons
    assert "SHA-256" in reasons[corrupt_id]["Message"], reasons
    assert wait_markers(ec2, off_id, 1, timeout=5)
    assert_cleaned_up(c, ids)
    # The corrupt image was not kept on the node.
    assert headers["x-koala-image-sha256"] not in cached_images(c)


def test_full_cache_ends_the_instance_with_the_reason(fault_cloud, guest, tmp_path):
    c, ec2, s3 = fault_cloud("[node]\ncache_mib = 1\n")
    _, _, emi, _ = register_guest(c, s3, ec2, tmp_path, guest)
    ran = ec2.run_instances(ImageId=emi, MinCount=1, MaxCount=1)
    iid = ran["Instances"][0]["InstanceId"]
    done = wait_state(ec2, [iid], {"terminated"}, timeout=120)
    reason = done[iid]["StateReason"]
    assert reason["Code"] == "Server.InternalError"
    assert "cannot make room" in reason["Message"], reason
    assert_cleaned_up(c, [iid])
    assert cached_images(c) == []


def euca(cloud, command, *args):
    """Runs one of our euca2ools commands with the admin's eucarc; its stdout."""
    result = subprocess.run([os.path.join(TOOLS, command), *args], env=cloud.admin_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{command} {args}: {result.stderr}"
    return result.stdout


def rows(output, kind):
    return [line.split("\t") for line in output.splitlines() if line.startswith(kind + "\t")]


def test_euca2ools_spine_from_bundle_to_termination(cloud, guest, tmp_path):
    tag = uuid.uuid4().hex[:8]
    bucket = f"euca-spine-{tag}"

    def bundle_upload_register(path, name, extra):
        dest = tmp_path / name
        euca(cloud, "euca-bundle-image", "-i", path, "-r", "x86_64", "-d", str(dest),
             "--no-progress", *extra)
        manifest = dest / (os.path.basename(path) + ".manifest.xml")
        euca(cloud, "euca-upload-bundle", "-b", f"{bucket}/{name}", "-m", str(manifest))
        out = euca(cloud, "euca-register", f"{bucket}/{name}/{manifest.name}",
                   "-n", f"{name}-{tag}")
        return rows(out, "IMAGE")[0][1]

    eki = bundle_upload_register(guest["kernel"], "kernel", ["--kernel", "true"])
    eri = bundle_upload_register(guest["ramdisk"], "ramdisk", ["--ramdisk", "true"])
    emi = bundle_upload_register(guest["disk"], "machine", ["--kernel", eki, "--ramdisk", eri])
    key = f"euca-key-{tag}"
    assert euca(cloud, "euca-create-keypair", key).startswith("KEYPAIR\t" + key)

    out = euca(cloud, "euca-run-instances", emi, "-n", "2", "-k", key, "-t", "m1.small")
    reservation = rows(out, "RESERVATION")
    assert len(reservation) == 1 and reservation[0][1].startswith("r-")
    started = rows(out, "INSTANCE")
    ids = [r[1] for r in started]
    assert len(ids) == 2 and all(r[2] == emi and r[5] == "pending" for r in started), out

    ec2 = make_ec2(cloud, cloud.access_key, cloud.secret_key)
    wait_state(ec2, ids, {"running"})
    described = rows(euca(cloud, "euca-describe-instances", *ids), "INSTANCE")
    assert {(r[1], r[5], r[6], r[12], r[13]) for r in described} == {
        (i, "running", key, eki, eri) for i in ids}
    for i in ids:
        wait_markers(ec2, i, 1)
        text = euca(cloud, "euca-get-console-output", i)
        assert text.splitlines()[0] == i
        assert f"{MARKER} instance-id={i} key={key}" in text

    euca(cloud, "euca-reboot-instances", ids[0])
    wait_markers(ec2, ids[0], 2)

    out = euca(cloud, "euca-terminate-instances", *ids)
    assert {tuple(r[1:]) for r in rows(out, "INSTANCE")} == {
        (i, "running", "terminated") for i in ids}
    wait_state(ec2, ids, {"terminated"}, timeout=60)
    assert_cleaned_up(cloud, ids)
    assert sha256_file(guest["disk"]) in cached_images(cloud)


def test_restart_mid_boot_adopts_running_guests_and_ends_interrupted_starts(
        fault_cloud, guest, tmp_path):
    c, ec2, s3 = fault_cloud()
    _, _, emi, _ = register_guest(c, s3, ec2, tmp_path, guest)
    # A second machine image large enough that its first start (Walrus unbundles it, the node
    # fetches it) is still under way when the cloud is killed.
    slow_disk = tmp_path / "slow-disk.img"
    slow_disk.write_bytes(os.urandom(256 << 20))
    _, _, slow_emi, _ = register_guest(c, s3, ec2, tmp_path, guest, disk=str(slow_disk))

    alive = ec2.run_instances(ImageId=emi, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    wait_state(ec2, [alive], {"running"})
    # Its image fetched whole and the guest moved onto the cached copy: a guest still reading
    # its root through the node's export of the image (a miss boots so) loses it with the node.
    cached = os.path.join(c.data_dir, "node", "cache", "sha256", sha256_file(guest["disk"]))
    assert eventually(lambda: not any("nbd" in n["file"] for n in qemu_nodes(alive)) or None,
                      timeout=120)
    assert cached in {n["file"] for n in qemu_nodes(alive)}
    starting = ec2.run_instances(ImageId=slow_emi, MinCount=1,
                                 MaxCount=1)["Instances"][0]["InstanceId"]
    c.proc.kill()  # SIGKILL: the node controller dies mid-boot, with the cloud
    c.proc.wait()
    c.proc = None
    c.start()

    # The running guest was adopted: same domain, still running, its console intact.
    assert alive in domains()
    assert wait_state(ec2, [alive], {"running"}, timeout=30)[alive]["State"]["Name"] == "running"
    wait_markers(ec2, alive, 1, timeout=30)
    # The interrupted start ended with the reason; nothing of it is left.
    done = wait_state(ec2, [starting], {"terminated"}, timeout=60)
    reason = done[starting]["StateReason"]
    assert reason["Code"] == "Server.InternalError"
    assert "restarted while the instance was starting" in reason["Message"], reason
    assert_cleaned_up(c, [starting])

    ec2.terminate_instances(InstanceIds=[alive])
    wait_state(ec2, [alive], {"terminated"}, timeout=60)
    assert_cleaned_up(c, [alive])


@pytest.fixture
def xfs_dir():
    """A loop-mounted XFS file system with reflinks (CI runs as root), removed at the end."""
    if os.environ.get("KOALA_SKIP_XFS"):
        pytest.skip("KOALA_SKIP_XFS is set")
    base = tempfile.mkdtemp(prefix="koala-xfs-")
    os.chmod(base, 0o755)
    image, mnt = os.path.join(base, "fs.img"), os.path.join(base, "mnt")
    os.mkdir(mnt)
    with open(image, "wb") as f:
        f.truncate(2 << 30)
    subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", image], check=True, timeout=120)
    subprocess.run(["mount", "-o", "loop", image, mnt], check=True, timeout=60)
    os.chmod(mnt, 0o755)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", mnt], timeout=60)
        shutil.rmtree(base, ignore_errors=True)


def test_instance_disks_are_reflinks_on_xfs(xfs_dir, fault_cloud, guest, tmp_path):
    # xfs_dir first: its teardown (umount) runs after the cloud has stopped.
    c, ec2, s3 = fault_cloud(f'[node]\ndir = "{xfs_dir}/node"\n')
    _, _, emi, _ = register_guest(c, s3, ec2, tmp_path, guest)
    # A miss boots from the image as it arrives (an overlay on the node's NBD export of it);
    # once the image is cached, the next instance is a hit.
    cached = os.path.join(xfs_dir, "node", "cache", "sha256", sha256_file(guest["disk"]))
    first = ec2.run_instances(ImageId=emi, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    wait_state(ec2, [first], {"running"})
    deadline = time.monotonic() + 120
    while not os.path.exists(cached):
        assert time.monotonic() < deadline, "the image was not cached"
        time.sleep(0.5)
    ec2.terminate_instances(InstanceIds=[first])
    iid = ec2.run_instances(ImageId=emi, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    wait_state(ec2, [iid], {"running"})
    wait_markers(ec2, iid, 1)
    xml = subprocess.run(["virsh", "-c", "qemu:///system", "dumpxml", iid], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    root = os.path.join(xfs_dir, "node", "instances", iid, "root")
    # A raw clone of the whole image (no qcow2 overlay), sharing the cached image's extents.
    assert f"<source file='{root}'" in xml and "type='raw'" in xml, xml
    assert os.path.getsize(root) == os.path.getsize(guest["disk"])
    ec2.terminate_instances(InstanceIds=[iid])
    wait_state(ec2, [iid], {"terminated"}, timeout=60)
    assert not os.path.exists(root)
    assert sha256_file(guest["disk"]) in os.listdir(os.path.join(xfs_dir, "node", "cache",
                                                                 "sha256"))


class Role:
    """One `koala cloud|cluster|node` process with its own data dir."""

    def __init__(self, args, port, env, config="", files=None, netns=None):
        self.data_dir = tempfile.mkdtemp(prefix="koala-e2e-role-")
        os.chmod(self.data_dir, 0o755)
        if config:
            with open(os.path.join(self.data_dir, "koala.toml"), "w") as f:
                f.write(config)
        for name, source in (files or {}).items():  # what the admin copies to the host
            os.makedirs(os.path.dirname(os.path.join(self.data_dir, name)), exist_ok=True)
            shutil.copy(source, os.path.join(self.data_dir, name))
        self.port, self.args, self.env, self.netns = port, args, env, netns
        self.log = open(os.path.join(self.data_dir, "koala.log"), "ab")
        self.spawn()

    def spawn(self):
        """Starts the process and waits until it listens."""
        # A role inside a network namespace stands for one on another host.
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        self.proc = subprocess.Popen(
            [*prefix, KOALA_BIN, *self.args, "--data-dir", self.data_dir, "--listen",
             f"127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env)
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, f"koala {self.args[0]} exited:\n{self.tail()}"
            try:
                if self.netns:
                    from netns import connect_in
                    connect_in(self.netns, ("127.0.0.1", self.port), timeout=0.5).close()
                    return
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                assert time.monotonic() < deadline, f"koala {self.args[0]} did not listen"
                time.sleep(0.1)

    def kill(self):
        """Kills the process at once (kill -9), keeping its data dir for a later `spawn`."""
        self.proc.kill()
        self.proc.wait()

    def tail(self):
        with open(os.path.join(self.data_dir, "koala.log"), "rb") as f:
            return f.read()[-3000:].decode(errors="replace")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        if os.environ.get("KOALA_KEEP_DATA") is None:
            shutil.rmtree(self.data_dir, ignore_errors=True)


class Apart:
    """The roles of a cloud whose CLC `c` already runs (`koala cloud --walrus-url` of
    `walrus_port`): its cluster (on `c`'s port + 1), one node and Walrus, each a process of
    its own, the node registered. `roles` is every process, to stop."""

    def __init__(self, c, walrus_port, node_config):
        self.roles = []
        env = c.admin_env()
        cloud_url = c.root_url.replace("http://", "https://")
        walrus_url = f"http://127.0.0.1:{walrus_port}/services/Walrus"
        node_port = free_port()
        try:
            self.roles.append(Role(["cluster", "--cloud-url", cloud_url], c.port + 1, env))
            self.node = Role(["node", "--cloud-url", cloud_url, "--walrus-url", walrus_url],
                             node_port, env, node_config)
            self.roles.append(self.node)
            key = os.path.join("keys", "cloud-pk.pem")
            self.walrus = Role(["walrus", "--cloud-url", cloud_url], walrus_port, env,
                               files={key: os.path.join(c.data_dir, key)})
            self.roles.append(self.walrus)
            out = subprocess.run([os.path.join(TOOLS, "euca_conf"), "--register-nodes",
                                  f"127.0.0.1:{node_port}", "--cluster-url",
                                  f"http://127.0.0.1:{c.port + 1}"], env=env,
                                 capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr
        except BaseException:
            # The caller never gets the object to stop: stop what started here.
            self.stop()
            raise

    def stop(self):
        for r in self.roles:
            r.stop()


def small_slots(ec2):
    """The verbose zone listing's m1.small line: `FREE / MAX ...`."""
    zones = ec2.describe_availability_zones(ZoneNames=["verbose"])["AvailabilityZones"]
    return {z["ZoneName"]: z["State"] for z in zones}["|- m1.small"]


def test_roles_as_separate_processes_spread_instances_over_two_nodes(guest, tmp_path):
    port, walrus_port = free_port(), free_port()
    walrus_url = f"http://127.0.0.1:{walrus_port}/services/Walrus"
    cloud_dir = tempfile.mkdtemp(prefix="koala-e2e-cloud-")
    c = Cloud(cloud_dir, port=port)
    roles = []
    try:
        c.start(command="cloud", args=["--walrus-url", walrus_url])
        assert c.s3_url == walrus_url, c.env
        env = c.admin_env()
        # Components register and call over TLS, trusting the cloud certificate the admin's
        # eucarc names; users keep the plain URLs.
        cloud_url = c.root_url.replace("http://", "https://")
        roles.append(Role(["cluster", "--cloud-url", cloud_url], port + 1, env))
        node_ports = [free_port(), free_port()]
        for name, node_port in zip(["node-a", "node-b"], node_ports):
            roles.append(Role(["node", "--cloud-url", cloud_url, "--walrus-url", walrus_url],
                              node_port, env, f'[node]\nhost = "{name}"\ncores = 1\n'))
        # Walrus on its own port and data dir, serving the CLC's users; the cloud's key is
        # copied to its host by the admin (it never crosses the network). Without it Walrus
        # refuses to start, saying so.
        key = os.path.join("keys", "cloud-pk.pem")
        with pytest.raises(AssertionError, match="cannot read the cloud's key"):
            Role(["walrus", "--cloud-url", cloud_url], walrus_port, env).stop()
        walrus = Role(["walrus", "--cloud-url", cloud_url], walrus_port, env,
                      files={key: os.path.join(cloud_dir, key)})
        roles.append(walrus)
        euca_conf = os.path.join(TOOLS, "euca_conf")
        nodes = " ".join(f"127.0.0.1:{p}" for p in node_ports)
        out = subprocess.run([euca_conf, "--register-nodes", nodes, "--cluster-url",
                              f"http://127.0.0.1:{port + 1}"], env=env, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "(node-a): 1 cores" in out.stdout and "(node-b): 1 cores" in out.stdout, out.stdout

        ec2 = make_ec2(c, c.access_key, c.secret_key)
        s3 = make_client(c.s3_url, c.region, c.access_key, c.secret_key)
        # Walrus knows the CLC's accounts: grants to another account work, to no account not.
        other = c.create_account("walrus-grantee")
        s3.create_bucket(Bucket="shared")
        s3.put_object(Bucket="shared", Key="k", Body=b"hello")
        s3.put_object_acl(Bucket="shared", Key="k", GrantRead=f'id="{other["EC2_USER_ID"]}"')
        theirs = make_client(walrus_url, c.region, other["AWS_ACCESS_KEY_ID"],
                             other["AWS_SECRET_ACCESS_KEY"])
        assert theirs.get_object(Bucket="shared", Key="k")["Body"].read() == b"hello"
        assert_error(s3.put_object_acl, "InvalidArgument", 400, Bucket="shared", Key="k",
                     GrantRead='id="999999999999"')
        # A bundle registers through the CLC, which reads its manifest from Walrus with the
        # caller's rights: another account's private manifest is refused.
        _, _, emi, _ = register_guest(c, s3, ec2, tmp_path, guest)
        manifest = ec2.describe_images(ImageIds=[emi])["Images"][0]["ImageLocation"]
        theirs_ec2 = make_ec2(c, other["AWS_ACCESS_KEY_ID"], other["AWS_SECRET_ACCESS_KEY"])
        assert_ec2_error(theirs_ec2.register_image, "AuthFailure", ImageLocation=manifest,
                         Name="not-theirs")
        assert small_slots(ec2).startswith("0002 / 0002")

        # One core each: the first instance fills a node, the second goes to the other.
        first = ec2.run_instances(ImageId=emi, MinCount=1, MaxCount=1)["Instances"][0]
        second = ec2.run_instances(ImageId=emi, MinCount=1, MaxCount=1)["Instances"][0]
        ids = [first["InstanceId"], second["InstanceId"]]
        wait_state(ec2, ids, {"running"})
        for i in ids:
            wait_markers(ec2, i, 1)
        homes = {i: [r.data_dir for r in roles[1:]
                     if os.path.isdir(os.path.join(r.data_dir, "node", "instances", i))]
                 for i in ids}
        assert sorted(len(h) for h in homes.values()) == [1, 1], homes
        assert homes[ids[0]] != homes[ids[1]], homes
        # Kernel, ramdisk and image were unbundled once, by the Walrus apart, in its own
        # data dir.
        feed = os.path.join(walrus.data_dir, "walrus", "images", "sha256")
        assert sorted(os.listdir(feed)) == sorted(sha256_file(guest[part])
                                                  for part in ("kernel", "ramdisk", "disk"))
        assert_ec2_error(ec2.run_instances, "InsufficientInstanceCapacity", ImageId=emi,
                         MinCount=1, MaxCount=1)
        # Reboot and console go through the CC to the instance's own node.
        ec2.reboot_instances(InstanceIds=[ids[1]])
        wait_markers(ec2, ids[1], 2)
        assert len(markers(ec2, ids[0])) == 1

        ec2.terminate_instances(InstanceIds=ids)
        wait_state(ec2, ids, {"terminated"}, timeout=60)
        assert not domains() & set(ids)

        # Deregistering a node removes its room and revokes its principal.
        out = subprocess.run([euca_conf, "--deregister-nodes", f"127.0.0.1:{node_ports[1]}",
                              "--cluster-url", f"http://127.0.0.1:{port + 1}"], env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "revoked nc-node-b" in out.stdout, out.stdout
        keys = subprocess.run([KOALA_BIN, "admin", "list-access-keys", "--user", "nc-node-b"],
                              env=env, capture_output=True, text=True, timeout=60)
        assert keys.returncode == 0 and keys.stdout.strip() == "", keys
        # The CC polls its nodes every 2 s: node-a's room shows again after its next poll.
        deadline = time.monotonic() + 15
        while not small_slots(ec2).startswith("0001 / 0001"):
            assert time.monotonic() < deadline, small_slots(ec2)
            time.sleep(0.5)

        # A second cluster with a node of its own, registered with euca_conf as zone-b.
        cc_b_port, node_c_port = free_port(), free_port()
        roles.append(Role(["cluster", "--cloud-url", cloud_url], cc_b_port, env,
                          'zone = "zone-b"\n'))
        roles.append(Role(["node", "--cloud-url", cloud_url, "--walrus-url", walrus_url],
                          node_c_port, env, '[node]\nhost = "node-c"\ncores = 1\n'))

        def conf(*args):
            out = subprocess.run([euca_conf, *args], env=env, capture_output=True, text=True,
                                 timeout=60)
            return out.returncode, out.stdout + out.stderr

        # As the Eucalyptus 1.5 guides print it (`-addcluster NAME HOST`, `-addnode "HOSTS"`).
        code, out = conf("-addcluster", "zone-b", "127.0.0.1", "--port", str(cc_b_port))
        assert code == 0 and "Registered cluster zone-b" in out, out
        code, out = conf("-addnode", f"127.0.0.1:{node_c_port}", "--cluster-url",
                         f"http://127.0.0.1:{cc_b_port}")
        assert code == 0 and "(node-c): 1 cores" in out, out
        zones = {z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]}
        assert zones == {"cluster01", "zone-b"}, zones
        code, out = conf("--list-clusters")
        listed = [line.split("\t") for line in out.splitlines()]
        assert ["CLUSTER", "zone-b", f"https://127.0.0.1:{cc_b_port}", "ENABLED",
                "1 node(s)"] in listed, out
        in_b = ec2.run_instances(ImageId=emi, MinCount=1, MaxCount=1,
                                 Placement={"AvailabilityZone": "zone-b"})["Instances"][0]
        assert in_b["Placement"]["AvailabilityZone"] == "zone-b", in_b
        b_id = in_b["InstanceId"]
        wait_state(ec2, [b_id], {"running"})
        wait_markers(ec2, b_id, 1)
        assert os.path.isdir(os.path.join(roles[-1].data_dir, "node", "instances", b_id))
        assert_ec2_error(ec2.run_instances, "InvalidParameterValue", ImageId=emi, MinCount=1,
                         MaxCount=1, Placement={"AvailabilityZone": "zone-c"})
        # A cluster with live instances stays; once they are gone it can go, key and all.
        code, out = conf("--deregister-cluster", "--partition", "zone-b")
        assert code != 0 and "still has 1 instance" in out, out
        ec2.terminate_instances(InstanceIds=[b_id])
        wait_state(ec2, [b_id], {"terminated"}, timeout=60)
        code, out = conf("-delcluster", "zone-b")
        assert code == 0 and "revoked cc-zone-b" in out, out
        zones = {z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]}
        assert zones == {"cluster01"}, zones

        # A node that dies mid-boot (here while its first fetch of a new image runs) and does
        # not come back: the instance ends at its start timeout, with the reason.
        status, root = query(c, "ModifyPropertyValue",
                             [("Name", "cloud.instances.start_timeout"), ("Value", "5")])
        assert status == 200, root
        slow_disk = tmp_path / "slow-disk.img"
        slow_disk.write_bytes(os.urandom(256 << 20))
        _, _, slow_emi, _ = register_guest(c, s3, ec2, tmp_path, guest, disk=str(slow_disk))
        doomed = ec2.run_instances(ImageId=slow_emi, MinCount=1,
                                   MaxCount=1)["Instances"][0]["InstanceId"]
        roles[1].proc.kill()  # node-a, the one node left
        done = wait_state(ec2, [doomed], {"terminated"}, timeout=120)
        reason = done[doomed]["StateReason"]
        assert reason["Code"] == "Server.InternalError", reason
        assert "no node reported the instance within 5 s" in reason["Message"], reason
        assert doomed not in domains()
    finally:
        try:
            terminate_all(c)  # a failed assertion must not leave guests running
        finally:
            for r in roles:
                r.stop()
            c.stop()
        shutil.rmtree(cloud_dir, ignore_errors=True)
