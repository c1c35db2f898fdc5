//! The bundle manifest (`PREFIX.manifest.xml`): model, tolerant parse, exact render, RSA-SHA1
//! signature and its verification over the raw bytes as received.

use rsa::{Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use sha1::{Digest, Sha1};
use xml::{Element, Escaping, Writer};

use crate::error::{Error, Result};
use crate::keys::{self, BundleKey};

/// The `<version>` every EC2 bundle manifest carries.
pub const MANIFEST_VERSION: &str = "2007-10-10";
/// The XML declaration euca2ools writes (single quotes, ASCII), then a newline.
pub const XML_DECLARATION: &str = "<?xml version='1.0' encoding='ASCII'?>";
/// The `<signature>` text of a manifest made without a private key.
pub const UNSIGNED: &str = "UNSIGNED";

/// What the bundle holds; EC2 registers kernels and ramdisks apart from machine images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageType {
    /// A disk image (`emi-`).
    Machine,
    /// A kernel (`eki-`), bundled with `--kernel true`.
    Kernel,
    /// A ramdisk (`eri-`), bundled with `--ramdisk true`.
    Ramdisk,
}

impl ImageType {
    /// The text of `<image><type>`.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageType::Machine => "machine",
            ImageType::Kernel => "kernel",
            ImageType::Ramdisk => "ramdisk",
        }
    }

    /// Parses `<image><type>` (or the `--image-type` option).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "machine" => Some(ImageType::Machine),
            "kernel" => Some(ImageType::Kernel),
            "ramdisk" => Some(ImageType::Ramdisk),
            _ => None,
        }
    }
}

/// `<bundler>`: which tool made the bundle; informational only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundlerInfo {
    /// Tool name; `euca2ools` for compatibility with readers that look at it.
    pub name: String,
    /// Tool version.
    pub version: String,
    /// Tool release.
    pub release: String,
}

impl Default for BundlerInfo {
    fn default() -> Self {
        BundlerInfo {
            name: "euca2ools".into(),
            version: concat!("3.4.1-koala-", env!("CARGO_PKG_VERSION")).into(),
            release: "0".into(),
        }
    }
}

/// One part of the bundle as listed in the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    /// File or object name, `PREFIX.part.NN` (basename only).
    pub filename: String,
    /// SHA-1 of the part's bytes, lowercase hex.
    pub digest: String,
}

/// The bundle manifest, as EC2 and euca2ools understand it.
///
/// Built by the bundler and rendered with [`Manifest::render`], or parsed from received bytes
/// with [`Manifest::parse`], which keeps the raw signed bytes for [`Manifest::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// `<version>`, normally [`MANIFEST_VERSION`].
    pub version: String,
    /// `<bundler>`.
    pub bundler: BundlerInfo,
    /// `machine_configuration/architecture`, e.g. `x86_64`.
    pub architecture: String,
    /// `block_device_mapping/mapping` pairs (virtual, device), sorted by virtual name.
    pub block_device_mapping: Vec<(String, String)>,
    /// `product_codes/product_code`.
    pub product_codes: Vec<String>,
    /// `kernel_id`: an `eki-` id, or `true` for a kernel bundle.
    pub kernel_id: Option<String>,
    /// `ramdisk_id`: an `eri-` id, or `true` for a ramdisk bundle.
    pub ramdisk_id: Option<String>,
    /// `image/name`: the prefix, also the tar member's name.
    pub name: String,
    /// `image/user`: the owner's account id, without dashes.
    pub user: String,
    /// `image/type`.
    pub image_type: ImageType,
    /// `image/digest`: SHA-1 of the uncompressed tar stream, lowercase hex.
    pub digest: String,
    /// `image/size`: size of the image in bytes.
    pub size: u64,
    /// `image/bundled_size`: total bytes of all parts.
    pub bundled_size: u64,
    /// `ec2_encrypted_key`: key hex text wrapped for the cloud.
    pub ec2_encrypted_key: String,
    /// `user_encrypted_key`: key hex text wrapped for the user (may be empty).
    pub user_encrypted_key: String,
    /// `ec2_encrypted_iv`: IV hex text wrapped for the cloud.
    pub ec2_encrypted_iv: String,
    /// `user_encrypted_iv`: IV hex text wrapped for the user (may be empty).
    pub user_encrypted_iv: String,
    /// `image/parts`, in index order.
    pub parts: Vec<PartInfo>,
    /// `<signature>`: lowercase hex RSA-SHA1, or [`UNSIGNED`].
    pub signature: String,
    /// The signed bytes exactly as received (set by [`Manifest::parse`]).
    received_signed: Option<Vec<u8>>,
}

impl Manifest {
    /// A manifest for a new bundle, with the constant fields filled in; the bundler fills the
    /// rest from what it measured.
    pub fn new(architecture: &str, name: &str, user: &str, image_type: ImageType) -> Self {
        Manifest {
            version: MANIFEST_VERSION.into(),
            bundler: BundlerInfo::default(),
            architecture: architecture.into(),
            block_device_mapping: Vec::new(),
            product_codes: Vec::new(),
            kernel_id: None,
            ramdisk_id: None,
            name: name.into(),
            user: user.replace('-', ""),
            image_type,
            digest: String::new(),
            size: 0,
            bundled_size: 0,
            ec2_encrypted_key: String::new(),
            user_encrypted_key: String::new(),
            ec2_encrypted_iv: String::new(),
            user_encrypted_iv: String::new(),
            parts: Vec::new(),
            signature: UNSIGNED.into(),
            received_signed: None,
        }
    }

    /// Wraps the key and IV for the cloud (required) and the user (optional: left empty as
    /// euca2ools does, since EC2 refuses a manifest without the elements).
    pub fn set_keys(
        &mut self,
        key: &BundleKey,
        cloud: &RsaPublicKey,
        user: Option<&RsaPublicKey>,
    ) -> Result<()> {
        self.ec2_encrypted_key = keys::wrap(cloud, &key.key_hex())?;
        self.ec2_encrypted_iv = keys::wrap(cloud, &key.iv_hex())?;
        match user {
            Some(user) => {
                self.user_encrypted_key = keys::wrap(user, &key.key_hex())?;
                self.user_encrypted_iv = keys::wrap(user, &key.iv_hex())?;
            }
            None => {
                self.user_encrypted_key.clear();
                self.user_encrypted_iv.clear();
            }
        }
        Ok(())
    }

    /// The `<machine_configuration>…</image>` bytes this manifest would sign, serialised
    /// compactly in the fixed element order EC2 requires.
    pub fn render_signed(&self) -> String {
        let mut w = Writer::new(Escaping::ASCII);
        self.write_signed(&mut w);
        w.finish()
    }

    /// Writes the signed elements, `<machine_configuration>` then `<image>`.
    fn write_signed(&self, w: &mut Writer) {
        w.open("machine_configuration");
        w.elem("architecture", &self.architecture);
        if !self.block_device_mapping.is_empty() {
            w.open("block_device_mapping");
            for (virt, dev) in &self.block_device_mapping {
                w.open("mapping")
                    .elem("virtual", virt)
                    .elem("device", dev)
                    .close("mapping");
            }
            w.close("block_device_mapping");
        }
        if !self.product_codes.is_empty() {
            w.open("product_codes");
            for code in &self.product_codes {
                w.elem("product_code", code);
            }
            w.close("product_codes");
        }
        if let Some(k) = &self.kernel_id {
            w.elem("kernel_id", k);
        }
        if let Some(r) = &self.ramdisk_id {
            w.elem("ramdisk_id", r);
        }
        w.close("machine_configuration");
        let sha1 = [("algorithm", "SHA1")];
        let aes = [("algorithm", "AES-128-CBC")];
        w.open("image")
            .elem("name", &self.name)
            .elem("user", &self.user)
            .elem("type", self.image_type.as_str())
            .elem_with("digest", &sha1, &self.digest)
            .elem("size", &self.size.to_string())
            .elem("bundled_size", &self.bundled_size.to_string())
            .elem_with("ec2_encrypted_key", &aes, &self.ec2_encrypted_key)
            .elem_with("user_encrypted_key", &aes, &self.user_encrypted_key)
            .elem("ec2_encrypted_iv", &self.ec2_encrypted_iv)
            .elem("user_encrypted_iv", &self.user_encrypted_iv)
            .open_with("parts", &[("count", &self.parts.len().to_string())]);
        for (i, p) in self.parts.iter().enumerate() {
            w.open_with("part", &[("index", &i.to_string())])
                .elem("filename", &p.filename)
                .elem_with("digest", &sha1, &p.digest)
                .close("part");
        }
        w.close("parts").close("image");
    }

    /// Signs the manifest with the user's private key (RSA PKCS#1 v1.5 over SHA-1 of the
    /// signed bytes, hex), or marks it [`UNSIGNED`] without one, as euca2ools does.
    pub fn sign(&mut self, key: Option<&RsaPrivateKey>) -> Result<()> {
        self.signature = match key {
            None => UNSIGNED.into(),
            Some(key) => {
                let digest = Sha1::digest(self.render_signed().as_bytes());
                let sig = key
                    .sign(Pkcs1v15Sign::new::<Sha1>(), &digest)
                    .map_err(Error::Rsa)?;
                hex::encode(sig)
            }
        };
        self.received_signed = None;
        Ok(())
    }

    /// The whole manifest file: the XML declaration, a newline, and `<manifest>` on one line
    /// with no trailing newline, byte for byte as euca2ools writes it.
    pub fn render(&self) -> String {
        let mut w = Writer::new(Escaping::ASCII);
        w.raw(XML_DECLARATION)
            .raw("\n")
            .open("manifest")
            .elem("version", &self.version)
            .open("bundler")
            .elem("name", &self.bundler.name)
            .elem("version", &self.bundler.version)
            .elem("release", &self.bundler.release)
            .close("bundler");
        self.write_signed(&mut w);
        w.elem("signature", &self.signature).close("manifest");
        w.finish()
    }

    /// The bytes the signature covers: as received for a parsed manifest (never re-serialised,
    /// so any byte changed in transit shows), else as [`Manifest::render_signed`] makes them.
    pub fn signed_bytes(&self) -> Vec<u8> {
        match &self.received_signed {
            Some(raw) => raw.clone(),
            None => self.render_signed().into_bytes(),
        }
    }

    /// Checks the signature against the signer's (user's) certificate key.
    pub fn verify(&self, signer: &RsaPublicKey) -> Result<()> {
        let sig = self.signature.trim();
        if sig == UNSIGNED || sig.is_empty() {
            return Err(Error::Unsigned);
        }
        let sig = hex::decode(sig).map_err(|_| Error::BadSignature)?;
        let digest = Sha1::digest(self.signed_bytes());
        signer
            .verify(Pkcs1v15Sign::new::<Sha1>(), &digest, &sig)
            .map_err(|_| Error::BadSignature)
    }

    /// Unwraps the key and IV with a private key: the user's wrapping first, then the
    /// cloud's (the order euca-unbundle uses), so either the user or the cloud can unbundle.
    pub fn unwrap_key(&self, private: &RsaPrivateKey) -> Result<BundleKey> {
        let try_pair = |k: &str, iv: &str| -> Result<BundleKey> {
            if k.trim().is_empty() || iv.trim().is_empty() {
                return Err(Error::WrongKey);
            }
            Ok(BundleKey {
                key: keys::unwrap(private, k)?,
                iv: keys::unwrap(private, iv)?,
            })
        };
        try_pair(&self.user_encrypted_key, &self.user_encrypted_iv)
            .or_else(|_| try_pair(&self.ec2_encrypted_key, &self.ec2_encrypted_iv))
    }

    /// Unwraps the key and IV from the cloud's wrapping only (`ec2_encrypted_*`): how the
    /// cloud proves, at register time, that a bundle was made for it.
    pub fn unwrap_cloud_key(&self, cloud: &RsaPrivateKey) -> Result<BundleKey> {
        if self.ec2_encrypted_key.trim().is_empty() || self.ec2_encrypted_iv.trim().is_empty() {
            return Err(Error::WrongKey);
        }
        Ok(BundleKey {
            key: keys::unwrap(cloud, &self.ec2_encrypted_key)?,
            iv: keys::unwrap(cloud, &self.ec2_encrypted_iv)?,
        })
    }

    /// Parses a received manifest, tolerantly: the element names euca2ools writes (and EC2
    /// reads) as well as those euca2ools' own reader looks for (`block_device_mappings/
    /// block_device_mapping`, `productcodes`), whitespace around values, and any order.
    /// The signed byte range is kept exactly as received for [`Manifest::verify`].
    pub fn parse(bytes: &[u8]) -> Result<Manifest> {
        let tree = Element::parse(bytes).map_err(Error::ManifestXml)?;
        if tree.name != "manifest" {
            return Err(Error::ManifestMissing("manifest"));
        }
        let mc = tree
            .child("machine_configuration")
            .ok_or(Error::ManifestMissing("machine_configuration"))?;
        let image = tree.child("image").ok_or(Error::ManifestMissing("image"))?;
        let received_signed =
            (mc.span.start < image.span.end).then(|| bytes[mc.span.start..image.span.end].to_vec());
        let text = |n: &Element, name: &'static str| -> Result<String> {
            n.child(name)
                .map(|c| c.text.trim().to_string())
                .ok_or(Error::ManifestMissing(name))
        };
        let number = |n: &Element, name: &'static str, path: &'static str| -> Result<u64> {
            let t = text(n, name)?;
            t.parse().map_err(|_| Error::ManifestInvalid {
                element: path,
                value: short(&t),
            })
        };
        let opt = |n: &Element, name: &str| n.child(name).map(|c| c.text.trim().to_string());

        let mut block_device_mapping = Vec::new();
        for (list, item) in [
            ("block_device_mapping", "mapping"),
            ("block_device_mappings", "block_device_mapping"),
        ] {
            if let Some(l) = mc.child(list) {
                for m in l.children.iter().filter(|c| c.name == item) {
                    block_device_mapping.push((text(m, "virtual")?, text(m, "device")?));
                }
            }
        }
        let mut product_codes = Vec::new();
        for list in ["product_codes", "productcodes"] {
            if let Some(l) = mc.child(list) {
                for c in l.children.iter().filter(|c| c.name == "product_code") {
                    product_codes.push(c.text.trim().to_string());
                }
            }
        }

        let type_text = text(image, "type")?;
        let image_type = ImageType::parse(&type_text).ok_or(Error::ManifestInvalid {
            element: "image/type",
            value: short(&type_text),
        })?;
        let digest = text(image, "digest")?;
        if !is_sha1_hex(&digest) {
            return Err(Error::ManifestInvalid {
                element: "image/digest",
                value: short(&digest),
            });
        }
        let parts_node = image
            .child("parts")
            .ok_or(Error::ManifestMissing("parts"))?;
        let mut indexed = Vec::new();
        for p in parts_node.children.iter().filter(|c| c.name == "part") {
            let idx_text = p.attribute("index").unwrap_or_default();
            let index: usize = idx_text
                .trim()
                .parse()
                .map_err(|_| Error::ManifestInvalid {
                    element: "parts/part@index",
                    value: short(idx_text),
                })?;
            let filename = text(p, "filename")?;
            let digest = text(p, "digest")?;
            if !is_sha1_hex(&digest) {
                return Err(Error::ManifestInvalid {
                    element: "parts/part/digest",
                    value: short(&digest),
                });
            }
            indexed.push((
                index,
                PartInfo {
                    filename,
                    digest: digest.to_ascii_lowercase(),
                },
            ));
        }
        indexed.sort_by_key(|(i, _)| *i);
        for (want, (got, _)) in indexed.iter().enumerate() {
            if *got != want {
                return Err(Error::ManifestInvalid {
                    element: "parts/part@index",
                    value: got.to_string(),
                });
            }
        }
        if let Some(count) = parts_node.attribute("count") {
            if count.trim().parse::<usize>().ok() != Some(indexed.len()) {
                return Err(Error::ManifestInvalid {
                    element: "parts@count",
                    value: short(count),
                });
            }
        }
        if indexed.is_empty() {
            return Err(Error::ManifestMissing("parts/part"));
        }
        let bundler = tree.child("bundler");
        Ok(Manifest {
            version: opt(&tree, "version").unwrap_or_default(),
            bundler: BundlerInfo {
                name: bundler.and_then(|b| opt(b, "name")).unwrap_or_default(),
                version: bundler.and_then(|b| opt(b, "version")).unwrap_or_default(),
                release: bundler.and_then(|b| opt(b, "release")).unwrap_or_default(),
            },
            architecture: text(mc, "architecture")?,
            block_device_mapping,
            product_codes,
            kernel_id: opt(mc, "kernel_id"),
            ramdisk_id: opt(mc, "ramdisk_id"),
            name: text(image, "name")?,
            user: text(image, "user")?,
            image_type,
            digest: digest.to_ascii_lowercase(),
            size: number(image, "size", "image/size")?,
            bundled_size: number(image, "bundled_size", "image/bundled_size")?,
            ec2_encrypted_key: opt(image, "ec2_encrypted_key").unwrap_or_default(),
            user_encrypted_key: opt(image, "user_encrypted_key").unwrap_or_default(),
            ec2_encrypted_iv: opt(image, "ec2_encrypted_iv").unwrap_or_default(),
            user_encrypted_iv: opt(image, "user_encrypted_iv").unwrap_or_default(),
            parts: indexed.into_iter().map(|(_, p)| p).collect(),
            signature: opt(&tree, "signature").unwrap_or_else(|| UNSIGNED.into()),
            received_signed,
        })
    }
}

fn is_sha1_hex(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn short(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let mut m = Manifest::new("x86_64", "disk.img", "1234-5678-9012", ImageType::Machine);
        m.block_device_mapping = vec![
            ("ami".into(), "sda1".into()),
            ("root".into(), "/dev/sda1".into()),
        ];
        m.product_codes = vec!["abc".into()];
        m.kernel_id = Some("eki-0badcafe".into());
        m.digest = "31f4aeefb483ecad388cbafbd2392930b1842d15".into();
        m.size = 262144;
        m.bundled_size = 205152;
        m.ec2_encrypted_key = "aa".into();
        m.ec2_encrypted_iv = "bb".into();
        m.parts = vec![PartInfo {
            filename: "disk.img.part.00".into(),
            digest: "da39a3ee5e6b4b0d3255bfef95601890afd80709".into(),
        }];
        m
    }

    #[test]
    fn render_then_parse_round_trips() {
        let m = sample();
        assert_eq!(m.user, "123456789012");
        let text = m.render();
        assert!(text.starts_with(
            "<?xml version='1.0' encoding='ASCII'?>\n<manifest><version>2007-10-10</version>"
        ));
        assert!(!text.ends_with('\n'));
        assert!(
            text.contains("<user_encrypted_key algorithm=\"AES-128-CBC\"></user_encrypted_key>")
        );
        let back = Manifest::parse(text.as_bytes()).unwrap();
        assert_eq!(back.signed_bytes(), m.render_signed().into_bytes());
        let mut back2 = back.clone();
        back2.received_signed = None;
        assert_eq!(back2, m);
    }

    #[test]
    fn tolerant_names_and_whitespace() {
        let xml = r#"<?xml version="1.0"?>
<manifest>
  <machine_configuration>
    <architecture> i386 </architecture>
    <block_device_mappings><block_device_mapping><virtual>ami</virtual><device>sda1</device></block_device_mapping></block_device_mappings>
    <productcodes><product_code>p1</product_code></productcodes>
  </machine_configuration>
  <image><name>x</name><user>1</user><type>kernel</type>
    <digest algorithm="SHA1">DA39A3EE5E6B4B0D3255BFEF95601890AFD80709</digest>
    <size>0</size><bundled_size>16</bundled_size>
    <parts count="1"><part index="0"><filename>x.part.00</filename><digest algorithm="SHA1">da39a3ee5e6b4b0d3255bfef95601890afd80709</digest></part></parts>
  </image>
  <signature>UNSIGNED</signature>
</manifest>"#;
        let m = Manifest::parse(xml.as_bytes()).unwrap();
        assert_eq!(m.architecture, "i386");
        assert_eq!(
            m.block_device_mapping,
            vec![("ami".to_string(), "sda1".to_string())]
        );
        assert_eq!(m.product_codes, vec!["p1".to_string()]);
        assert_eq!(m.image_type, ImageType::Kernel);
        assert_eq!(m.digest, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        let signed = String::from_utf8(m.signed_bytes()).unwrap();
        assert!(signed.starts_with("<machine_configuration>") && signed.ends_with("</image>"));
    }

    #[test]
    fn malformed_manifests_are_refused() {
        let good = sample().render();
        for bad in [
            "not xml <<<".to_string(),
            good.replace("</manifest>", ""),
            good.replace("<size>262144</size>", "<size>big</size>"),
            good.replace("<parts count=\"1\">", "<parts count=\"2\">"),
            good.replace("part index=\"0\"", "part index=\"1\""),
            good.replace("<architecture>x86_64</architecture>", ""),
            good.replace("<type>machine</type>", "<type>floppy</type>"),
        ] {
            assert!(Manifest::parse(bad.as_bytes()).is_err(), "accepted: {bad}");
        }
    }
}
