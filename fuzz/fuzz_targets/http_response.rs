//! The kubelet's and API server's HTTP/1.1 response, as the client reads it after TLS: head
//! (httparse), 1xx interim responses, and a body framed by Content-Length, chunked encoding or
//! the end of the connection.
//!
//! Written against today's reader (`podgroups::https`, through `read_response_for_fuzzing`);
//! the reader is being replaced by a maintained client, and this target must be re-pointed at
//! whatever reads the response then.
//!
//! The first input byte seeds how the bytes arrive (TLS records and TCP segments cut a response
//! anywhere); the rest is what the server sent. Properties, for any bytes and any cutting:
//! nothing panics, no allocation beyond the body's size plus buffers, and the answer does not
//! depend on how the bytes were cut.

#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use strict_supplementalgroups::podgroups::https::read_response_for_fuzzing;

/// Hands out `data` in pieces whose sizes follow a small xorshift sequence from `seed`.
struct Trickle<'a> {
    data: &'a [u8],
    state: u32,
}

impl Read for Trickle<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 17;
        self.state ^= self.state << 5;
        let piece = 1 + (self.state as usize % 97);
        let n = piece.min(out.len()).min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, response)) = data.split_first() else {
        return;
    };
    let whole = read_response_for_fuzzing(&mut std::io::Cursor::new(response));
    let cut = read_response_for_fuzzing(&mut Trickle {
        data: response,
        state: u32::from(seed) | 0x100,
    });
    match (&whole, &cut) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "the answer depends on how the bytes arrived"),
        (Err(_), Err(_)) => {}
        _ => panic!("whole {whole:?} but cut {cut:?}"),
    }
});
