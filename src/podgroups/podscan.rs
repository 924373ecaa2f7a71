//! A fast, selective reader of a kubelet's `/pods` reply for one wanted pod.
//!
//! This reader walks the document's structure instead of tokenizing it: strings are crossed
//! with `memchr` (SIMD), unwanted values are skipped by matching brackets (64 bytes at a time,
//! SSE2 on x86_64), and only `metadata.{namespace,name,uid}` of each pod is decoded. The `spec`
//! of the pods whose namespace and name are the wanted ones is handed, as its byte range, to
//! serde and the same [`SpecView`] every other source uses, so the fields read from a pod
//! (groups, runAsGroups, volumes, containers) are defined once; matching (by uid,
//! same-name-other-uid errors) stays in [`super::podlist::find_pod`].
//!
//! **Why it is kept** (issue 13 §3: a hand-made part stays only where a benchmark shows it
//! earns its lines). Measured on this machine with the release build, whole `explain` lookups
//! of a pod never seen against the TLS stand-in (`just bench --phases lookup` with the runtime
//! under callgrind, whose instruction counts the load of the shared machine does not move), and
//! the parse alone in-process (`tests/http_sources.rs`'s `kubelet_lookup_latency`, minimum of
//! 40):
//!
//! | /pods of | lookup, this scanner | lookup, serde view of `podlist` | parse alone, scanner / serde |
//! |---|---|---|---|
//! | 110 pods (0.5 MiB) | 11.0 M instructions | 17.6 M | 0.11 / 0.45 ms |
//! | 1,000 pods (4.6 MiB) | 65.7 M instructions | 126.1 M | 1.0 / 4.2 ms |
//!
//! The serde view (which now also reads every pod's containers and volumes) doubles the
//! lookup's instructions at 1,000 pods and costs 3 ms of the 10 ms the lookup may take there.
//!
//! Strict where it reads (types, duplicate keys, trailing garbage; the wanted pod's spec as
//! strictly as serde), structural where it skips (brackets must match and strings must end;
//! commas and colons inside skipped values are not checked). The kubelet is authenticated, so
//! this is about failing on broken replies, not on hostile ones; arbitrary and damaged inputs
//! are property-tested against the serde path below (the tests are a third of this file's
//! length; the scanner itself is about 500 lines).

use super::podlist::{MetadataView, PodListView, PodView, SpecView};
use crate::pod::PodRef;

/// Deepest nesting accepted inside skipped values.
const MAX_DEPTH: usize = 1024;

/// Reads a PodList, keeping only the pods whose namespace and name are `wanted`'s.
pub fn scan_pod_list(bytes: &[u8], wanted: &PodRef) -> Result<PodListView, String> {
    let mut s = Scanner { b: bytes, i: 0 };
    let list = s.pod_list(wanted)?;
    s.ws();
    if s.i != s.b.len() {
        return Err(s.err("trailing characters after the document"));
    }
    Ok(list)
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

/// A key as it appears (escapes are rare in keys; they are decoded when present).
enum Key<'a> {
    Plain(&'a [u8]),
    Decoded(String),
}

impl Key<'_> {
    fn is(&self, name: &str) -> bool {
        match self {
            Key::Plain(raw) => *raw == name.as_bytes(),
            Key::Decoded(text) => text == name,
        }
    }
}

impl<'a> Scanner<'a> {
    fn err(&self, what: &str) -> String {
        format!("{what} at byte {}", self.i)
    }

    fn ws(&mut self) {
        while let Some(c) = self.b.get(self.i) {
            if matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(&format!("expected '{}'", char::from(c))))
        }
    }

    /// Consumes `null` if it is next.
    fn null(&mut self) -> bool {
        if self.peek() == Some(b'n') && self.b[self.i..].starts_with(b"null") {
            self.i += 4;
            true
        } else {
            false
        }
    }

    /// A string token; returns its raw content and whether it has escapes.
    fn string_raw(&mut self) -> Result<(&'a [u8], bool), String> {
        self.eat(b'"')?;
        let start = self.i;
        let mut escaped = false;
        loop {
            let Some(k) = memchr::memchr2(b'"', b'\\', &self.b[self.i..]) else {
                return Err(self.err("unterminated string"));
            };
            let at = self.i + k;
            if self.b[at] == b'"' {
                self.i = at + 1;
                return Ok((&self.b[start..at], escaped));
            }
            escaped = true;
            self.i = at + 2;
            if self.i > self.b.len() {
                return Err(self.err("unterminated string"));
            }
        }
    }

    /// A string value, decoded and validated like serde_json does.
    fn string(&mut self) -> Result<String, String> {
        self.ws();
        let start = self.i;
        let (raw, escaped) = self.string_raw()?;
        if !escaped {
            if raw.iter().any(|&c| c < 0x20) {
                return Err(self.err("control character in string"));
            }
            return String::from_utf8(raw.to_vec()).map_err(|_| self.err("invalid UTF-8"));
        }
        serde_json::from_slice::<String>(&self.b[start..self.i])
            .map_err(|e| self.err(&e.to_string()))
    }

    fn key(&mut self) -> Result<Key<'a>, String> {
        self.ws();
        let start = self.i;
        let (raw, escaped) = self.string_raw()?;
        let key = if escaped {
            Key::Decoded(
                serde_json::from_slice::<String>(&self.b[start..self.i])
                    .map_err(|e| self.err(&e.to_string()))?,
            )
        } else {
            Key::Plain(raw)
        };
        self.eat(b':')?;
        Ok(key)
    }

    /// After a member: `,` (more follow) or the closer (done).
    fn next_member(&mut self, closer: u8) -> Result<bool, String> {
        match self.peek() {
            Some(b',') => {
                self.i += 1;
                Ok(true)
            }
            Some(c) if c == closer => {
                self.i += 1;
                Ok(false)
            }
            _ => Err(self.err(&format!("expected ',' or '{}'", char::from(closer)))),
        }
    }

    /// Walks the members of an object, calling `member` with each key; `member` must consume
    /// the value.
    fn object(
        &mut self,
        mut member: impl FnMut(&mut Self, Key<'a>) -> Result<(), String>,
    ) -> Result<(), String> {
        self.eat(b'{')?;
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            let key = self.key()?;
            member(self, key)?;
            if !self.next_member(b'}')? {
                return Ok(());
            }
        }
    }

    fn skip_value(&mut self) -> Result<(), String> {
        match self.peek() {
            Some(b'"') => self.string_raw().map(|_| ()),
            Some(b'{' | b'[') => self.skip_container(),
            Some(b't' | b'f' | b'n' | b'-' | b'0'..=b'9') => {
                let token = self.scalar_token();
                let ok = match token.first() {
                    Some(b't') => token == b"true",
                    Some(b'f') => token == b"false",
                    Some(b'n') => token == b"null",
                    _ => token.iter().all(|c| {
                        c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E')
                    }),
                };
                if ok {
                    Ok(())
                } else {
                    Err(self.err("invalid literal"))
                }
            }
            _ => Err(self.err("expected a value")),
        }
    }

    fn scalar_token(&mut self) -> &'a [u8] {
        let start = self.i;
        while let Some(c) = self.b.get(self.i) {
            if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'+' | b'.') {
                self.i += 1;
            } else {
                break;
            }
        }
        &self.b[start..self.i]
    }

    /// Skips an object or array by matching brackets (see [`container_end`]).
    fn skip_container(&mut self) -> Result<(), String> {
        match container_end(self.b, self.i) {
            Ok(end) => {
                self.i = end;
                Ok(())
            }
            Err((at, what)) => {
                self.i = at;
                Err(self.err(what))
            }
        }
    }

    fn optional_string(&mut self) -> Result<Option<String>, String> {
        if self.null() {
            Ok(None)
        } else {
            self.string().map(Some)
        }
    }

    fn pod_list(&mut self, wanted: &PodRef) -> Result<PodListView, String> {
        let mut kind: Option<Option<String>> = None;
        let mut items: Option<Option<Vec<PodView>>> = None;
        self.object(|s, key| {
            if key.is("kind") {
                set_once(&mut kind, s.optional_string()?, s, "kind")
            } else if key.is("items") {
                let list = if s.null() {
                    None
                } else {
                    Some(s.items(wanted)?)
                };
                set_once(&mut items, list, s, "items")
            } else {
                s.skip_value()
            }
        })?;
        Ok(PodListView {
            kind: kind.flatten(),
            items: items.flatten(),
        })
    }

    fn items(&mut self, wanted: &PodRef) -> Result<Vec<PodView>, String> {
        let mut kept = Vec::new();
        self.eat(b'[')?;
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(kept);
        }
        loop {
            if let Some(pod) = self.pod(wanted)? {
                kept.push(pod);
            }
            if !self.next_member(b']')? {
                return Ok(kept);
            }
        }
    }

    /// One item; Some only when its namespace and name are the wanted ones.
    fn pod(&mut self, wanted: &PodRef) -> Result<Option<PodView>, String> {
        let mut metadata: Option<MetadataView> = None;
        let mut spec_at: Option<Option<(usize, usize)>> = None;
        self.object(|s, key| {
            if key.is("metadata") {
                let m = if s.null() {
                    MetadataView::default()
                } else {
                    s.metadata()?
                };
                set_once(&mut metadata, m, s, "metadata")
            } else if key.is("spec") {
                // Remember where it is; read it only if this is the wanted pod.
                s.ws();
                let at = s.i;
                let value = if s.null() {
                    None
                } else {
                    s.skip_value()?;
                    Some((at, s.i))
                };
                set_once(&mut spec_at, value, s, "spec")
            } else {
                s.skip_value()
            }
        })?;
        let metadata = metadata.unwrap_or_default();
        if metadata.namespace.as_deref() != Some(wanted.namespace.as_str())
            || metadata.name.as_deref() != Some(wanted.name.as_str())
        {
            return Ok(None);
        }
        // The wanted pod's spec is read by serde: the same view as every other source.
        let spec = match spec_at.flatten() {
            Some((at, end)) => Some(
                serde_json::from_slice::<SpecView>(&self.b[at..end]).map_err(|e| {
                    format!("spec of pod {}/{}: {e}", wanted.namespace, wanted.name)
                })?,
            ),
            None => None,
        };
        Ok(Some(PodView {
            metadata,
            spec,
            ..PodView::default()
        }))
    }

    fn metadata(&mut self) -> Result<MetadataView, String> {
        let mut namespace = None;
        let mut name = None;
        let mut uid = None;
        self.object(|s, key| {
            if key.is("namespace") {
                set_once(
                    &mut namespace,
                    s.optional_string()?,
                    s,
                    "metadata.namespace",
                )
            } else if key.is("name") {
                set_once(&mut name, s.optional_string()?, s, "metadata.name")
            } else if key.is("uid") {
                set_once(&mut uid, s.optional_string()?, s, "metadata.uid")
            } else {
                s.skip_value()
            }
        })?;
        Ok(MetadataView {
            namespace: namespace.flatten(),
            name: name.flatten(),
            uid: uid.flatten(),
            ..MetadataView::default()
        })
    }
}

/// Where the object or array starting at `start` ends (the index after its closing bracket),
/// or where and why it is broken.
///
/// 64 bytes at a time: masks of quotes and brackets (SSE2 on x86_64), the inside of strings by
/// a prefix XOR of the quotes, and only the brackets outside strings visited one by one. A block
/// with a backslash in it (rare in pod JSON) is walked byte by byte, which handles escapes.
fn container_end(b: &[u8], start: usize) -> Result<usize, (usize, &'static str)> {
    let mut state = SkipState {
        stack: Vec::with_capacity(16),
        in_string: false,
        escape: false,
    };
    let n = b.len();
    let mut i = start;
    while let Some(block) = b.get(i..i + 64).and_then(|s| <&[u8; 64]>::try_from(s).ok()) {
        let m = masks(block);
        if m.backslash != 0 || state.escape {
            if let Some(end) = state.walk(b, i, i + 64)? {
                return Ok(end);
            }
        } else {
            let mut inside = prefix_xor(m.quote);
            if state.in_string {
                inside = !inside;
            }
            let mut brackets = (m.open | m.close) & !inside;
            while brackets != 0 {
                let k = brackets.trailing_zeros() as usize;
                brackets &= brackets - 1;
                if let Some(end) = state.bracket(block[k], i + k)? {
                    return Ok(end);
                }
            }
            state.in_string = inside >> 63 == 1;
        }
        i += 64;
    }
    if let Some(end) = state.walk(b, i, n)? {
        return Ok(end);
    }
    Err((
        n,
        if state.in_string {
            "unterminated string"
        } else {
            "unterminated object or array"
        },
    ))
}

struct SkipState {
    /// The closers expected, innermost last.
    stack: Vec<u8>,
    in_string: bool,
    /// The previous byte was a backslash inside a string.
    escape: bool,
}

impl SkipState {
    /// Byte by byte over `b[from..to]`; Some(end) when the container closed.
    fn walk(
        &mut self,
        b: &[u8],
        from: usize,
        to: usize,
    ) -> Result<Option<usize>, (usize, &'static str)> {
        for (j, &c) in b.iter().enumerate().take(to).skip(from) {
            if self.in_string {
                if self.escape {
                    self.escape = false;
                } else if c == b'\\' {
                    self.escape = true;
                } else if c == b'"' {
                    self.in_string = false;
                }
            } else if c == b'"' {
                self.in_string = true;
            } else if matches!(c, b'{' | b'[' | b'}' | b']') {
                if let Some(end) = self.bracket(c, j)? {
                    return Ok(Some(end));
                }
            }
        }
        Ok(None)
    }

    /// One bracket outside strings at `at`; Some(end) when it closed the outermost one.
    fn bracket(&mut self, c: u8, at: usize) -> Result<Option<usize>, (usize, &'static str)> {
        match c {
            b'{' | b'[' => {
                if self.stack.len() >= MAX_DEPTH {
                    return Err((at, "nested too deeply"));
                }
                self.stack.push(if c == b'{' { b'}' } else { b']' });
                Ok(None)
            }
            _ => {
                if self.stack.pop() != Some(c) {
                    return Err((at, "mismatched bracket"));
                }
                Ok(self.stack.is_empty().then_some(at + 1))
            }
        }
    }
}

/// Bit k set when byte k of a 64-byte block is a quote, a backslash, `{`/`[`, `}`/`]`.
struct Masks {
    quote: u64,
    backslash: u64,
    open: u64,
    close: u64,
}

#[cfg(target_arch = "x86_64")]
fn masks(block: &[u8; 64]) -> Masks {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    let mut m = Masks {
        quote: 0,
        backslash: 0,
        open: 0,
        close: 0,
    };
    // SAFETY: SSE2 is part of the x86_64 baseline, so these intrinsics are always available;
    // each unaligned 16-byte load reads inside `block`, which is exactly 64 bytes long.
    unsafe {
        let quote = _mm_set1_epi8(b'"' as i8);
        let backslash = _mm_set1_epi8(b'\\' as i8);
        // `{` (0x7b) and `[` (0x5b) differ only in bit 0x20; so do `}` and `]`.
        let case = _mm_set1_epi8(0x20);
        let open = _mm_set1_epi8(b'{' as i8);
        let close = _mm_set1_epi8(b'}' as i8);
        for k in 0..4 {
            let v = _mm_loadu_si128(block.as_ptr().add(16 * k).cast::<__m128i>());
            let folded = _mm_or_si128(v, case);
            let bits = |x| u64::from(_mm_movemask_epi8(x) as u16) << (16 * k);
            m.quote |= bits(_mm_cmpeq_epi8(v, quote));
            m.backslash |= bits(_mm_cmpeq_epi8(v, backslash));
            m.open |= bits(_mm_cmpeq_epi8(folded, open));
            m.close |= bits(_mm_cmpeq_epi8(folded, close));
        }
    }
    m
}

#[cfg(not(target_arch = "x86_64"))]
fn masks(block: &[u8; 64]) -> Masks {
    let mut m = Masks {
        quote: 0,
        backslash: 0,
        open: 0,
        close: 0,
    };
    for (k, &c) in block.iter().enumerate() {
        let bit = 1u64 << k;
        match c {
            b'"' => m.quote |= bit,
            b'\\' => m.backslash |= bit,
            b'{' | b'[' => m.open |= bit,
            b'}' | b']' => m.close |= bit,
            _ => {}
        }
    }
    m
}

/// Bit k = XOR of bits 0..=k: set from an opening quote up to (not including) its closing one.
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

/// A field read twice is an error (serde's derive says "duplicate field"; a reader that took
/// the first or the last could disagree with the kubelet about which pod this is).
fn set_once<T>(slot: &mut Option<T>, value: T, s: &Scanner<'_>, what: &str) -> Result<(), String> {
    if slot.is_some() {
        return Err(s.err(&format!("duplicate field {what}")));
    }
    *slot = Some(value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use test_support::kubelet::{filler_pods, pod, pod_list};

    use super::*;
    use crate::podgroups::podlist::{find_pod, groups_of};

    fn wanted(ns: &str, name: &str, uid: Option<&str>) -> PodRef {
        PodRef {
            namespace: ns.into(),
            name: name.into(),
            uid: uid.map(Into::into),
        }
    }

    /// The scanner and the serde path give the same answer (or both fail).
    fn same_answer(doc: &[u8], w: &PodRef) {
        let answer = |list: PodListView| -> Result<String, String> {
            Ok(format!(
                "{:?}",
                find_pod(list.validate()?, w, "t").and_then(|p| groups_of(p, w, "t"))
            ))
        };
        let via_serde = serde_json::from_slice::<PodListView>(doc)
            .map_err(|e| e.to_string())
            .and_then(answer);
        let via_scan = scan_pod_list(doc, w).and_then(answer);
        match (&via_serde, &via_scan) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{}", String::from_utf8_lossy(doc)),
            (Err(_), Err(_)) => {}
            _ => panic!(
                "serde {via_serde:?} vs scan {via_scan:?} on {}",
                String::from_utf8_lossy(doc)
            ),
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

        /// The kubelet's reply is network input: arbitrary bytes never panic the scanner.
        #[test]
        fn arbitrary_bytes_never_panic(doc in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = scan_pod_list(&doc, &wanted("ns", "p", Some("u")));
        }

        /// A real PodList damaged anywhere (a byte replaced, or cut short) never makes the
        /// scanner answer something serde would not: it answers what serde answers, or, where
        /// serde rejects damage in what the scanner only skips (by design it checks skipped
        /// values for structure, not grammar), what it answered for the undamaged list.
        #[test]
        fn damaged_lists_never_give_a_new_answer(at in 0usize..4096, byte in proptest::num::u8::ANY, cut in proptest::bool::ANY) {
            let w = wanted("ns", "p", Some("u"));
            let mut items = filler_pods(1);
            items.push(pod("ns", "p", "u", &[60000], Some(7)));
            let mut doc = serde_json::to_vec(&pod_list(items)).unwrap_or_default();
            let answer = |doc: &[u8]| -> Result<String, String> {
                let list = scan_pod_list(doc, &w)?;
                Ok(format!("{:?}", find_pod(list.validate()?, &w, "t").and_then(|p| groups_of(p, &w, "t"))))
            };
            let undamaged = answer(&doc);
            let at = at % doc.len();
            if cut {
                doc.truncate(at);
            } else {
                doc[at] = byte;
            }
            if let Ok(scanned) = answer(&doc) {
                let via_serde = serde_json::from_slice::<PodListView>(&doc)
                    .map_err(|e| e.to_string())
                    .and_then(|list| Ok(format!("{:?}", find_pod(list.validate()?, &w, "t").and_then(|p| groups_of(p, &w, "t")))));
                proptest::prop_assert!(
                    via_serde.as_ref() == Ok(&scanned) || undamaged.as_ref() == Ok(&scanned),
                    "scan {scanned} vs serde {via_serde:?} vs undamaged {undamaged:?}"
                );
            }
        }
    }

    #[test]
    fn agrees_with_serde_on_realistic_lists() {
        let mut items = filler_pods(60);
        items.push(pod("user-alice", "bypass-pod", "u1", &[60000], Some(70000)));
        items.push(pod("user-alice", "twin", "old", &[1], None));
        items.push(pod("user-alice", "twin", "new", &[2], Some(3)));
        let doc = serde_json::to_vec_pretty(&pod_list(items)).unwrap();
        for w in [
            wanted("user-alice", "bypass-pod", Some("u1")),
            wanted("user-alice", "bypass-pod", None),
            wanted("user-alice", "bypass-pod", Some("other")),
            wanted("user-alice", "twin", Some("new")),
            wanted("user-alice", "twin", Some("old")),
            wanted("user-alice", "twin", Some("neither")),
            wanted("filler-3", "filler-43", Some("filler-uid-43")),
            wanted("nobody", "nothing", None),
        ] {
            same_answer(&doc, &w);
        }
    }

    #[test]
    fn agrees_with_serde_on_odd_but_valid_documents() {
        let w = wanted("n\u{e9}s", "p\"q", Some("u/1"));
        for doc in [
            // Escapes, unicode, spec before metadata, nulls, empty objects, nested arrays.
            json!({"items": [{"spec": {"securityContext": {"supplementalGroups": [5, 6], "fsGroup": null}},
                              "metadata": {"uid": "u/1", "name": "p\"q", "namespace": "n\u{e9}s",
                                           "labels": {"a\\b": "[{]}", "e": "\u{1F600}"}}}],
                   "kind": "PodList", "metadata": {"resourceVersion": ""}}),
            json!({"kind": "PodList", "items": [{"metadata": {"namespace": "n\u{e9}s", "name": "p\"q", "uid": "u/1"},
                                                 "spec": null}]}),
            json!({"kind": "PodList", "items": [{"metadata": {"namespace": "n\u{e9}s", "name": "p\"q", "uid": "u/1"},
                                                 "spec": {"securityContext": null, "x": [[[]], {}, -1.5e3, true]}}]}),
            json!({"kind": "List", "items": []}),
            json!({"kind": "PodList", "items": null}),
            json!({"items": [{"metadata": {"namespace": "n\u{e9}s", "name": "p\"q", "uid": "u/1"},
                              "spec": {"securityContext": {"supplementalGroups": [-1, 4294967296_i64]}}}]}),
        ] {
            same_answer(serde_json::to_string(&doc).unwrap().as_bytes(), &w);
        }
        // An escaped key is still the key.
        same_answer(
            br#"{"items":[{"meta\u0064ata":{"namespace":"n\u00e9s","name":"p\"q","uid":"u/1"},"spec":{"securityContext":{"fsGroup":7}}}]}"#,
            &w,
        );
    }

    /// Mutated documents: the scanner never panics, and whenever serde accepts a document the
    /// scanner gives the same answer (it may reject more, or skip more leniently, never differ).
    #[test]
    fn mutations_never_panic_or_disagree() {
        let mut items = filler_pods(3);
        items.push(pod("a", "p", "u1", &[1, 2], Some(3)));
        let base = serde_json::to_vec(&pod_list(items)).unwrap();
        let w = wanted("a", "p", Some("u1"));
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet = b"{}[]\":,\\ 0-9eanulltrf";
        for _ in 0..3000 {
            let mut doc = base.clone();
            for _ in 0..(1 + next() % 3) {
                let at = (next() as usize) % doc.len();
                match next() % 3 {
                    0 => doc[at] = alphabet[(next() as usize) % alphabet.len()],
                    1 => {
                        doc.remove(at);
                    }
                    _ => doc.truncate(at),
                }
                if doc.is_empty() {
                    break;
                }
            }
            let via_scan = std::panic::catch_unwind(|| scan_pod_list(&doc, &w));
            let via_scan = via_scan.unwrap_or_else(|_| {
                panic!("scanner panicked on {}", String::from_utf8_lossy(&doc))
            });
            if let Ok(list) = serde_json::from_slice::<PodListView>(&doc) {
                let serde_answer = list.validate().map(|items| {
                    format!(
                        "{:?}",
                        find_pod(items, &w, "t").and_then(|p| groups_of(p, &w, "t"))
                    )
                });
                let scan_answer = via_scan.as_ref().map_err(Clone::clone).and_then(|l| {
                    l.validate().map(|items| {
                        format!(
                            "{:?}",
                            find_pod(items, &w, "t").and_then(|p| groups_of(p, &w, "t"))
                        )
                    })
                });
                if serde_answer.is_ok() {
                    assert_eq!(
                        serde_answer,
                        scan_answer,
                        "{}",
                        String::from_utf8_lossy(&doc)
                    );
                }
            }
        }
    }

    /// The plain definition the block skipper must agree with.
    fn reference_end(b: &[u8], start: usize) -> Result<usize, usize> {
        let mut state = SkipState {
            stack: Vec::new(),
            in_string: false,
            escape: false,
        };
        match state.walk(b, start, b.len()) {
            Ok(Some(end)) => Ok(end),
            Ok(None) => Err(b.len()),
            Err((at, _)) => Err(at),
        }
    }

    #[test]
    fn block_skipper_agrees_with_the_byte_walker() {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let real = serde_json::to_vec(&pod_list(filler_pods(2))).unwrap();
        let pieces: [&[u8]; 12] = [
            b"{",
            b"}",
            b"[",
            b"]",
            b"\"",
            b"\\",
            b"\\\"",
            b"a",
            b"  ",
            b",",
            b"x\\\\y",
            b"{\"k\":[1,{\"v\":\"}]\\\"[\"}]}",
        ];
        for round in 0..4000 {
            let doc: Vec<u8> = if round % 2 == 0 {
                // Random soup, opened with a bracket.
                let mut d = vec![b'{'];
                for _ in 0..(next() % 300) {
                    d.extend_from_slice(pieces[(next() as usize) % pieces.len()]);
                }
                d
            } else {
                // A real document with a few bytes changed, started at a random bracket.
                let mut d = real.clone();
                for _ in 0..(next() % 4) {
                    let at = (next() as usize) % d.len();
                    let swaps = b"{}[]\"\\ a";
                    d[at] = swaps[(next() as usize) % swaps.len()];
                }
                d
            };
            let starts: Vec<usize> = doc
                .iter()
                .enumerate()
                .filter(|(_, c)| matches!(c, b'{' | b'['))
                .map(|(i, _)| i)
                .take(5)
                .collect();
            for start in starts {
                let fast = container_end(&doc, start).map_err(|(at, _)| at);
                let slow = reference_end(&doc, start);
                assert_eq!(
                    fast.is_ok(),
                    slow.is_ok(),
                    "start {start} in {}",
                    String::from_utf8_lossy(&doc)
                );
                if fast.is_ok() {
                    assert_eq!(
                        fast,
                        slow,
                        "start {start} in {}",
                        String::from_utf8_lossy(&doc)
                    );
                }
            }
        }
    }

    #[test]
    fn broken_documents_are_errors() {
        let w = wanted("a", "p", None);
        for doc in [
            &b""[..],
            b"{",
            b"[]",
            b"{\"kind\":\"PodList\",\"items\":[{{{ <html>",
            b"{\"items\":[{\"metadata\":{\"name\":\"p\",\"namespace\":\"a\"},\"spec\":{\"x\":[}}]}",
            b"{\"items\":[{\"metadata\":{\"name\":\"p\",\"namespace\":\"a\"},\"spec\":{\"x\":\"unterminated}]}",
            b"{\"items\":[]} trailing",
            b"{\"items\":[{\"metadata\":{\"name\":5}}]}",
            b"{\"items\":[{\"metadata\":{\"name\":\"p\",\"name\":\"q\",\"namespace\":\"a\"}}]}",
            b"{\"items\":[{\"metadata\":{\"name\":\"p\",\"namespace\":\"a\"},\"spec\":{\"securityContext\":{\"fsGroup\":1.5}}}]}",
            b"{\"items\":[{\"metadata\":{\"name\":\"p\",\"namespace\":\"a\"},\"spec\":{\"securityContext\":{\"supplementalGroups\":\"1\"}}}]}",
            b"{\"items\":[{\"metadata\":{\"name\":\"p\",\"namespace\":\"a\"},\"spec\":{\"securityContext\":{\"fsGroup\":99999999999999999999}}}]}",
            b"{\"items\":[{\"metadata\":{\"name\":\"p\",\"namespace\":\"a\"},\"status\":nul}]}",
            b"{\"items\":[1,2]}",
        ] {
            assert!(
                scan_pod_list(doc, &w).is_err(),
                "{}",
                String::from_utf8_lossy(doc)
            );
        }
        let deep = format!("{{\"items\":[{{\"x\":{}}}]}}", "[".repeat(5000));
        assert!(scan_pod_list(deep.as_bytes(), &w).is_err());
    }
}
