//! The `eucarc`: the shell file a user sources to point euca2ools, the aws CLI and boto3 at
//! the cloud with their keys, as Eucalyptus' "Download credentials" gave it.

use crate::credentials::KeyFiles;
use crate::Credentials;

/// The endpoints a eucarc points clients at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceUrls {
    /// Walrus (S3), e.g. `http://host:8773/services/Walrus`.
    pub s3_url: String,
    /// The EC2 Query API, e.g. `http://host:8773/services/compute/`, once the cloud serves it.
    pub ec2_url: Option<String>,
    /// The account service (Euare, IAM), e.g. `http://host:8773/services/Euare`.
    pub euare_url: Option<String>,
    /// The region name clients sign with (`AWS_DEFAULT_REGION`).
    pub region: String,
}

/// Quotes a value for POSIX sh: single quotes, with embedded `'` written as `'\''`.
fn sh_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

impl Credentials {
    /// The eucarc text (POSIX sh) exporting these credentials and the cloud's endpoints under
    /// the names euca2ools 3, the old euca2ools 1.x/2.x, the aws CLI and boto3 read.
    ///
    /// Its first line sets `EUCA_KEY_DIR` to the folder holding the eucarc when it is sourced
    /// (`. /any/path/eucarc`), so that files added next to it later (certificates, keys) can
    /// be named relative to it. bash (and zsh, via `$0`) tell a sourced file its own path;
    /// sh/dash do not, so there it falls back to the current folder when that holds a eucarc.
    pub fn eucarc(&self, urls: &ServiceUrls) -> String {
        self.render_eucarc(urls, None)
    }

    /// The eucarc of a credential bundle: [`Credentials::eucarc`] plus `EC2_CERT`,
    /// `EC2_PRIVATE_KEY` and `EUCALYPTUS_CERT` naming the files beside it through
    /// `$EUCA_KEY_DIR`, so the folder can be unzipped and sourced from anywhere.
    pub fn eucarc_with_files(&self, urls: &ServiceUrls, files: &KeyFiles) -> String {
        self.render_eucarc(urls, Some(files))
    }

    fn render_eucarc(&self, urls: &ServiceUrls, files: Option<&KeyFiles>) -> String {
        let mut out = String::new();
        out.push_str(
            "EUCA_KEY_DIR=$(cd \"$(dirname \"${BASH_SOURCE:-$0}\")\" 2>/dev/null && pwd -P)\n",
        );
        out.push_str("# sh/dash give a sourced file no way to find itself ($0 is the shell): use the current folder.\n");
        out.push_str("[ -n \"${BASH_SOURCE:-}\" ] || [ -f \"$EUCA_KEY_DIR/eucarc\" ] || EUCA_KEY_DIR=$(pwd -P)\n");
        out.push_str(&format!(
            "# Koala credentials for user {} of account {} ({}).\n",
            self.user_name, self.account_name, self.account_id
        ));
        let mut export = |name: &str, value: &str| {
            out.push_str(&format!("export {name}={}\n", sh_quote(value)));
        };
        export("AWS_ACCESS_KEY_ID", &self.access_key_id);
        export("AWS_SECRET_ACCESS_KEY", &self.secret_access_key);
        // The euca2ools 1.x/2.x names, still in old scripts.
        export("EC2_ACCESS_KEY", &self.access_key_id);
        export("EC2_SECRET_KEY", &self.secret_access_key);
        export("EC2_USER_ID", &self.account_id);
        export("S3_URL", &urls.s3_url);
        export("AWS_ENDPOINT_URL_S3", &urls.s3_url);
        if let Some(ec2) = &urls.ec2_url {
            export("EC2_URL", ec2);
            export("AWS_ENDPOINT_URL_EC2", ec2);
        }
        if let Some(euare) = &urls.euare_url {
            export("EUARE_URL", euare);
            export("AWS_IAM_URL", euare);
            export("AWS_ENDPOINT_URL_IAM", euare);
        }
        export("AWS_DEFAULT_REGION", &urls.region);
        if let Some(files) = files {
            // Double quotes: `$EUCA_KEY_DIR` expands when sourced; the names are ours and safe.
            // AWS_CA_BUNDLE: the aws CLI and boto3 trust the cloud's certificate on https://.
            for (name, file) in [
                ("EC2_CERT", &files.certificate),
                ("EC2_PRIVATE_KEY", &files.private_key),
                ("EUCALYPTUS_CERT", &files.cloud_certificate),
                ("AWS_CA_BUNDLE", &files.cloud_certificate),
            ] {
                out.push_str(&format!("export {name}=\"${{EUCA_KEY_DIR}}/{file}\"\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn creds() -> Credentials {
        Credentials {
            account_id: "123456789012".into(),
            account_name: "eucalyptus".into(),
            user_name: "admin".into(),
            access_key_id: "AKIAEXAMPLE000000001".into(),
            secret_access_key: "abc'def/ghi+jkl$HOME`x`0000000000000000".into(),
        }
    }

    fn urls(full: bool) -> ServiceUrls {
        ServiceUrls {
            s3_url: "http://cloud.example:8773/services/Walrus".into(),
            ec2_url: full.then(|| "http://cloud.example:8773/services/compute/".into()),
            euare_url: full.then(|| "http://cloud.example:8773/services/Euare".into()),
            region: "koala".into(),
        }
    }

    #[test]
    fn exports_what_clients_read() {
        let text = creds().eucarc(&urls(false));
        assert!(text.starts_with("EUCA_KEY_DIR=$(cd \"$(dirname \"${BASH_SOURCE:-$0}\")\""));
        assert!(text.contains("export S3_URL='http://cloud.example:8773/services/Walrus'\n"));
        assert!(text
            .contains("export AWS_ENDPOINT_URL_S3='http://cloud.example:8773/services/Walrus'\n"));
        assert!(text.contains("export EC2_USER_ID='123456789012'\n"));
        assert!(!text.contains("EC2_URL"));
        assert!(!text.contains("EUARE_URL"));
        let full = creds().eucarc(&urls(true));
        assert!(full.contains("export EC2_URL='http://cloud.example:8773/services/compute/'\n"));
        assert!(full.contains(
            "export AWS_ENDPOINT_URL_EC2='http://cloud.example:8773/services/compute/'\n"
        ));
        assert!(full.contains("export EUARE_URL='http://cloud.example:8773/services/Euare'\n"));
        assert!(full.contains("export AWS_IAM_URL='http://cloud.example:8773/services/Euare'\n"));
    }

    /// Sources the file with `shell` from another folder and prints variables.
    fn source(shell: &str, script: &str, cwd: &std::path::Path) -> Option<String> {
        let out = Command::new(shell)
            .arg("-c")
            .arg(script)
            .current_dir(cwd)
            .env_remove("BASH_SOURCE")
            .output()
            .ok()?;
        assert!(
            out.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    #[test]
    fn sourcing_works_from_anywhere() {
        let dir = tempfile::tempdir().unwrap();
        let creds_dir = dir.path().join("credentials").join("admin");
        std::fs::create_dir_all(&creds_dir).unwrap();
        let rc = creds_dir.join("eucarc");
        std::fs::write(&rc, creds().eucarc(&urls(true))).unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let real_dir = std::fs::canonicalize(&creds_dir).unwrap();

        let script = format!(
            ". {} && printf '%s|%s|%s|%s\\n' \"$AWS_ACCESS_KEY_ID\" \"$AWS_SECRET_ACCESS_KEY\" \"$EC2_URL\" \"$EUCA_KEY_DIR\"",
            rc.display()
        );
        let expected_prefix = format!(
            "AKIAEXAMPLE000000001|{}|http://cloud.example:8773/services/compute/|",
            creds().secret_access_key
        );
        let bash = source("bash", &script, elsewhere.path()).expect("bash runs");
        assert_eq!(
            bash.trim_end(),
            format!("{expected_prefix}{}", real_dir.display())
        );

        // dash cannot locate a sourced file; from another folder the keys still load.
        if let Some(dash) = source("dash", &script, elsewhere.path()) {
            assert!(dash.starts_with(&expected_prefix), "{dash}");
            // From the eucarc's own folder, dash finds the folder too.
            let local = source(
                "dash",
                &script.replace(&rc.display().to_string(), "./eucarc"),
                &creds_dir,
            )
            .unwrap();
            assert_eq!(
                local.trim_end(),
                format!("{expected_prefix}{}", real_dir.display())
            );
        }
    }
}
