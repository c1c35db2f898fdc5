"""The web console with a real instance (issue 13): the administrators' dashboard shows what
runs where, `DescribeInstances verbose` shows every account's instances to an administrator,
and a person's resources page lists the instance and terminates it through
TerminateInstances.
"""

import socket

from console import Browser, Session, artifact_dir, sign_in_admin
from test_instances import guest, guest_images, wait_state  # noqa: F401 (fixtures)

PASSWORD = "koala-console-1"


def test_the_dashboard_and_resources_show_a_real_instance(cloud, ec2, guest_images):  # noqa: F811
    eki, eri, emi = guest_images
    ec2.create_key_pair(KeyName="console-key")
    ran = ec2.run_instances(ImageId=emi, MinCount=1, MaxCount=1, InstanceType="m1.small",
                            KeyName="console-key")
    instance = ran["Instances"][0]["InstanceId"]
    try:
        wait_state(ec2, [instance], {"running"})
        verbose = ec2.describe_instances(InstanceIds=["verbose"])["Reservations"]
        assert instance in {i["InstanceId"] for r in verbose for i in r["Instances"]}

        s = sign_in_admin(cloud, PASSWORD)
        dashboard = s.get("/admin")
        assert dashboard.status == 200
        assert f'id="running-{instance}"' in dashboard.body
        node = socket.gethostname()
        assert f"cluster01 · node {node}" in dashboard.body, dashboard.body[:3000]

        b = Browser(artifact_dir("instances"))
        try:
            b.sign_in(cloud, "admin", PASSWORD)
            b.open(cloud.console_url + "admin")
            assert b.text(f"#running-{instance} .state") == "running"
            assert int(b.text("#count-running")) >= 1
            b.shot("dashboard")
            b.open(cloud.console_url + "resources")
            assert b.text(f"#instance-{instance} .state") == "running"
            assert b.find_all("#keypair-console-key")
            assert b.find_all("#group-default")
            b.shot("resources")
            b.press(f"#instance-{instance} button")
            assert b.path == "/resources"
            assert b.text(f"#instance-{instance} .state") in ("shutting-down", "terminated")
        finally:
            b.close()
        wait_state(ec2, [instance], {"terminated"}, timeout=120)
    finally:
        ec2.terminate_instances(InstanceIds=[instance])
        ec2.delete_key_pair(KeyName="console-key")
