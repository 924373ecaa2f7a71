//! Step 5: write the filtered list back, changing nothing else.
//!
//! The document is edited as text: jsonc-parser (strict JSON options) gives the byte range of
//! each value, and only the edited member's value is replaced (or, when the member is missing,
//! `,"name":value` is inserted after the object's last member). It is not round-tripped
//! through oci-spec's typed `Spec` (which drops fields it does not know) nor through
//! serde_json's `Value` (which re-encodes every number and string: an integer beyond 64 bits
//! came back as a different float, `\u00e9` as `é`, the author's layout as serde's); every
//! other byte is written as it was read. The file is replaced atomically: a temporary file in
//! the same directory, fsync, rename, original mode and owner.

use std::fs::File;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result, bail};
use jsonc_parser::ast::{Object, ObjectProp, Value};
use jsonc_parser::common::{Range, Ranged};
use jsonc_parser::{CollectOptions, ParseOptions, parse_to_ast};

/// A JSON document (config.json, an exec process file) being edited in place.
pub struct JsonEdit {
    text: String,
}

impl JsonEdit {
    /// Takes `raw`, which the caller has already read with serde_json (so it is one strict
    /// JSON document, nested at most 128 deep). Each edit parses the current text.
    pub fn parse(raw: &[u8]) -> Result<Self> {
        let text = std::str::from_utf8(raw).context("the document is not UTF-8")?;
        Ok(Self {
            text: text.to_owned(),
        })
    }

    /// Sets `additionalGids` of the object at `object_path` (e.g. `process.user`), adding the
    /// member at the object's end when it is missing.
    pub fn set_additional_gids(&mut self, object_path: &[&str], gids: &[u32]) -> Result<()> {
        let list = gids
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        self.set_member(object_path, "additionalGids", &format!("[{list}]"))
    }

    /// Sets `noNewPrivileges` of the object at `object_path` (`process` in a config.json, the
    /// top level in an exec process file) to true.
    pub fn set_no_new_privileges(&mut self, object_path: &[&str]) -> Result<()> {
        self.set_member(object_path, "noNewPrivileges", "true")
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.text.into_bytes()
    }

    fn ast(&self) -> Result<Value<'_>> {
        let strict = ParseOptions {
            allow_comments: false,
            allow_loose_object_property_names: false,
            allow_trailing_commas: false,
            allow_missing_commas: false,
            allow_single_quoted_strings: false,
            allow_hexadecimal_numbers: false,
            allow_unary_plus_numbers: false,
            allow_bare_decimal_point_numbers: false,
            allow_non_finite_numbers: false,
            allow_extended_string_escapes: false,
        };
        parse_to_ast(&self.text, &CollectOptions::default(), &strict)
            .map_err(|err| anyhow::anyhow!("{err}"))
            .context("parsing the document for the rewrite")?
            .value
            .context("the document is empty")
    }

    /// Replaces the value of member `name` of the object at `object_path` with `value` (JSON
    /// text), or appends the member.
    fn set_member(&mut self, object_path: &[&str], name: &str, value: &str) -> Result<()> {
        let (at, insert) = {
            let root = self.ast()?;
            let object = object_at(&root, object_path)?;
            match unique_member(object, name, object_path)? {
                Some(member) => (member.value.range(), value.to_owned()),
                None => {
                    let quoted = serde_json::to_string(name)?;
                    match object.properties.last() {
                        Some(last) => (empty_range(last.range.end), format!(",{quoted}:{value}")),
                        None => {
                            // Just after the object's `{`.
                            let inside =
                                object.range.start.checked_add(1).context(
                                    "the parser gave a range that is not in the document",
                                )?;
                            (empty_range(inside), format!("{quoted}:{value}"))
                        }
                    }
                }
            }
        };
        if !(at.start <= at.end
            && self.text.is_char_boundary(at.start)
            && self.text.is_char_boundary(at.end))
        {
            bail!("the parser gave a range that is not in the document");
        }
        self.text.replace_range(at.start..at.end, &insert);
        Ok(())
    }
}

fn empty_range(at: usize) -> Range {
    Range { start: at, end: at }
}

fn object_at<'v, 'a>(root: &'v Value<'a>, object_path: &[&str]) -> Result<&'v Object<'a>> {
    let shown = || {
        if object_path.is_empty() {
            "the document".to_owned()
        } else {
            format!("`{}`", object_path.join("."))
        }
    };
    let Value::Object(object) = root else {
        bail!("the document is not a JSON object");
    };
    let mut object = object;
    for (depth, key) in object_path.iter().enumerate() {
        let member = unique_member(object, key, &object_path[..depth])?
            .with_context(|| format!("the document has no {} object", shown()))?;
        let Value::Object(inner) = &member.value else {
            bail!("{} is not an object", shown());
        };
        object = inner;
    }
    Ok(object)
}

/// The member `name` of `object`. A name that appears twice is refused: serde_json (and so
/// the stage) reads the last, an edit of the first would leave it, and oci-spec refuses a
/// duplicate field anyway.
fn unique_member<'v, 'a>(
    object: &'v Object<'a>,
    name: &str,
    at: &[&str],
) -> Result<Option<&'v ObjectProp<'a>>> {
    let mut found = object
        .properties
        .iter()
        .filter(|member| member.name.as_str() == name);
    let first = found.next();
    if found.next().is_some() {
        let path = at.iter().chain([&name]).copied().collect::<Vec<_>>();
        bail!("`{}` appears twice in the document", path.join("."));
    }
    Ok(first)
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

    fn with_gids(spec: &str, path: &[&str], gids: &[u32]) -> Result<String> {
        let mut edit = JsonEdit::parse(spec.as_bytes())?;
        edit.set_additional_gids(path, gids)?;
        Ok(String::from_utf8(edit.into_bytes())?)
    }

    #[test]
    fn only_additional_gids_change_and_order_survives() {
        let out = with_gids(SPEC, &["process", "user"], &[1000, 60000]).unwrap();
        assert_eq!(out, SPEC.replace("[1000,50000,60000]", "[1000,60000]"));
    }

    #[test]
    fn adds_the_key_when_missing_and_fails_without_user() {
        let spec = r#"{"a":1,"user":{"uid":1,"z":[2]},"b":2}"#;
        let out = with_gids(spec, &["user"], &[]).unwrap();
        assert_eq!(
            out,
            r#"{"a":1,"user":{"uid":1,"z":[2],"additionalGids":[]},"b":2}"#
        );
        let out = with_gids("{\"user\": { }\n}", &["user"], &[7]).unwrap();
        assert_eq!(out, "{\"user\": {\"additionalGids\":[7] }\n}");
        let err = with_gids(r#"{"process":{}}"#, &["process", "user"], &[]).unwrap_err();
        assert!(
            format!("{err:#}").contains("no `process.user` object"),
            "{err:#}"
        );
        let err = with_gids(r#"{"process":{"user":5}}"#, &["process", "user"], &[]).unwrap_err();
        assert!(format!("{err:#}").contains("is not an object"), "{err:#}");
    }

    #[test]
    fn documents_that_are_not_an_utf8_object_are_refused() {
        assert!(JsonEdit::parse(b"{\"a\":\"\xff\"}").is_err());
        let err = with_gids("[1]", &["user"], &[]).unwrap_err();
        assert!(format!("{err:#}").contains("not a JSON object"), "{err:#}");
        let err = with_gids("{\"user\":{}", &["user"], &[]).unwrap_err();
        assert!(
            format!("{err:#}").contains("parsing the document"),
            "{err:#}"
        );
    }

    /// serde_json reads the last of two equal keys; editing the first would leave the one that
    /// counts unfiltered. oci-spec refuses such a document, and so does the rewrite.
    #[test]
    fn a_duplicated_member_on_the_path_is_refused() {
        for spec in [
            r#"{"process":{"user":{"additionalGids":[5]}},"process":{"user":{"additionalGids":[6]}}}"#,
            r#"{"process":{"user":{"additionalGids":[5]},"user":{"additionalGids":[6]}}}"#,
            r#"{"process":{"user":{"additionalGids":[5],"additionalGids":[6]}}}"#,
            r#"{"process":{"user":{"additionalGids":[5],"additional\u0047ids":[6]}}}"#,
        ] {
            let err = with_gids(spec, &["process", "user"], &[]).unwrap_err();
            assert!(
                format!("{err:#}").contains("appears twice"),
                "{spec}: {err:#}"
            );
        }
    }

    #[test]
    fn sets_no_new_privileges_where_asked() {
        let mut edit =
            JsonEdit::parse(br#"{"process":{"noNewPrivileges":false,"args":[]}}"#).unwrap();
        edit.set_no_new_privileges(&["process"]).unwrap();
        assert_eq!(
            edit.into_bytes(),
            br#"{"process":{"noNewPrivileges":true,"args":[]}}"#
        );
        let mut edit = JsonEdit::parse(b"{\"args\": [], \"cwd\": \"/\"}\n").unwrap();
        edit.set_no_new_privileges(&[]).unwrap();
        assert_eq!(
            edit.into_bytes(),
            b"{\"args\": [], \"cwd\": \"/\",\"noNewPrivileges\":true}\n"
        );
    }

    /// Found by the exec_filter fuzz target: serde_json's default float parsing is best-effort,
    /// so a 17-digit float elsewhere in the document came back one ulp off after the rewrite.
    #[test]
    fn floats_elsewhere_keep_their_value_through_the_rewrite() {
        let spec = r#"{"process":{"user":{"uid":1,"gid":1,"additionalGids":[1,2]}},"zVendor":{"f":1.3333333333333333e32,"g":0.30000000000000004,"h":-2.2250738585072014e-308}}"#;
        let out = with_gids(spec, &["process", "user"], &[1]).unwrap();
        assert_eq!(out, spec.replace("[1,2]", "[1]"));
    }

    /// Numbers that do not fit 64 bits, escapes and the author's layout are not re-encoded: a
    /// round trip through serde_json's Value turned 18446744073709551617 into
    /// 1.8446744073709552e19 (another value), `\u00e9` into `é` and tabs into spaces.
    #[test]
    fn everything_but_the_edited_value_stays_byte_for_byte() {
        let spec = "{\n\t\"zVendor\": {\"big\": 18446744073709551617, \"neg\": -99999999999999999999, \"s\": \"\\u00e9\\/ é ☃ 🦀\"},\n\t\"process\": {\"user\": {\"uid\": 1, \"gid\": 1, \"additionalGids\": [1, 2, 50000]},\n\t\t\"x\": 1e2}\n}\n";
        let out = with_gids(spec, &["process", "user"], &[1]).unwrap();
        assert_eq!(out, spec.replace("[1, 2, 50000]", "[1]"));
    }

    #[test]
    fn pretty_input_stays_as_written_around_the_list() {
        let spec = "{\n  \"user\": {\n    \"uid\": 1,\n    \"additionalGids\": [\n      1,\n      2\n    ]\n  }\n}\n";
        let out = with_gids(spec, &["user"], &[1]).unwrap();
        assert_eq!(out, spec.replace("[\n      1,\n      2\n    ]", "[1]"));
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
