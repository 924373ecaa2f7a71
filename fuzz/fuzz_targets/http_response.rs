//! The kubelet's and API server's HTTP/1.1 response, as the sources read it after TLS: ureq 3
//! (ureq-proto's framing: status line, headers, 1xx, Content-Length, chunked, close-delimited)
//! with the runtime's own agent configuration (`https::agent_config`: header size limit, no
//! redirects) and body reader (`https::read_body`: bounded as bytes arrive).
//!
//! The server's bytes are replayed by an in-memory transport in place of TLS over TCP. The
//! first input byte seeds how the bytes arrive (TLS records and TCP segments cut a response
//! anywhere); the rest is what the server sent. Properties, for any bytes and any cutting:
//! nothing panics, nothing is allocated beyond the body's limit plus buffers (libFuzzer's
//! -malloc_limit_mb), and the answer does not depend on how the bytes were cut.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strict_supplementalgroups::podgroups::https::{agent_config, read_body};
use ureq::unversioned::resolver::DefaultResolver;
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, LazyBuffers, NextTimeout, Transport,
};

/// Hands out the server's bytes in pieces whose sizes follow a small xorshift sequence.
#[derive(Debug)]
struct Replay {
    data: Vec<u8>,
    at: usize,
    state: u32,
    buffers: LazyBuffers,
}

impl Transport for Replay {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(
        &mut self,
        _amount: usize,
        _timeout: NextTimeout,
    ) -> Result<(), ureq::Error> {
        Ok(())
    }

    fn await_input(&mut self, _timeout: NextTimeout) -> Result<bool, ureq::Error> {
        // State 0: everything at once, as far as the buffer goes.
        let piece = if self.state == 0 {
            usize::MAX
        } else {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 17;
            self.state ^= self.state << 5;
            1 + (self.state as usize % 97)
        };
        let input = self.buffers.input_append_buf();
        let rest = &self.data[self.at..];
        let n = piece.min(input.len()).min(rest.len());
        input[..n].copy_from_slice(&rest[..n]);
        self.at += n;
        self.buffers.input_appended(n);
        Ok(n > 0)
    }

    fn is_open(&mut self) -> bool {
        self.at < self.data.len()
    }

    fn is_tls(&self) -> bool {
        // It stands in for the TLS stream: the runtime's agent is https-only.
        true
    }
}

#[derive(Debug)]
struct ReplayConnector {
    data: Vec<u8>,
    seed: u32,
}

impl<In: Transport> Connector<In> for ReplayConnector {
    type Out = Replay;

    fn connect(
        &self,
        details: &ConnectionDetails,
        _chained: Option<In>,
    ) -> Result<Option<Replay>, ureq::Error> {
        let config = details.config;
        Ok(Some(Replay {
            data: self.data.clone(),
            at: 0,
            state: self.seed,
            buffers: LazyBuffers::new(config.input_buffer_size(), config.output_buffer_size()),
        }))
    }
}

/// (status, body) or the error's text, for a server that sent `response` cut by `seed`.
fn fetch(response: &[u8], seed: u32) -> Result<(u16, Vec<u8>), String> {
    let agent = ureq::Agent::with_parts(
        agent_config(),
        ReplayConnector {
            data: response.to_vec(),
            seed,
        },
        DefaultResolver::default(),
    );
    let mut reply = agent
        .get("https://127.0.0.1:10250/pods")
        .call()
        .map_err(|e| e.to_string())?;
    let status = reply.status().as_u16();
    let body = read_body(&mut reply).map_err(|e| e.to_string())?;
    Ok((status, body.to_vec()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, response)) = data.split_first() else {
        return;
    };
    // One piece size that always fits, and one that cuts anywhere.
    let whole = fetch(response, 0);
    let cut = fetch(response, u32::from(seed) | 0x100);
    match (&whole, &cut) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "the answer depends on how the bytes arrived"),
        (Err(_), Err(_)) => {}
        _ => panic!("whole {whole:?} but cut {cut:?}"),
    }
});
