//! `koala-bench console`: the web console's server time per page on a cloud holding many
//! users and instances. It seeds a fresh data dir (accounts with console passwords through
//! the account store, instance records through the cloud state), starts `koala up` on it,
//! signs in as the administrator and reads each page's `Server-Timing` over many requests.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ec2_api::instances::InstanceRecord;
use ec2_api::state::{Batch, CloudState};
use identity::{Identity, ADMIN_ACCOUNT, ADMIN_USER};

/// The administrator's password in the benchmark's cloud.
const PASSWORD: &str = "bench-console-password";

/// The pages measured, as an administrator sees them (the sign-in and apply pages signed out).
const PAGES: &[&str] = &[
    "/login",
    "/apply",
    "/",
    "/resources",
    "/admin",
    "/admin/users",
    "/admin/images",
    "/admin/config",
];

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleBenchError {
    /// The data dir or the cloud could not be prepared.
    #[error("{0}")]
    Setup(String),
    /// A request failed.
    #[error("{0}")]
    Request(String),
}

fn setup(e: impl std::fmt::Display) -> ConsoleBenchError {
    ConsoleBenchError::Setup(e.to_string())
}

/// Seeds `dir`, starts the cloud, measures, prints the figures.
pub fn run(
    dir: &Path,
    users: usize,
    instances: usize,
    requests: usize,
) -> Result<(), ConsoleBenchError> {
    if dir.join("identity").exists() {
        return Err(setup(format!("{} is not a fresh data dir", dir.display())));
    }
    let started = Instant::now();
    seed(dir, users, instances)?;
    println!(
        "seeded {users} accounts with console passwords and {instances} instance records (a tenth running) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let (mut koala, url) = start(dir)?;
    let result = measure(dir, &url, requests);
    let _ = Command::new("kill").arg(koala.id().to_string()).status();
    let _ = koala.wait();
    result
}

fn seed(dir: &Path, users: usize, instances: usize) -> Result<(), ConsoleBenchError> {
    let (identity, _) =
        Identity::open_with_ca(&dir.join("identity"), &dir.join("keys")).map_err(setup)?;
    identity.ensure_admin().map_err(setup)?;
    identity.ensure_admin_login().map_err(setup)?;
    let admin = identity
        .account_id(ADMIN_ACCOUNT)
        .map_err(setup)?
        .ok_or_else(|| setup("no admin account"))?;
    identity
        .set_password(&admin, ADMIN_USER, PASSWORD, false)
        .map_err(setup)?;
    identity
        .set_email(&admin, ADMIN_USER, "admin@bench.test")
        .map_err(setup)?;
    let phc = identity::hash_new_password("user", PASSWORD).map_err(setup)?;
    let mut owners = Vec::with_capacity(users);
    for n in 0..users {
        let name = format!("user{n:05}");
        let creds = identity
            .create_account_with_login(&name, &phc, &format!("{name}@bench.test"))
            .map_err(setup)?;
        owners.push(creds.account_id);
    }
    let state = CloudState::open(&dir.join("clc")).map_err(setup)?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    for chunk in (0..instances).collect::<Vec<_>>().chunks(500) {
        let mut batch = Batch::new();
        for &n in chunk {
            let record = InstanceRecord {
                id: format!("i-{n:08x}"),
                reservation_id: format!("r-{n:08x}"),
                owner: owners
                    .get(n % users.max(1))
                    .cloned()
                    .unwrap_or_else(|| admin.clone()),
                image_id: "emi-00000001".into(),
                kernel_id: "eki-00000001".into(),
                ramdisk_id: None,
                instance_type: "m1.small".into(),
                key_name: None,
                groups: vec![("sg-00000001".into(), "default".into())],
                zone: "cluster01".into(),
                launch_index: 0,
                launch_time: "2026-12-05T00:00:00.000Z".into(),
                launched_ms: now_ms,
                // One in ten running (the dashboard lists those), the rest ended. No node
                // reports them: the CLC's sync marks the running ones missing once, and
                // would end them two minutes later, after the measurement.
                state: if n % 10 == 0 {
                    rpc::InstanceState::Running
                } else {
                    rpc::InstanceState::Terminated
                },
                state_reason: None,
                node: Some("bench-node".into()),
                client_token: None,
                start_timeout_secs: 600,
                ended_ms: (n % 10 != 0).then_some(now_ms),
                missing_since_ms: None,
                nic: None,
                public_key: None,
                user_data: None,
            };
            batch.put(&record.id, &record);
        }
        state.commit(batch).map_err(setup)?;
    }
    Ok(())
}

fn start(dir: &Path) -> Result<(Child, String), ConsoleBenchError> {
    let koala = std::env::current_exe()
        .map_err(setup)?
        .with_file_name("koala");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(setup)?
        .port();
    // Its output goes to a file: a pipe closed once the banner is read would end the daemon
    // at its next line.
    let log_path = dir.join("koala.log");
    let log = std::fs::File::create(&log_path).map_err(setup)?;
    let mut child = Command::new(koala)
        .arg("up")
        .arg("--data-dir")
        .arg(dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--console-listen", "127.0.0.1:0"])
        .stdout(log)
        .stderr(Stdio::null())
        .spawn()
        .map_err(setup)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(rest) = text.split("The web console is at ").nth(1) {
            let url = rest.split_whitespace().next().unwrap_or_default();
            return Ok((child, url.trim_end_matches('/').to_owned()));
        }
        if child.try_wait().map_err(setup)?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    Err(setup(format!(
        "koala did not serve its console: see {}",
        log_path.display()
    )))
}

/// An HTTPS session of the console trusting the cloud's certificate.
struct Browser {
    agent: ureq::Agent,
    url: String,
    cookies: Vec<(String, String)>,
}

impl Browser {
    fn call(
        &mut self,
        path: &str,
        form: Option<&[(&str, &str)]>,
    ) -> Result<ureq::Response, ConsoleBenchError> {
        let url = format!("{}{path}", self.url);
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let request = match form {
            Some(_) => self.agent.post(&url),
            None => self.agent.get(&url),
        }
        .set("Cookie", &cookie);
        let answer = match form {
            Some(form) => request.send_form(form),
            None => request.call(),
        };
        let response = match answer {
            Ok(response) | Err(ureq::Error::Status(_, response)) => response,
            Err(e) => return Err(ConsoleBenchError::Request(format!("{path}: {e}"))),
        };
        for set in response.all("set-cookie") {
            if let Some((name, value)) = set.split(';').next().and_then(|p| p.split_once('=')) {
                self.cookies.retain(|(k, _)| k != name);
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
        Ok(response)
    }
}

fn server_ms(response: &ureq::Response) -> Option<f64> {
    response
        .header("server-timing")?
        .strip_prefix("app;dur=")?
        .parse()
        .ok()
}

fn measure(dir: &Path, url: &str, requests: usize) -> Result<(), ConsoleBenchError> {
    let ca =
        std::fs::read_to_string(dir.join("keys").join(identity::CLOUD_CERT_FILE)).map_err(setup)?;
    let tls = rpc::tls::Tls::new(&ca, None).map_err(setup)?;
    let agent = ureq::AgentBuilder::new()
        .tls_config(tls.client())
        .redirects(0)
        .build();
    let mut browser = Browser {
        agent: agent.clone(),
        url: url.to_owned(),
        cookies: Vec::new(),
    };
    let mut visitor = Browser {
        agent,
        url: url.to_owned(),
        cookies: Vec::new(),
    };
    let page = browser.call("/login", None)?.into_string().map_err(setup)?;
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .ok_or_else(|| setup("no CSRF token on the sign-in page"))?
        .to_owned();
    let signed = browser.call(
        "/login",
        Some(&[("csrf", &csrf), ("name", "admin"), ("password", PASSWORD)]),
    )?;
    if signed.header("location") != Some("/") {
        return Err(setup("the administrator could not sign in"));
    }
    println!("page            requests  server median  server p99  server max  client median (ms)");
    for page in PAGES {
        let browser = if matches!(*page, "/login" | "/apply") {
            &mut visitor
        } else {
            &mut browser
        };
        for _ in 0..5 {
            browser.call(page, None)?.into_string().map_err(setup)?;
        }
        let mut server = Vec::with_capacity(requests);
        let mut client = Vec::with_capacity(requests);
        for _ in 0..requests {
            let t = Instant::now();
            let response = browser.call(page, None)?;
            if response.status() != 200 {
                return Err(ConsoleBenchError::Request(format!(
                    "{page} answered {}",
                    response.status()
                )));
            }
            let ms = server_ms(&response);
            response.into_string().map_err(setup)?;
            client.push(t.elapsed());
            server.push(ms.ok_or_else(|| setup("no Server-Timing header"))?);
        }
        server.sort_by(f64::total_cmp);
        client.sort();
        let at = |q: f64| server[((server.len() as f64 - 1.0) * q).round() as usize];
        println!(
            "{page:<15} {requests:>8}  {:>13.3}  {:>10.3}  {:>10.3}  {:>13.3}",
            at(0.5),
            at(0.99),
            server[server.len() - 1],
            ms(client[client.len() / 2]),
        );
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
