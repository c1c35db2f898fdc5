"""Per-account quotas as a user meets them: cloud properties the administrator sets with our
euca-modify-property while the cloud runs, refused with the codes AWS-compatible clients
know: EC2 ResourceLimitExceeded and InstanceLimitExceeded, seen by boto3, the aws CLI and
our euca2ools. Each test runs a cloud of its own, so that its limits hold back no other
suite."""

import os
import subprocess

from conftest import AwsCli, assert_ec2_error, make_client, make_ec2
from test_ec2_images import TOOLS, bundle, upload
from test_instances import guest  # noqa: F401 (the test guest fixture, built once)


def euca(cloud, command, *args, check=True):
    """One of our euca2ools commands with the admin's eucarc: (exit code, stdout, stderr)."""
    result = subprocess.run([os.path.join(TOOLS, command), *args], env=cloud.admin_env(),
                            capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, f"{command} {args}: {result.stderr}"
    return result.returncode, result.stdout, result.stderr


def set_quota(cloud, name, value):
    """euca-modify-property -p NAME=VALUE, checked with euca-describe-properties."""
    euca(cloud, "euca-modify-property", "-p", f"{name}={value}")
    _, out, _ = euca(cloud, "euca-describe-properties", name)
    assert f"PROPERTY\t{name}\t{value}" in out, out


def aws_cli(cloud, tmp_path):
    """The aws CLI with the cloud admin's eucarc, isolated from ~/.aws."""
    home = tmp_path / "aws-home"
    home.mkdir(parents=True)
    config = home / "config"
    config.write_text("[default]\ns3 =\n    addressing_style = path\n")
    env = cloud.admin_env()
    env.update({"HOME": str(home), "AWS_CONFIG_FILE": str(config),
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_PAGER": "",
                "AWS_MAX_ATTEMPTS": "1"})
    return AwsCli(cloud, env, str(home))


def test_image_and_instance_quotas(cloud_factory, guest, tmp_path):
    from test_instances import register_guest, terminate_all, wait_state
    c = cloud_factory()
    ec2 = make_ec2(c, c.access_key, c.secret_key)
    s3 = make_client(c.s3_url, c.region, c.access_key, c.secret_key)
    set_quota(c, "cloud.quota.images_per_account", "3")
    _, _, emi, bucket = register_guest(c, s3, ec2, tmp_path, guest)
    manifest, parts = bundle(c, tmp_path, "fourth", 20_000, ["--kernel", "true"])
    location = upload(s3, bucket, "fourth", manifest, parts)
    refused = assert_ec2_error(ec2.register_image, "ResourceLimitExceeded", status=400,
                               ImageLocation=location, Name="fourth")
    assert "cloud.quota.images_per_account" in refused["Error"]["Message"]
    code, _, err = euca(c, "euca-register", location, "-n", "fourth", check=False)
    assert code != 0 and "ResourceLimitExceeded" in err, err

    try:
        set_quota(c, "cloud.quota.instances_per_account", "1")
        # MaxCount past the quota launches what fits; MinCount past it is refused.
        first = ec2.run_instances(ImageId=emi, MinCount=1, MaxCount=3)["Instances"]
        assert len(first) == 1
        refused = assert_ec2_error(ec2.run_instances, "InstanceLimitExceeded", status=400,
                                   ImageId=emi, MinCount=1, MaxCount=1)
        assert "cloud.quota.instances_per_account" in refused["Error"]["Message"]
        aws = aws_cli(c, tmp_path)
        out = aws("ec2", "run-instances", "--image-id", emi, "--count", "1",
                  endpoint=c.env["EC2_URL"], check=False)
        assert out.returncode != 0 and "InstanceLimitExceeded" in out.stderr, out.stderr
        code, _, err = euca(c, "euca-run-instances", emi, check=False)
        assert code != 0 and "InstanceLimitExceeded" in err, err
        # A terminated instance no longer counts.
        ec2.terminate_instances(InstanceIds=[first[0]["InstanceId"]])
        wait_state(ec2, [first[0]["InstanceId"]], {"terminated"}, timeout=120)
        again = ec2.run_instances(ImageId=emi, MinCount=1, MaxCount=1)["Instances"]
        assert len(again) == 1
    finally:
        terminate_all(c)
    # Deregistering makes room for another image.
    ec2.deregister_image(ImageId=emi)
    assert ec2.register_image(ImageLocation=location, Name="fourth")["ImageId"].startswith("eki-")
