//! Container images without a registry: an OCI image-layout tarball (`oci-layout`,
//! `index.json`, `blobs/sha256/…`: manifest, config, one layer) built from a rootfs directory,
//! which `ctr images import` and `podman load` accept.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use test_support::oci_image::ImageSpec;
//! let image = ImageSpec::new("docker.io/strict-sg-e2e/bypass:e2e", "/tmp/rootfs")
//!     .user("1000")
//!     .entrypoint(&["/bin/sh", "-c", "id; sleep 3600"]);
//! let written = image.write_archive(std::path::Path::new("/tmp/bypass.tar"))?;
//! println!("{} is {}", written.reference, written.manifest_digest);
//! # Ok(()) }
//! ```
//!
//! The index names the image twice: `io.containerd.image.name` (read by containerd's importer
//! as the full name) and `org.opencontainers.image.ref.name` (the OCI key, read by podman).
//! Layer entries are owned by root with a fixed mtime, so the same rootfs gives the same
//! digests; [`ImageSpec::owner_mode`] gives single entries another owner and mode (a setgid
//! binary, a group-readable file), which a layer built from a directory as root cannot carry.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MEDIA_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// What to put in the image. Built with [`ImageSpec::new`] and the setters.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    /// Full reference, e.g. `docker.io/strict-sg-e2e/pause:e2e`.
    pub reference: String,
    /// Directory whose contents become the single layer.
    pub rootfs: PathBuf,
    /// `config.User` (e.g. `1000`, `1000:1000`, `alice`); empty means root.
    pub user: String,
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: String,
    /// gzip the layer (smaller archive, slower to write); plain tar by default.
    pub gzip: bool,
    /// Entries (relative to the rootfs) written with this uid, gid and mode instead of
    /// root-owned 0644/0755.
    pub owners: Vec<EntryOwner>,
}

/// The owner and full mode (setuid/setgid/sticky bits included) of one layer entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryOwner {
    pub path: PathBuf,
    pub uid: u64,
    pub gid: u64,
    pub mode: u32,
}

/// What [`ImageSpec::write_archive`] wrote.
#[derive(Clone, Debug)]
pub struct WrittenImage {
    pub reference: String,
    pub archive: PathBuf,
    /// `sha256:…` of the manifest (the image's digest once imported).
    pub manifest_digest: String,
    /// `sha256:…` of the config (the image id).
    pub config_digest: String,
}

impl ImageSpec {
    pub fn new(reference: impl Into<String>, rootfs: impl Into<PathBuf>) -> Self {
        Self {
            reference: reference.into(),
            rootfs: rootfs.into(),
            user: String::new(),
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            working_dir: String::new(),
            gzip: false,
            owners: Vec::new(),
        }
    }

    pub fn user(mut self, user: &str) -> Self {
        self.user = user.to_owned();
        self
    }

    /// Replaces the environment (PATH is set by default).
    pub fn env(mut self, env: &[&str]) -> Self {
        self.env = env.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    pub fn entrypoint(mut self, args: &[&str]) -> Self {
        self.entrypoint = args.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    pub fn cmd(mut self, args: &[&str]) -> Self {
        self.cmd = args.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    pub fn working_dir(mut self, dir: &str) -> Self {
        self.working_dir = dir.to_owned();
        self
    }

    pub fn gzip(mut self, yes: bool) -> Self {
        self.gzip = yes;
        self
    }

    /// Writes the entry `path` (relative to the rootfs, e.g. `opt/probe`) with this owner and
    /// mode, e.g. `owner_mode("opt/probe", 0, 50000, 0o2755)` for a setgid binary.
    pub fn owner_mode(mut self, path: &str, uid: u64, gid: u64, mode: u32) -> Self {
        self.owners.push(EntryOwner {
            path: PathBuf::from(path),
            uid,
            gid,
            mode,
        });
        self
    }

    /// Writes the image as an OCI image-layout tar archive at `archive`.
    pub fn write_archive(&self, archive: &Path) -> Result<WrittenImage> {
        if !self.rootfs.is_dir() {
            bail!("rootfs {} is not a directory", self.rootfs.display());
        }
        if self.reference.trim().is_empty() {
            bail!("an image needs a reference");
        }
        for owner in &self.owners {
            if !self.rootfs.join(&owner.path).exists() {
                bail!(
                    "owner_mode names {}, which is not in the rootfs {}",
                    owner.path.display(),
                    self.rootfs.display()
                );
            }
        }
        let layer_tar = layer_tar(&self.rootfs, &self.owners)?;
        let diff_id = sha256(&layer_tar);
        let (layer, layer_media) = if self.gzip {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(&layer_tar)?;
            (enc.finish()?, MEDIA_LAYER_GZIP)
        } else {
            (layer_tar, MEDIA_LAYER_TAR)
        };
        let layer_digest = sha256(&layer);

        let mut image_config = serde_json::Map::new();
        if !self.user.is_empty() {
            image_config.insert("User".into(), self.user.clone().into());
        }
        if !self.env.is_empty() {
            image_config.insert("Env".into(), self.env.clone().into());
        }
        if !self.entrypoint.is_empty() {
            image_config.insert("Entrypoint".into(), self.entrypoint.clone().into());
        }
        if !self.cmd.is_empty() {
            image_config.insert("Cmd".into(), self.cmd.clone().into());
        }
        if !self.working_dir.is_empty() {
            image_config.insert("WorkingDir".into(), self.working_dir.clone().into());
        }
        let (os, arch) = platform();
        let config = serde_json::json!({
            "created": "2024-01-01T00:00:00Z",
            "architecture": arch,
            "os": os,
            "config": image_config,
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "test-support oci_image"}]
        });
        let config = serde_json::to_vec(&config)?;
        let config_digest = sha256(&config);
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": layer_media, "digest": layer_digest, "size": layer.len()}]
        });
        let manifest = serde_json::to_vec(&manifest)?;
        let manifest_digest = sha256(&manifest);
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [{
                "mediaType": MEDIA_MANIFEST,
                "digest": manifest_digest,
                "size": manifest.len(),
                "platform": {"architecture": arch, "os": os},
                "annotations": {
                    ANNOTATION_CONTAINERD_NAME: self.reference,
                    ANNOTATION_REF_NAME: self.reference,
                }
            }]
        });
        let index = serde_json::to_vec(&index)?;

        let file = std::fs::File::create(archive)
            .with_context(|| format!("creating {}", archive.display()))?;
        let mut out = tar::Builder::new(std::io::BufWriter::new(file));
        append_bytes(&mut out, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        append_bytes(&mut out, "index.json", &index)?;
        for (digest, bytes) in [
            (&manifest_digest, &manifest),
            (&config_digest, &config),
            (&layer_digest, &layer),
        ] {
            let hex = digest.trim_start_matches("sha256:");
            append_bytes(&mut out, &format!("blobs/sha256/{hex}"), bytes)?;
        }
        out.into_inner()?
            .flush()
            .with_context(|| format!("writing {}", archive.display()))?;
        Ok(WrittenImage {
            reference: self.reference.clone(),
            archive: archive.to_path_buf(),
            manifest_digest,
            config_digest,
        })
    }
}

/// `(os, architecture)` in OCI terms for this machine.
pub fn platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    ("linux", arch)
}

fn sha256(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in digest.iter() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn append_bytes<W: Write>(out: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    out.append_data(&mut header, name, bytes)
        .with_context(|| format!("adding {name}"))
}

/// The rootfs as an uncompressed tar: symlinks kept as links, owners root (but `owners`),
/// mtime fixed.
fn layer_tar(rootfs: &Path, owners: &[EntryOwner]) -> Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    tar.mode(tar::HeaderMode::Deterministic);
    let mut entries = Vec::new();
    collect(rootfs, rootfs, &mut entries)?;
    entries.sort();
    for rel in entries {
        let path = rootfs.join(&rel);
        match owners.iter().find(|o| o.path == rel) {
            None => tar
                .append_path_with_name(&path, &rel)
                .with_context(|| format!("adding {} to the layer", path.display()))?,
            Some(owner) => append_owned(&mut tar, &path, &rel, owner)?,
        }
    }
    tar.into_inner().context("finishing the layer")
}

/// A regular file or directory entry with `owner`'s uid, gid and mode.
fn append_owned(
    tar: &mut tar::Builder<Vec<u8>>,
    path: &Path,
    rel: &Path,
    owner: &EntryOwner,
) -> Result<()> {
    let meta =
        std::fs::symlink_metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let mut header = tar::Header::new_gnu();
    header.set_metadata_in_mode(&meta, tar::HeaderMode::Deterministic);
    header.set_uid(owner.uid);
    header.set_gid(owner.gid);
    header.set_mode(owner.mode);
    if meta.is_file() {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        tar.append_data(&mut header, rel, file)
    } else if meta.is_dir() {
        tar.append_data(&mut header, rel, std::io::empty())
    } else {
        bail!(
            "owner_mode supports files and directories; {} is neither",
            path.display()
        );
    }
    .with_context(|| format!("adding {} to the layer", path.display()))
}

/// Relative paths of everything under `dir` (directories before their contents).
fn collect(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("reading directory {}", dir.display()))?;
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let rel = path.strip_prefix(base)?.to_path_buf();
        out.push(rel);
        if entry.file_type()?.is_dir() {
            collect(base, &path, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_has_a_consistent_layout() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        std::fs::write(rootfs.join("etc/group"), "g:x:1:\n").unwrap();
        std::os::unix::fs::symlink("group", rootfs.join("etc/link")).unwrap();
        let archive = dir.path().join("img.tar");
        let written = ImageSpec::new("docker.io/t/x:1", &rootfs)
            .user("1000")
            .write_archive(&archive)
            .unwrap();

        let mut files = std::collections::BTreeMap::new();
        let mut ar = tar::Archive::new(std::fs::File::open(&archive).unwrap());
        for entry in ar.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().display().to_string();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
            files.insert(name, bytes);
        }
        let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
        let desc = &index["manifests"][0];
        assert_eq!(desc["digest"], written.manifest_digest.as_str());
        assert_eq!(desc["annotations"][ANNOTATION_REF_NAME], "docker.io/t/x:1");
        let blob = |d: &str| &files[&format!("blobs/sha256/{}", &d[7..])];
        let manifest: serde_json::Value =
            serde_json::from_slice(blob(&written.manifest_digest)).unwrap();
        assert_eq!(manifest["config"]["digest"], written.config_digest.as_str());
        let config: serde_json::Value =
            serde_json::from_slice(blob(&written.config_digest)).unwrap();
        assert_eq!(config["config"]["User"], "1000");
        let layer_digest = manifest["layers"][0]["digest"].as_str().unwrap();
        let layer = blob(layer_digest);
        assert_eq!(sha256(layer), layer_digest);
        assert_eq!(config["rootfs"]["diff_ids"][0], layer_digest);

        let mut names = Vec::new();
        let mut layer_ar = tar::Archive::new(&layer[..]);
        for e in layer_ar.entries().unwrap() {
            let e = e.unwrap();
            assert_eq!(e.header().uid().unwrap(), 0);
            names.push((
                e.path().unwrap().display().to_string(),
                e.header().entry_type(),
            ));
        }
        assert!(names.contains(&("etc/link".into(), tar::EntryType::Symlink)));
        assert!(names.contains(&("etc/group".into(), tar::EntryType::Regular)));
    }

    #[test]
    fn owner_mode_sets_owner_and_special_bits() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("opt")).unwrap();
        std::fs::write(rootfs.join("opt/probe"), b"\x7fELF").unwrap();
        std::fs::write(rootfs.join("opt/other"), b"x").unwrap();
        let archive = dir.path().join("img.tar");
        ImageSpec::new("docker.io/t/owned:1", &rootfs)
            .owner_mode("opt/probe", 0, 50000, 0o2755)
            .write_archive(&archive)
            .unwrap();
        let mut files = std::collections::BTreeMap::new();
        let mut outer = tar::Archive::new(std::fs::File::open(&archive).unwrap());
        for entry in outer.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().display().to_string();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
            files.insert(name, bytes);
        }
        let blob = |d: &str| files[&format!("blobs/sha256/{}", &d[7..])].clone();
        let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
        let manifest: serde_json::Value =
            serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap()))
                .unwrap();
        let layer = blob(manifest["layers"][0]["digest"].as_str().unwrap());
        let mut seen = std::collections::BTreeMap::new();
        for e in tar::Archive::new(&layer[..]).entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            let h = e.header().clone();
            let mut body = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut body).unwrap();
            seen.insert(
                name,
                (h.uid().unwrap(), h.gid().unwrap(), h.mode().unwrap(), body),
            );
        }
        assert_eq!(seen["opt/probe"], (0, 50000, 0o2755, b"\x7fELF".to_vec()));
        assert_eq!(seen["opt/other"], (0, 0, 0o644, b"x".to_vec()));
        assert!(
            ImageSpec::new("docker.io/t/owned:2", &rootfs)
                .owner_mode("opt/missing", 0, 1, 0o644)
                .write_archive(&dir.path().join("bad.tar"))
                .is_err()
        );
    }
}
