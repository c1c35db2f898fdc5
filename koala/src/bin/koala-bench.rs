//! `koala-bench`: measures an S3 endpoint (Walrus or any peer) and the machine's own limits,
//! printing figures. Benchmarks live here, never in timed tests.
//!
//! `koala-bench s3 --endpoint URL --access-key K --secret-key S` runs large-object PUT and GET
//! (MB/s) and 4 KiB PUT and GET (ops/s with latency percentiles) at each concurrency.
//! `koala-bench disk --dir DIR` does the same work against files (write + fsync; read back
//! from the page cache): the ceiling any server on this machine is measured against.
//! `koala-bench console --data-dir DIR` seeds a cloud with many users and instances, starts
//! it and prints each console page's server time.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rpc::signer::{SignError, SignableBody, Signer, Style};

#[derive(Parser)]
#[command(about = "Koala's benchmarks: S3 endpoints and the machine's limits")]
struct Cli {
    #[command(subcommand)]
    command: Bench,
}

#[derive(Clone, clap::Args)]
struct Workload {
    /// Number of large objects.
    #[arg(long, default_value_t = 16)]
    large_count: usize,
    /// Size of each large object in MiB.
    #[arg(long, default_value_t = 64)]
    large_mib: usize,
    /// Number of 4 KiB objects per concurrency level.
    #[arg(long, default_value_t = 10_000)]
    small_count: usize,
    /// Concurrency levels for the small-object runs.
    #[arg(long, value_delimiter = ',', default_value = "16,64")]
    concurrency: Vec<usize>,
    /// Concurrency of the large-object runs.
    #[arg(long, default_value_t = 4)]
    large_concurrency: usize,
}

#[derive(Subcommand)]
enum Bench {
    /// Drives an S3 endpoint (or several front ends of one store, in turn).
    S3 {
        /// Base URL, e.g. http://127.0.0.1:8773 (path-style requests go below it); several,
        /// comma-separated, are front ends of one namespace: 4 KiB request `i` goes to the
        /// `i mod n`-th, and each object is read through the next one after its writer.
        #[arg(long, value_delimiter = ',', required = true)]
        endpoint: Vec<String>,
        /// Access key id.
        #[arg(long, env = "AWS_ACCESS_KEY_ID")]
        access_key: String,
        /// Secret key.
        #[arg(long, env = "AWS_SECRET_ACCESS_KEY")]
        secret_key: String,
        /// Region to sign for.
        #[arg(long, default_value = "us-east-1")]
        region: String,
        /// Label printed with the figures.
        #[arg(long, default_value = "s3")]
        label: String,
        #[command(flatten)]
        workload: Workload,
    },
    /// The web console's server time per page on a seeded cloud.
    Console {
        /// A fresh data dir for the seeded cloud.
        #[arg(long)]
        data_dir: std::path::PathBuf,
        /// Accounts (each with a console password).
        #[arg(long, default_value_t = 1000)]
        users: usize,
        /// Instance records.
        #[arg(long, default_value_t = 10_000)]
        instances: usize,
        /// Requests per page.
        #[arg(long, default_value_t = 100)]
        requests: usize,
    },
    /// The same work on plain files in DIR.
    Disk {
        /// A directory on the disk to measure.
        #[arg(long)]
        dir: std::path::PathBuf,
        #[command(flatten)]
        workload: Workload,
    },
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Why a benchmark stopped.
#[derive(Debug, thiserror::Error)]
enum BenchError {
    /// The console benchmark failed.
    #[error(transparent)]
    Console(#[from] koala::bench_console::ConsoleBenchError),
    /// The Tokio runtime could not be built.
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    /// A request could not be signed.
    #[error("cannot sign {method} {path}")]
    Sign {
        method: &'static str,
        path: String,
        #[source]
        source: SignError,
    },
    /// A request (its URL or a signature header) is not valid HTTP.
    #[error("cannot build the request {method} {path}")]
    Request {
        method: &'static str,
        path: String,
        #[source]
        source: http::Error,
    },
    /// The endpoint could not be reached, or did not answer.
    #[error("{method} {path} was not answered")]
    Send {
        method: &'static str,
        path: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// The body of an answer broke off.
    #[error("cannot read the answer to {method} {path}")]
    Receive {
        method: &'static str,
        path: String,
        #[source]
        source: hyper::Error,
    },
    /// The endpoint answered with an error status.
    #[error("{method} {path}: HTTP {status}")]
    Status {
        method: &'static str,
        path: String,
        status: http::StatusCode,
    },
    /// A GET of a 4 KiB object returned another size.
    #[error("GET returned {0} bytes")]
    WrongSize(u64),
    /// A task driving requests panicked or was cancelled.
    #[error("a benchmark task failed")]
    Task(#[source] tokio::task::JoinError),
    /// A thread writing large files panicked.
    #[error("a large-file writer panicked")]
    WriterPanicked,
    /// A thread writing small files panicked while holding the latencies.
    #[error("a small-file writer panicked")]
    LockPoisoned,
    /// A file or directory of the disk benchmark could not be used.
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The [`BenchError::Io`] for `action` on `path` (built only on failure: the disk loops
/// are timed).
fn io_error(action: &'static str, path: &Path, source: std::io::Error) -> BenchError {
    BenchError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

struct S3 {
    client: HttpClient,
    endpoints: Vec<String>,
    signer: Signer,
}

impl S3 {
    /// Sends a request to the first endpoint.
    async fn send(&self, method: &'static str, path: &str, body: Bytes) -> Result<u64, BenchError> {
        self.send_to(0, method, path, body).await
    }

    /// Sends request number `i` (to the `i mod n`-th endpoint) and drains the answer: the
    /// bytes received.
    async fn send_to(
        &self,
        i: usize,
        method: &'static str,
        path: &str,
        body: Bytes,
    ) -> Result<u64, BenchError> {
        let endpoint = &self.endpoints[i % self.endpoints.len()];
        let url = format!("{endpoint}{path}");
        let length = body.len().to_string();
        let headers = [("content-length", length.as_str())];
        let signature = self
            .signer
            .sign(
                Style::S3,
                SystemTime::now(),
                method,
                &url,
                &headers,
                SignableBody::UnsignedPayload,
            )
            .map_err(|source| BenchError::Sign {
                method,
                path: path.to_owned(),
                source,
            })?;
        let invalid = |source: http::Error| BenchError::Request {
            method,
            path: path.to_owned(),
            source,
        };
        let mut request = http::Request::builder()
            .method(method)
            .uri(&url)
            .header("content-length", length)
            .body(Full::new(body))
            .map_err(invalid)?;
        for (name, value) in &signature.headers {
            let name =
                http::HeaderName::from_bytes(name.as_bytes()).map_err(|e| invalid(e.into()))?;
            let value = http::HeaderValue::from_str(value).map_err(|e| invalid(e.into()))?;
            request.headers_mut().insert(name, value);
        }
        let response = self
            .client
            .request(request)
            .await
            .map_err(|source| BenchError::Send {
                method,
                path: path.to_owned(),
                source,
            })?;
        let status = response.status();
        let mut body = response.into_body();
        let mut received = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|source| BenchError::Receive {
                method,
                path: path.to_owned(),
                source,
            })?;
            if let Some(data) = frame.data_ref() {
                received += data.len() as u64;
            }
        }
        if !status.is_success() {
            return Err(BenchError::Status {
                method,
                path: path.to_owned(),
                status,
            });
        }
        Ok(received)
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("koala-bench: {}", rpc::error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), BenchError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(BenchError::Runtime)?;
    match cli.command {
        Bench::S3 {
            endpoint,
            access_key,
            secret_key,
            region,
            label,
            workload,
        } => {
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            let client = Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(256)
                .build(connector);
            let s3 = Arc::new(S3 {
                client,
                endpoints: endpoint
                    .iter()
                    .map(|e| e.trim_end_matches('/').to_owned())
                    .collect(),
                signer: Signer::new(&access_key, &secret_key, &region, "s3"),
            });
            runtime.block_on(bench_s3(s3, &label, &workload))
        }
        Bench::Disk { dir, workload } => bench_disk(&dir, &workload),
        Bench::Console {
            data_dir,
            users,
            instances,
            requests,
        } => Ok(koala::bench_console::run(
            &data_dir, users, instances, requests,
        )?),
    }
}

fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / elapsed.as_secs_f64() / 1e6
}

fn report_ops(
    label: &str,
    what: &str,
    concurrency: usize,
    mut latencies: Vec<Duration>,
    elapsed: Duration,
) {
    latencies.sort();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i].as_secs_f64() * 1e3
    };
    println!(
        "{label:<10} {what:<10} c={concurrency:<3} {:>9.0} ops/s   p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0)
    );
}

/// A buffer of incompressible bytes (servers must not win by compressing).
fn random_bytes(len: usize) -> Bytes {
    let mut buf = vec![0u8; len];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut buf);
    Bytes::from(buf)
}

async fn run_parallel<F, Fut>(
    count: usize,
    concurrency: usize,
    op: F,
) -> Result<(Vec<Duration>, Duration), BenchError>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<u64, BenchError>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let op = op.clone();
        let next = next.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, BenchError>(latencies);
                }
                let t = Instant::now();
                op(i).await?;
                latencies.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::with_capacity(count);
    for worker in workers {
        all.extend(worker.await.map_err(BenchError::Task)??);
    }
    Ok((all, start.elapsed()))
}

async fn bench_s3(s3: Arc<S3>, label: &str, w: &Workload) -> Result<(), BenchError> {
    let bucket = format!("bench-{}", std::process::id());
    s3.send("PUT", &format!("/{bucket}"), Bytes::new()).await?;
    if w.large_count > 0 {
        bench_large(&s3, label, w, &bucket).await?;
    }
    bench_small(&s3, label, w, &bucket).await
}

/// The large-object PUT and GET runs.
async fn bench_large(
    s3: &Arc<S3>,
    label: &str,
    w: &Workload,
    bucket: &str,
) -> Result<(), BenchError> {
    let bucket = bucket.to_owned();
    let large = random_bytes(w.large_mib << 20);
    let total = (w.large_count * large.len()) as u64;
    let (s, b) = (s3.clone(), bucket.clone());
    let body = large.clone();
    let (_, elapsed) = run_parallel(w.large_count, w.large_concurrency, move |i| {
        let (s, b, body) = (s.clone(), b.clone(), body.clone());
        async move { s.send("PUT", &format!("/{b}/large-{i}"), body).await }
    })
    .await?;
    println!(
        "{label:<10} large PUT  {} x {} MiB, c={}: {:.0} MB/s",
        w.large_count,
        w.large_mib,
        w.large_concurrency,
        mb_per_s(total, elapsed)
    );
    let (s, b) = (s3.clone(), bucket.clone());
    let (_, elapsed) = run_parallel(w.large_count, w.large_concurrency, move |i| {
        let (s, b) = (s.clone(), b.clone());
        async move {
            let got = s
                .send("GET", &format!("/{b}/large-{i}"), Bytes::new())
                .await?;
            Ok(got)
        }
    })
    .await?;
    println!(
        "{label:<10} large GET  {} x {} MiB, c={}: {:.0} MB/s",
        w.large_count,
        w.large_mib,
        w.large_concurrency,
        mb_per_s(total, elapsed)
    );

    Ok(())
}

/// The 4 KiB PUT and GET runs, at each concurrency.
async fn bench_small(
    s3: &Arc<S3>,
    label: &str,
    w: &Workload,
    bucket: &str,
) -> Result<(), BenchError> {
    let bucket = bucket.to_owned();
    let small = random_bytes(4096);
    for &c in &w.concurrency {
        let (s, b, body) = (s3.clone(), bucket.clone(), small.clone());
        let (lat, elapsed) = run_parallel(w.small_count, c, move |i| {
            let (s, b, body) = (s.clone(), b.clone(), body.clone());
            async move {
                s.send_to(i, "PUT", &format!("/{b}/small-{c}-{i}"), body)
                    .await
            }
        })
        .await?;
        report_ops(label, "4KiB PUT", c, lat, elapsed);
        let (s, b) = (s3.clone(), bucket.clone());
        let (lat, elapsed) = run_parallel(w.small_count, c, move |i| {
            let (s, b) = (s.clone(), b.clone());
            async move {
                // Through the front end after the one that wrote it.
                let got = s
                    .send_to(i + 1, "GET", &format!("/{b}/small-{c}-{i}"), Bytes::new())
                    .await?;
                if got != 4096 {
                    return Err(BenchError::WrongSize(got));
                }
                Ok(got)
            }
        })
        .await?;
        report_ops(label, "4KiB GET", c, lat, elapsed);
    }
    Ok(())
}

fn bench_disk(dir: &Path, w: &Workload) -> Result<(), BenchError> {
    use std::io::{Read, Write};
    let dir = dir.join(format!("koala-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| io_error("create", &dir, e))?;
    let large = random_bytes(w.large_mib << 20);
    let total = (w.large_count * large.len()) as u64;
    let start = Instant::now();
    std::thread::scope(|scope| -> Result<(), BenchError> {
        let handles: Vec<_> = (0..w.large_concurrency)
            .map(|t| {
                let (dir, large) = (&dir, &large);
                scope.spawn(move || -> Result<(), BenchError> {
                    for i in (t..w.large_count).step_by(w.large_concurrency) {
                        let path = dir.join(format!("large-{i}"));
                        let mut f = std::fs::File::create(&path)
                            .map_err(|e| io_error("create", &path, e))?;
                        f.write_all(large)
                            .and_then(|()| f.sync_all())
                            .map_err(|e| io_error("write", &path, e))?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| BenchError::WriterPanicked)??;
        }
        Ok(())
    })?;
    println!(
        "disk       large write+fsync {} x {} MiB: {:.0} MB/s",
        w.large_count,
        w.large_mib,
        mb_per_s(total, start.elapsed())
    );
    let start = Instant::now();
    let mut buf = vec![0u8; 1 << 20];
    for i in 0..w.large_count {
        let path = dir.join(format!("large-{i}"));
        let mut f = std::fs::File::open(&path).map_err(|e| io_error("open", &path, e))?;
        while f.read(&mut buf).map_err(|e| io_error("read", &path, e))? > 0 {}
    }
    println!(
        "disk       large read (page cache): {:.0} MB/s",
        mb_per_s(total, start.elapsed())
    );

    let small = random_bytes(4096);
    for &c in &w.concurrency {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let start = Instant::now();
        let latencies = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..c {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= w.small_count {
                            break;
                        }
                        let t = Instant::now();
                        let ok = std::fs::File::create(dir.join(format!("small-{c}-{i}")))
                            .and_then(|mut f| f.write_all(&small).and_then(|_| f.sync_data()));
                        if ok.is_err() {
                            break;
                        }
                        mine.push(t.elapsed());
                    }
                    if let Ok(mut all) = latencies.lock() {
                        all.extend(mine);
                    }
                });
            }
        });
        let lat = latencies
            .into_inner()
            .map_err(|_| BenchError::LockPoisoned)?;
        report_ops("disk", "4KiB write", c, lat, start.elapsed());
        let start = Instant::now();
        let mut lat = Vec::with_capacity(w.small_count);
        for i in 0..w.small_count {
            let t = Instant::now();
            let path = dir.join(format!("small-{c}-{i}"));
            std::fs::read(&path).map_err(|e| io_error("read", &path, e))?;
            lat.push(t.elapsed());
        }
        report_ops("disk", "4KiB read", 1, lat, start.elapsed());
    }
    std::fs::remove_dir_all(&dir).map_err(|e| io_error("remove", &dir, e))
}
