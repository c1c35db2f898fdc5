//! Bundling and unbundling throughput, Koala against the shell pipeline euca2ools runs
//! (`tar | gzip -6 | openssl enc -aes-128-cbc | split`, and its reverse), in the same run.
//!
//! `cargo bench -p bundler --bench bundle` builds a 1 GiB image (a quarter random bytes, a
//! quarter zeros, half repetitive text-like blocks, in 64 KiB runs). Set `KOALA_BENCH_MB` for
//! another size, `KOALA_BENCH_LEVEL` for another deflate level, `KOALA_BENCH_DIR` for where
//! the files go (default `$TMPDIR` or `/var/tmp`). Not a timed test: it prints figures.
#![allow(clippy::unwrap_used)]

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use bundler::files::{bundle_file, unbundle_dir, BundleKeys};
use bundler::{BundleKey, BundleOptions, ImageType, Manifest, PrivateKey, PublicKey};

const RUN: usize = 64 * 1024;

/// xorshift64*: cheap deterministic bytes.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn text_run(rng: &mut Rng, out: &mut Vec<u8>) {
    const WORDS: [&str; 16] = [
        "kernel:",
        "eth0",
        "link",
        "up",
        "speed",
        "1000",
        "Mb/s",
        "systemd[1]:",
        "Started",
        "session",
        "of",
        "user",
        "root.",
        "INFO",
        "request",
        "completed",
    ];
    out.clear();
    while out.len() < RUN {
        let r = rng.next();
        let line = format!(
            "Nov 25 16:{:02}:{:02} host-{} {} {} {} {} id={}\n",
            r % 60,
            (r >> 8) % 60,
            (r >> 16) % 8,
            WORDS[((r >> 20) % 16) as usize],
            WORDS[((r >> 24) % 16) as usize],
            WORDS[((r >> 28) % 16) as usize],
            WORDS[((r >> 32) % 16) as usize],
            (r >> 40) % 100_000
        );
        out.extend_from_slice(line.as_bytes());
    }
    out.truncate(RUN);
}

fn make_image(path: &Path, bytes: u64) {
    let mut f = BufWriter::with_capacity(1 << 20, File::create(path).unwrap());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut buf = Vec::with_capacity(RUN);
    let runs = bytes.div_ceil(RUN as u64);
    for i in 0..runs {
        match i % 4 {
            0 => {
                buf.clear();
                while buf.len() < RUN {
                    buf.extend_from_slice(&rng.next().to_le_bytes());
                }
            }
            1 => {
                buf.clear();
                buf.resize(RUN, 0);
            }
            _ => text_run(&mut rng, &mut buf),
        }
        let left = (bytes - i * RUN as u64).min(RUN as u64) as usize;
        f.write_all(&buf[..left]).unwrap();
    }
    f.flush().unwrap();
}

fn sh(script: &str) -> f64 {
    let t = Instant::now();
    let status = Command::new("sh").arg("-c").arg(script).status().unwrap();
    assert!(status.success(), "failed: {script}");
    t.elapsed().as_secs_f64()
}

/// CPU seconds (user + system) used so far by this process, all threads, from /proc: the
/// machine may be shared, so wall time alone can mislead.
fn cpu_seconds() -> f64 {
    let stat = fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of stat(5), counted from the state field (3) here.
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds used by finished children (the shell pipelines).
fn children_cpu_seconds() -> f64 {
    let stat = fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(13) + ticks(14)) / 100.0
}

fn dir_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

fn main() {
    let mb: u64 = std::env::var("KOALA_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let level: u32 = std::env::var("KOALA_BENCH_LEVEL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let base = std::env::var_os("KOALA_BENCH_DIR")
        .or_else(|| std::env::var_os("TMPDIR"))
        .unwrap_or_else(|| "/var/tmp".into());
    let work = tempfile::Builder::new()
        .prefix("koala-bench-")
        .tempdir_in(base)
        .unwrap();
    let w = work.path();
    let bytes = mb << 20;
    let img = w.join("image.img");
    print!("building a {mb} MiB image in {} ... ", w.display());
    std::io::stdout().flush().unwrap();
    make_image(&img, bytes);
    println!("done");

    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut rng = rand::thread_rng();
    let user = PrivateKey::new(&mut rng, 2048).unwrap();
    let cloud = PrivateKey::new(&mut rng, 2048).unwrap();
    let (user_pub, cloud_pub) = (PublicKey::from(&user), PublicKey::from(&cloud));
    let key = BundleKey::random();
    let options = BundleOptions {
        level,
        ..BundleOptions::default()
    };
    let mbs = |secs: f64| bytes as f64 / 1e6 / secs;

    // Koala.
    let kb = w.join("koala-bundle");
    let ku = w.join("koala-out");
    fs::create_dir(&kb).unwrap();
    fs::create_dir(&ku).unwrap();
    let c = cpu_seconds();
    let t = Instant::now();
    let files = bundle_file(
        &img,
        &kb,
        Manifest::new("x86_64", "image.img", "123456789012", ImageType::Machine),
        &BundleKeys {
            key: &key,
            cloud: &cloud_pub,
            user: Some(&user_pub),
            signer: Some(&user),
        },
        &options,
        &mut |_| {},
    )
    .unwrap();
    let k_bundle = t.elapsed().as_secs_f64();
    let k_bundle_cpu = cpu_seconds() - c;
    let c = cpu_seconds();
    let t = Instant::now();
    let (out, _) = unbundle_dir(
        &files.manifest,
        &kb,
        &ku,
        &cloud,
        Some(&user_pub),
        &mut |_, _| {},
    )
    .unwrap();
    let k_unbundle = t.elapsed().as_secs_f64();
    let k_unbundle_cpu = cpu_seconds() - c;
    assert_eq!(fs::metadata(&out).unwrap().len(), bytes);
    let k_size = files.manifest_data.bundled_size;
    // The same unbundle into a null sink: the pipeline's own speed, without the filesystem's
    // write path (which on some VMs costs more CPU than the whole pipeline).
    let c = cpu_seconds();
    let t = Instant::now();
    let m = &files.manifest_data;
    let bkey = m.unwrap_key(&cloud).unwrap();
    let mut un = bundler::Unbundler::new(m, &bkey, std::io::sink()).unwrap();
    for (i, p) in files.parts.iter().enumerate() {
        un.read_part(i, File::open(p).unwrap()).unwrap();
    }
    un.finish().unwrap();
    let k_null = t.elapsed().as_secs_f64();
    let k_null_cpu = cpu_seconds() - c;
    fs::remove_dir_all(&ku).unwrap();
    fs::remove_dir_all(&kb).unwrap();

    // The euca2ools pipeline.
    let pb = w.join("pipe-bundle");
    let pu = w.join("pipe-out");
    fs::create_dir(&pb).unwrap();
    fs::create_dir(&pu).unwrap();
    let (k, iv) = (key.key_hex(), key.iv_hex());
    let c = children_cpu_seconds();
    let p_bundle = sh(&format!(
        "tar -cf - -C {w} image.img | gzip -6 | openssl enc -e -aes-128-cbc -K {k} -iv {iv} | split -b 10m - {pb}/image.img.part.",
        w = w.display(),
        pb = pb.display()
    ));
    let p_size = dir_size(&pb);
    let p_bundle_cpu = children_cpu_seconds() - c;
    let c = children_cpu_seconds();
    let p_unbundle = sh(&format!(
        "cat {pb}/image.img.part.* | openssl enc -d -aes-128-cbc -K {k} -iv {iv} | gzip -d | tar -xf - -C {pu}",
        pb = pb.display(),
        pu = pu.display()
    ));
    assert_eq!(fs::metadata(pu.join("image.img")).unwrap().len(), bytes);
    let p_unbundle_cpu = children_cpu_seconds() - c;

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("image: {mb} MiB (1/4 random, 1/4 zeros, 1/2 text, 64 KiB runs), {cores} cores, Koala deflate level {level}");
    println!("load average before the run: {}", load.trim());
    println!(
        "{:<28} {:>9} {:>9} {:>10} {:>14}",
        "", "seconds", "cpu s", "MB/s", "bundled bytes"
    );
    let row = |name: &str, secs: f64, cpu: f64, size: String| {
        println!(
            "{name:<28} {secs:>9.2} {cpu:>9.2} {:>10.1} {size:>14}",
            mbs(secs)
        );
    };
    row("koala bundle", k_bundle, k_bundle_cpu, k_size.to_string());
    row(
        "pipeline bundle (gzip -6)",
        p_bundle,
        p_bundle_cpu,
        p_size.to_string(),
    );
    row("koala unbundle", k_unbundle, k_unbundle_cpu, String::new());
    row(
        "koala unbundle, null sink",
        k_null,
        k_null_cpu,
        String::new(),
    );
    row(
        "pipeline unbundle",
        p_unbundle,
        p_unbundle_cpu,
        String::new(),
    );
    println!(
        "bundle speed-up {:.1}x, unbundle speed-up {:.1}x",
        p_bundle / k_bundle,
        p_unbundle / k_unbundle
    );
}
