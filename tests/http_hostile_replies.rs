//! HTTP replies that must be errors with bounded memory, never a panic, an abort or a huge
//! allocation (issue 11 §4): the kubelet and the API server are authenticated, but a broken
//! proxy, a bug or a compromised node component must not take the runtime down with them.
//!
//! This binary counts the bytes it has allocated (a wrapper around the system allocator), so
//! that "bounded memory" is measured, not assumed. No root needed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

mod common;

use common::kubelet::{ApiServer, Node, alice};
use strict_supplementalgroups::pod::{LookupError, PodGroupsSource};
use strict_supplementalgroups::podgroups::kubelet::KubeletSource;
use test_support::certs::KubeconfigStyle;
use test_support::kubelet::Behaviour;

/// The system allocator, with the largest amount of live heap seen since the last reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let grown = new_size - layout.size();
                let live = LIVE.fetch_add(grown, Ordering::Relaxed) + grown;
                PEAK.fetch_max(live, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One test at a time: the peak is process-wide.
static SERIAL: Mutex<()> = Mutex::new(());

/// A node whose kubelet answers every request with `reply`; lookups get 4 s and no retry.
fn setup(reply: &[u8]) -> Node {
    let mut node = Node::start(
        Behaviour::Raw(reply.to_vec()),
        ApiServer::Elsewhere,
        KubeconfigStyle::InlineData,
    );
    node.config.lookup_deadline = Duration::from_secs(4);
    node.config.retries = 0;
    node
}

/// Looks alice up against a stand-in that answers `reply`; returns the error text and the
/// peak of live heap during the lookup beyond what was live before it.
fn lookup_against(reply: &[u8]) -> (String, usize) {
    let s = setup(reply);
    let source = KubeletSource::new(s.config.clone());
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let result = source.lookup(&alice());
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(before);
    let err = match result {
        Err(e @ LookupError::Source { .. }) => format!("{e:#}"),
        other => panic!("expected a source error, got {other:?}"),
    };
    assert_eq!(s.kubelet.requests(), 1);
    (err, peak)
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn a_chunk_size_that_overflows_is_an_error() {
    let _serial = lock();
    for size in ["ffffffffffffffff", "fffffffffffffffff0", "7fffffffffffffff"] {
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
             \r\n4\r\n{{\"ki\r\n{size}\r\nnd\":\"PodList\"\r\n0\r\n\r\n"
        );
        let (err, peak) = lookup_against(reply.as_bytes());
        assert!(err.contains(&kubelet_url_prefix()), "{size}: {err}");
        assert!(peak < 16 << 20, "{size}: {peak} bytes allocated");
    }
}

#[test]
fn a_huge_content_length_is_not_allocated_up_front() {
    let _serial = lock();
    let reply = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                  Content-Length: 536870912\r\n\r\n{\"kind\":\"PodList\",\"items\":[";
    let (err, peak) = lookup_against(reply);
    assert!(err.contains(&kubelet_url_prefix()), "{err}");
    assert!(peak < 16 << 20, "{peak} bytes allocated for a 28-byte body");
}

#[test]
fn a_body_beyond_the_limit_is_refused_while_it_streams() {
    let _serial = lock();
    // Chunks that add up past any sane PodList; the client stops reading at its limit.
    let mut reply =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    let chunk = vec![b' '; 1 << 20];
    for _ in 0..4 {
        reply.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        reply.extend_from_slice(&chunk);
        reply.extend_from_slice(b"\r\n");
    }
    reply.extend_from_slice(b"0\r\n\r\n");
    // 4 MiB of blanks is not a PodList: an error either way, and never more than a few
    // copies of the body.
    let (err, peak) = lookup_against(&reply);
    assert!(err.contains(&kubelet_url_prefix()), "{err}");
    assert!(peak < 48 << 20, "{peak} bytes allocated");
}

fn kubelet_url_prefix() -> String {
    "https://127.0.0.1:".to_owned()
}
