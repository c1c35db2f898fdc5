//! The instance metadata service over real HTTP: `koala up` with a MANAGED `[network]` table
//! serves it on `metadata_listen`, and answers each client by its source address. No
//! instance has a loopback address, so every request from here gets a 404 (what each
//! instance reads is tested beside the handler, in ec2-api's metadata.rs).

use std::net::TcpListener;

use tests::Cloud;

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    listener.local_addr().expect("local addr").port()
}

/// What a request got: status, Content-Type, body.
fn call(method: &str, url: &str) -> (u16, String, String) {
    let response = match ureq::request(method, url).call() {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = response.status();
    let content_type = response.header("Content-Type").unwrap_or("").to_owned();
    let allow = response.header("Allow").map(str::to_owned);
    let body = response.into_string().expect("a text body");
    if status == 405 {
        assert_eq!(allow.as_deref(), Some("GET, HEAD"), "{method} {url}");
    }
    (status, content_type, body)
}

#[test]
fn the_metadata_service_listens_and_answers_no_instance_at_loopback() {
    let port = free_port();
    let cloud = Cloud::start_with(&format!(
        "[network]\nmode = \"managed-novlan\"\nbridge = \"kbr-none\"\n\
         private_subnet = \"10.77.0.0/24\"\nmetadata_listen = \"127.0.0.1:{port}\"\n"
    ));
    let base = format!("http://127.0.0.1:{port}");
    assert!(
        cloud.banner.contains(&format!(
            "The instance metadata service is serving at {base}/latest/meta-data/"
        )),
        "banner: {}",
        cloud.banner
    );
    let none = "No instance of this cloud has the address 127.0.0.1.\n";
    for path in [
        "/",
        "/latest/",
        "/latest/meta-data/",
        "/latest/meta-data/instance-id",
        "/2009-04-04/meta-data/public-keys/0/openssh-key",
        "/latest/user-data",
        "/nothing",
    ] {
        assert_eq!(
            call("GET", &format!("{base}{path}")),
            (404, "text/plain".to_owned(), none.to_owned()),
            "{path}"
        );
    }
    let (status, _, body) = call("HEAD", &format!("{base}/latest/meta-data/"));
    assert_eq!((status, body.as_str()), (404, ""));
    // IMDSv2's token request is refused, so that clients fall back to plain GETs.
    assert_eq!(
        call("PUT", &format!("{base}/latest/api/token")),
        (
            405,
            "text/plain".to_owned(),
            "The metadata service answers GET and HEAD only.\n".to_owned()
        )
    );
    // The main port does not answer it: it is S3's there.
    let (status, _, _) = call("GET", &format!("http://{}/latest/meta-data/", cloud.addr));
    assert_ne!(status, 200);
}

#[test]
fn without_a_managed_network_no_metadata_service_runs() {
    let cloud = Cloud::start_with("[network]\nmode = \"system\"\nbridge = \"kbr-none\"\n");
    assert!(
        !cloud.banner.contains("metadata service"),
        "banner: {}",
        cloud.banner
    );
}
