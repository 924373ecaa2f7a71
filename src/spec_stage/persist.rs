//! Step 5: write the filtered list back, changing nothing else.
//!
//! The spec is edited as raw JSON (key order kept) rather than round-tripped through
//! oci-spec's typed `Spec`, which silently drops fields it does not know. The file is replaced
//! atomically: a temporary file in the same directory, fsync, rename, original mode and owner.

use std::fs::File;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// Sets `additionalGids` of the object at `object_path` (e.g. `process.user`) in place,
/// leaving every other key, and the order of keys, as it was.
pub fn set_additional_gids(json: &mut Value, object_path: &[&str], gids: &[u32]) -> Result<()> {
    let mut cursor = json;
    for key in object_path {
        cursor = cursor
            .get_mut(*key)
            .filter(|v| v.is_object())
            .with_context(|| format!("spec has no `{}` object", object_path.join(".")))?;
    }
    let user = cursor
        .as_object_mut()
        .with_context(|| format!("`{}` is not an object", object_path.join(".")))?;
    user.insert(
        "additionalGids".to_owned(),
        Value::Array(gids.iter().map(|&g| Value::from(g)).collect()),
    );
    Ok(())
}

/// Sets `process.noNewPrivileges` to true, leaving everything else as it was.
pub fn set_no_new_privileges(json: &mut Value) -> Result<()> {
    let process = json
        .get_mut("process")
        .and_then(Value::as_object_mut)
        .context("spec has no `process` object")?;
    process.insert("noNewPrivileges".to_owned(), Value::Bool(true));
    Ok(())
}

/// Serializes in the style of the original (compact unless it had line breaks).
pub fn serialize_like(original: &[u8], json: &Value) -> Result<Vec<u8>> {
    let pretty = original.contains(&b'\n')
        && original
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .is_some_and(|last| original[..last].contains(&b'\n'));
    let mut bytes = if pretty {
        serde_json::to_vec_pretty(json)?
    } else {
        serde_json::to_vec(json)?
    };
    if original.ends_with(b"\n") {
        bytes.push(b'\n');
    }
    Ok(bytes)
}

/// Replaces `path` with `contents` atomically, keeping its mode and ownership.
pub fn replace_file(path: &Path, contents: &[u8]) -> Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("stat {}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    crate::atomic_file::replace(path, contents, |tmp| {
        // Owner first: chown clears set-id bits, chmod then sets the whole mode.
        std::os::unix::fs::fchown(tmp, Some(meta.uid()), Some(meta.gid()))?;
        tmp.set_permissions(std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        tmp.sync_all()
    })?;
    // Make the rename itself durable; a failure here leaves a correct file, so only log it.
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Err(err) = File::open(dir).and_then(|d| d.sync_all()) {
        tracing::debug!(%err, dir = %dir.display(), "fsync of bundle directory");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    const SPEC: &str = r#"{"ociVersion":"1.0.2-dev","zVendor":{"b":1,"a":[1.5,"x"]},"process":{"user":{"uid":1000,"gid":1000,"additionalGids":[1000,50000,60000],"umask":18},"args":["id"],"unknownProcessField":true},"annotations":{"z":"1","a":"2"},"linux":{"futureField":{"k":null}}}"#;

    #[test]
    fn only_additional_gids_change_and_order_survives() {
        let mut out: Value = serde_json::from_str(SPEC).unwrap();
        set_additional_gids(&mut out, &["process", "user"], &[1000, 60000]).unwrap();
        let bytes = serialize_like(SPEC.as_bytes(), &out).unwrap();
        let expected = SPEC.replace("[1000,50000,60000]", "[1000,60000]");
        assert_eq!(String::from_utf8(bytes).unwrap(), expected);
    }

    #[test]
    fn adds_the_key_when_missing_and_fails_without_user() {
        let mut out: Value = serde_json::from_str(r#"{"user":{"uid":1}}"#).unwrap();
        set_additional_gids(&mut out, &["user"], &[]).unwrap();
        assert_eq!(out.to_string(), r#"{"user":{"uid":1,"additionalGids":[]}}"#);
        let mut json: Value = serde_json::from_str(r#"{"process":{}}"#).unwrap();
        assert!(set_additional_gids(&mut json, &["process", "user"], &[]).is_err());
    }

    /// Found by the exec_filter fuzz target: serde_json's default float parsing is best-effort,
    /// so a 17-digit float elsewhere in the document came back one ulp off after the rewrite.
    /// (Its text may change, `1e32` to `1e+32`; its value must not.)
    #[test]
    fn floats_elsewhere_keep_their_value_through_the_rewrite() {
        let spec = r#"{"process":{"user":{"uid":1,"gid":1,"additionalGids":[1,2]}},"zVendor":{"f":1.3333333333333333e32,"g":0.30000000000000004,"h":-2.2250738585072014e-308}}"#;
        let mut json: Value = serde_json::from_str(spec).unwrap();
        set_additional_gids(&mut json, &["process", "user"], &[1]).unwrap();
        let out = String::from_utf8(serialize_like(spec.as_bytes(), &json).unwrap()).unwrap();
        assert!(out.contains(r#""additionalGids":[1]}"#), "{out}");
        // The value as the standard library parses the text (correctly rounded).
        let number = |text: &str, key: &str| -> f64 {
            let start = text.find(&format!("\"{key}\":")).unwrap() + key.len() + 3;
            let end = start + text[start..].find([',', '}']).unwrap();
            text[start..end].parse().unwrap()
        };
        for key in ["f", "g", "h"] {
            assert_eq!(
                number(&out, key).to_bits(),
                number(spec, key).to_bits(),
                "{key} in {out}"
            );
        }
    }

    #[test]
    fn pretty_input_stays_pretty() {
        let original = b"{\n  \"a\": 1\n}\n";
        let json: Value = serde_json::from_slice(original).unwrap();
        let out = serialize_like(original, &json).unwrap();
        assert_eq!(out, original);
    }

    /// chown clears set-id bits, so the owner is set before the mode (the other order lost
    /// them). Root only: chown to another owner needs it.
    #[test]
    fn replace_keeps_set_id_bits_and_owner() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, "old").unwrap();
        std::os::unix::fs::chown(&path, Some(1234), Some(4321)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o6755)).unwrap();
        replace_file(&path, b"new").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o6755);
        assert_eq!((meta.uid(), meta.gid()), (1234, 4321));
    }

    #[test]
    fn replace_keeps_mode_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        replace_file(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o640);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("config.json")]);
    }
}
