//! Step 1: read config.json as raw JSON (kept for a lossless rewrite) and pull out the few
//! fields the decision needs, with the same strictness libcontainer's typed parse applies, so
//! that what we decide on is what libcontainer will run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// process.user as the OCI spec defines it (Linux fields only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// A bundle's config.json, raw and with the fields we read.
pub struct BundleSpec {
    pub path: PathBuf,
    pub raw: Vec<u8>,
    pub json: Value,
    pub annotations: BTreeMap<String, String>,
    pub user: ProcessUser,
    /// `process.noNewPrivileges` (false when absent, as in libcontainer).
    pub no_new_privileges: bool,
}

/// The most of a config.json that is read (real ones are tens of KiB).
const MAX_SPEC_BYTES: u64 = 16 << 20;

/// Annotations naming the container's image: containerd's, then CRI-O's.
const IMAGE_NAME_ANNOTATIONS: [&str; 2] = [
    "io.kubernetes.cri.image-name",
    "io.kubernetes.cri-o.ImageName",
];

impl BundleSpec {
    pub fn load(bundle: &Path) -> Result<Self> {
        let path = bundle.join("config.json");
        let raw = crate::bounded_read::read(&path, MAX_SPEC_BYTES)
            .and_then(|raw| raw.ok_or_else(|| std::io::ErrorKind::NotFound.into()))
            .with_context(|| format!("reading {}", path.display()))?;
        Self::parse(path, raw)
    }

    /// The image the CRI says the container runs, when it says so.
    pub fn image_name(&self) -> Option<&str> {
        IMAGE_NAME_ANNOTATIONS
            .iter()
            .find_map(|k| self.annotations.get(*k))
            .map(String::as_str)
    }

    /// The container's root filesystem: `root.path`, relative to the bundle when relative.
    pub fn rootfs(&self) -> Option<PathBuf> {
        let root = self.json.pointer("/root/path")?.as_str()?;
        let bundle = self.path.parent()?;
        Some(bundle.join(root))
    }

    pub fn parse(path: PathBuf, raw: Vec<u8>) -> Result<Self> {
        let shown = path.display().to_string();
        let json: Value =
            serde_json::from_slice(&raw).with_context(|| format!("parsing {shown}"))?;
        let root = json
            .as_object()
            .with_context(|| format!("{shown}: the spec must be a JSON object"))?;
        let annotations = annotations_of(root.get("annotations"))
            .with_context(|| format!("{shown}: annotations"))?;
        let (user, no_new_privileges) = match root.get("process") {
            None | Some(Value::Null) => (ProcessUser::default_root(), false),
            Some(Value::Object(process)) => (
                user_of(process.get("user")).with_context(|| format!("{shown}: process.user"))?,
                match process.get("noNewPrivileges") {
                    None | Some(Value::Null) => false,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => bail!("{shown}: process.noNewPrivileges must be a boolean"),
                },
            ),
            Some(_) => bail!("{shown}: process must be an object"),
        };
        Ok(Self {
            path,
            raw,
            json,
            annotations,
            user,
            no_new_privileges,
        })
    }
}

impl ProcessUser {
    /// What libcontainer runs when a spec names no user.
    pub fn default_root() -> Self {
        Self {
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
        }
    }
}

/// Reads an OCI `user` object (the `process.user` of a spec, or the `user` of an exec
/// process.json).
pub fn user_of(user: Option<&Value>) -> Result<ProcessUser> {
    let user = match user {
        None | Some(Value::Null) => return Ok(ProcessUser::default_root()),
        Some(Value::Object(u)) => u,
        Some(_) => bail!("must be an object"),
    };
    let id = |key: &str| -> Result<u32> {
        match user.get(key) {
            None | Some(Value::Null) => Ok(0),
            Some(v) => as_id(v).with_context(|| key.to_owned()),
        }
    };
    let additional_gids = match user.get("additionalGids") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(gids)) => gids
            .iter()
            .enumerate()
            .map(|(i, v)| as_id(v).with_context(|| format!("additionalGids[{i}]")))
            .collect::<Result<_>>()?,
        Some(_) => bail!("additionalGids must be an array"),
    };
    Ok(ProcessUser {
        uid: id("uid")?,
        gid: id("gid")?,
        additional_gids,
    })
}

fn as_id(v: &Value) -> Result<u32> {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .with_context(|| format!("{v} is not a valid 32-bit id"))
}

fn annotations_of(v: Option<&Value>) -> Result<BTreeMap<String, String>> {
    match v {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => bail!("value of {k:?} must be a string"),
            })
            .collect(),
        Some(_) => bail!("must be an object"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<BundleSpec> {
        BundleSpec::parse(PathBuf::from("/b/config.json"), json.as_bytes().to_vec())
    }

    #[test]
    fn reads_fixture_shape() {
        let raw = std::fs::read(test_support::fixtures::containerd_fixture(
            "app-bypass-pod.config.json",
        ))
        .unwrap();
        let spec = BundleSpec::parse(PathBuf::from("config.json"), raw).unwrap();
        assert_eq!(spec.user.additional_gids, vec![1000, 50000, 60000]);
        assert_eq!(
            spec.annotations["io.kubernetes.cri.sandbox-name"],
            "bypass-pod"
        );
    }

    #[test]
    fn missing_parts_default_like_libcontainer() {
        let s = parse(r#"{"ociVersion":"1.0.2"}"#).unwrap();
        assert_eq!(s.user, ProcessUser::default_root());
        assert!(s.annotations.is_empty());
        let s = parse(r#"{"process":{"user":{"uid":5}}}"#).unwrap();
        assert_eq!((s.user.uid, s.user.gid), (5, 0));
    }

    #[test]
    fn rejects_what_libcontainer_would_reject() {
        for bad in [
            "not json",
            "[]",
            r#"{"process":{"user":{"additionalGids":[-1]}}}"#,
            r#"{"process":{"user":{"additionalGids":[4294967296]}}}"#,
            r#"{"process":{"user":{"additionalGids":[1.5]}}}"#,
            r#"{"process":{"user":{"additionalGids":"50000"}}}"#,
            r#"{"process":{"user":{"gid":"0"}}}"#,
            r#"{"process":"x"}"#,
            r#"{"annotations":{"a":1}}"#,
            r#"{"process":{"noNewPrivileges":"yes"}}"#,
        ] {
            let err = parse(bad).err().map(|e| format!("{e:#}"));
            assert!(err.is_some(), "accepted {bad}");
            assert!(err.unwrap_or_default().contains("/b/config.json"));
        }
    }
}
