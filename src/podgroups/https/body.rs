//! Where a response body is kept. Small bodies (a pod, a claim, an error) go to a `Vec`. A
//! large one — a node's `/pods`, 0.5 MiB at 110 pods, 4.6 MiB at 1,000 — goes to an anonymous
//! mapping advised for transparent huge pages: the runtime is a fresh process for every lookup,
//! so every 4 KiB of the body it writes is a page fault, and on this VM touching 4.8 MB of
//! fresh memory takes 1.6–1.8 ms in 4 KiB pages against 0.26 ms in huge pages (measured with a
//! page-touch loop; `tests/http_sources.rs`' `explain_lookup_latency_of_binaries` shows the
//! effect on whole lookups). Where the kernel gives no huge pages (`transparent_hugepage` set to
//! `never`, or the advice refused) the mapping simply keeps 4 KiB pages.
//!
//! The mapping reserves the size limit as address space only (`MAP_NORESERVE`); only the pages
//! the body fills are ever allocated.

use std::io::{self, Read};
use std::ops::Deref;

use memmap2::{Advice, MmapMut, MmapOptions};

/// Bodies up to this size stay in a `Vec` (a huge page would be mostly empty).
const SMALL: usize = 256 * 1024;

/// A complete response body.
pub enum Body {
    Small(Vec<u8>),
    Large { map: MmapMut, len: usize },
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Body({} bytes)", self.len())
    }
}

impl Deref for Body {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Body::Small(v) => v,
            Body::Large { map, len } => &map[..*len],
        }
    }
}

impl Body {
    /// Reads `reader` to its end. More than `limit` bytes is an error of kind `FileTooLarge`
    /// (checked as the bytes arrive; nothing is sized from what the server announces).
    pub fn read_all(mut reader: impl Read, limit: usize) -> io::Result<Body> {
        let mut small = Vec::new();
        (&mut reader)
            .take(u64::try_from(SMALL.min(limit)).unwrap_or(u64::MAX))
            .read_to_end(&mut small)?;
        if small.len() < SMALL.min(limit) {
            return Ok(Body::Small(small));
        }
        // One byte more tells whether there is more at all.
        let mut probe = [0u8; 1];
        if read_some(&mut reader, &mut probe)? == 0 {
            return Ok(Body::Small(small));
        }
        if small.len() >= limit {
            return Err(too_large(limit));
        }
        let map = MmapOptions::new().len(limit).no_reserve_swap().map_anon()?;
        // Advice only: without it the body is the same, in 4 KiB pages.
        let _ = map.advise(Advice::HugePage);
        let mut body = Body::Large { map, len: 0 };
        if let Body::Large { map, len } = &mut body {
            map[..small.len()].copy_from_slice(&small);
            map[small.len()] = probe[0];
            *len = small.len() + 1;
            drop(small);
            loop {
                if *len == limit {
                    if read_some(&mut reader, &mut probe)? == 0 {
                        break;
                    }
                    return Err(too_large(limit));
                }
                let n = read_some(&mut reader, &mut map[*len..])?;
                if n == 0 {
                    break;
                }
                *len += n;
            }
        }
        Ok(body)
    }
}

fn read_some(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

fn too_large(limit: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!("the body is larger than {limit} bytes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out at most 7000 bytes per read, like a socket.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(buf.len()).min(7000);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn every_size_reads_back_whole() {
        for size in [0, 1, SMALL - 1, SMALL, SMALL + 1, 3 * SMALL + 17, 5_000_000] {
            let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let body = Body::read_all(Trickle(&data), 8 << 20).unwrap();
            assert_eq!(&body[..], &data[..], "{size}");
            assert_eq!(matches!(body, Body::Small(_)), size <= SMALL, "{size}");
        }
    }

    #[test]
    fn more_than_the_limit_is_an_error() {
        for (size, limit) in [(11, 10), (SMALL + 1, SMALL), (SMALL * 2 + 1, SMALL * 2)] {
            let data = vec![b'x'; size];
            let err = Body::read_all(Trickle(&data), limit).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::FileTooLarge, "{size}");
        }
        for (size, limit) in [(10, 10), (SMALL, SMALL), (SMALL * 2, SMALL * 2)] {
            let data = vec![b'x'; size];
            assert_eq!(Body::read_all(Trickle(&data), limit).unwrap().len(), size);
        }
    }
}
