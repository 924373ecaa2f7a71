//! What the fuzz targets share: the property "only `additionalGids` of one object changed, and
//! every key kept its place", the grant a target derives from its input, and argv from bytes.
//!
//! The comparator is what makes the rewrite targets able to fail, so [`self_check`] proves it
//! on known pairs when each target starts (a comparator that said "same" to everything would
//! otherwise pass every run).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use serde_json::Value;

/// The member a rewrite may change.
pub const ADDITIONAL_GIDS: &str = "additionalGids";

/// `Ok` when `after` equals `before` everywhere, with keys in the same order, except the
/// `additionalGids` member of the object at `exempt` (e.g. `["process", "user"]`), which may
/// differ or be appended; where `before` had it, it must keep its position.
pub fn same_except_additional_gids(
    before: &Value,
    after: &Value,
    exempt: &[&str],
) -> Result<(), String> {
    walk(before, after, Some(exempt), &mut String::from("$"))
}

fn walk(a: &Value, b: &Value, exempt: Option<&[&str]>, at: &mut String) -> Result<(), String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let here = exempt.is_some_and(<[&str]>::is_empty);
            let keys = |m: &serde_json::Map<String, Value>| -> Vec<String> {
                m.keys()
                    .filter(|k| !(here && k.as_str() == ADDITIONAL_GIDS))
                    .cloned()
                    .collect()
            };
            let (ka, kb) = (keys(x), keys(y));
            if ka != kb {
                return Err(format!("keys of {at} changed: {ka:?} became {kb:?}"));
            }
            if here && x.contains_key(ADDITIONAL_GIDS) {
                let place = |m: &serde_json::Map<String, Value>| {
                    m.keys().position(|k| k == ADDITIONAL_GIDS)
                };
                if place(x) != place(y) {
                    return Err(format!(
                        "{at}.{ADDITIONAL_GIDS} moved from {:?} to {:?}",
                        place(x),
                        place(y)
                    ));
                }
            }
            for k in &ka {
                let below = exempt
                    .and_then(<[&str]>::split_first)
                    .filter(|(head, _)| **head == k.as_str())
                    .map(|(_, rest)| rest);
                let len = at.len();
                at.push('.');
                at.push_str(k);
                walk(&x[k.as_str()], &y[k.as_str()], below, at)?;
                at.truncate(len);
            }
            Ok(())
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Err(format!(
                    "length of {at} changed: {} to {}",
                    x.len(),
                    y.len()
                ));
            }
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                let len = at.len();
                at.push_str(&format!("[{i}]"));
                walk(p, q, None, at)?;
                at.truncate(len);
            }
            Ok(())
        }
        _ if a == b => Ok(()),
        _ => Err(format!("{at} changed: {a} became {b}")),
    }
}

/// Outside the common prefix and suffix, both texts hold nothing but what an array of numbers
/// is written with — plus, where the member was missing and is appended, its name once:
/// every byte beyond the gid list was written as it was read.
pub fn only_a_number_list_changed(before: &[u8], after: &[u8]) {
    let prefix = before.iter().zip(after).take_while(|(a, b)| a == b).count();
    let room = before.len().min(after.len()) - prefix;
    let suffix = before
        .iter()
        .rev()
        .zip(after.iter().rev())
        .take(room)
        .take_while(|(a, b)| a == b)
        .count();
    let number_list = |text: &[u8]| {
        text.iter()
            .all(|b| b"0123456789[], \t\r\n-+.eE".contains(b))
    };
    let (old, new) = (
        &before[prefix..before.len() - suffix],
        &after[prefix..after.len() - suffix],
    );
    let name = b"\"additionalGids\":";
    let new_without_name: Vec<u8> = match new.windows(name.len()).position(|w| w == name) {
        Some(at) if old.is_empty() => [&new[..at], &new[at + name.len()..]].concat(),
        _ => new.to_vec(),
    };
    assert!(
        number_list(old) && number_list(&new_without_name),
        "the rewrite changed more than the gid list: {:?} became {:?}",
        String::from_utf8_lossy(old),
        String::from_utf8_lossy(new)
    );
}

/// The value at `path`, if every step is an object that has it.
pub fn at_path<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.as_object()?.get(*k))
}

/// A grant derived from the input's own gids (those at even positions), so that arbitrary gid
/// values meet both outcomes, kept and dropped.
pub fn derived_grant(gids: &[u32]) -> Vec<u32> {
    gids.iter().step_by(2).copied().collect()
}

/// argv from bytes: NUL separates arguments (an argument can hold any other byte, as on Linux);
/// the program name comes first, as the runtime sees it.
pub fn argv_from(data: &[u8]) -> Vec<OsString> {
    std::iter::once(OsString::from(
        "strict-supplementalgroups-container-runtime",
    ))
    .chain(
        data.split(|&b| b == 0)
            .map(|arg| OsString::from_vec(arg.to_vec())),
    )
    .collect()
}

/// Panics unless the comparator tells apart what it must (run once per target start).
pub fn self_check() {
    let parse = |s: &str| -> Value { serde_json::from_str(s).unwrap_or(Value::Null) };
    let base =
        parse(r#"{"a":1,"process":{"user":{"uid":1,"additionalGids":[1,2]},"x":[{"k":"v"}]}}"#);
    let user = ["process", "user"];
    let same = |s: &str| same_except_additional_gids(&base, &parse(s), &user).is_ok();
    assert!(same(
        r#"{"a":1,"process":{"user":{"uid":1,"additionalGids":[1]},"x":[{"k":"v"}]}}"#
    ));
    for changed in [
        // a value elsewhere, a key order, an array element, a dropped key, additionalGids moved,
        // additionalGids of another object
        r#"{"a":2,"process":{"user":{"uid":1,"additionalGids":[1]},"x":[{"k":"v"}]}}"#,
        r#"{"process":{"user":{"uid":1,"additionalGids":[1]},"x":[{"k":"v"}]},"a":1}"#,
        r#"{"a":1,"process":{"user":{"uid":1,"additionalGids":[1]},"x":[{"k":"w"}]}}"#,
        r#"{"a":1,"process":{"user":{"additionalGids":[1]},"x":[{"k":"v"}]}}"#,
        r#"{"a":1,"process":{"user":{"additionalGids":[1],"uid":1},"x":[{"k":"v"}]}}"#,
        r#"{"a":1,"process":{"user":{"uid":1,"additionalGids":[1]},"x":[{"k":"v","additionalGids":[]}]}}"#,
    ] {
        assert!(!same(changed), "comparator missed a change: {changed}");
    }
    let added = parse(r#"{"user":{"uid":1,"additionalGids":[]}}"#);
    assert!(
        same_except_additional_gids(&parse(r#"{"user":{"uid":1}}"#), &added, &["user"]).is_ok()
    );
    assert_eq!(derived_grant(&[1000, 50000, 60000]), vec![1000, 60000]);
    assert_eq!(argv_from(b"state\0x").len(), 3);
}
