//! The scenario table the harness prints, and its verdict.

use std::time::{Duration, Instant};

pub struct Row {
    pub suite: &'static str,
    pub name: String,
    pub expected: String,
    pub got: String,
    pub pass: bool,
    pub elapsed: Duration,
}

#[derive(Default)]
pub struct Report {
    pub rows: Vec<Row>,
    /// Tables printed before the scenario table (the Strict comparison, latency).
    pub sections: Vec<String>,
}

impl Report {
    pub fn add(
        &mut self,
        suite: &'static str,
        name: &str,
        expected: impl Into<String>,
        got: impl Into<String>,
        pass: bool,
        since: Instant,
    ) {
        let row = Row {
            suite,
            name: name.to_owned(),
            expected: expected.into(),
            got: got.into(),
            pass,
            elapsed: since.elapsed(),
        };
        eprintln!(
            "[{}] {} / {} ({:.1}s){}",
            if row.pass { "PASS" } else { "FAIL" },
            row.suite,
            row.name,
            row.elapsed.as_secs_f64(),
            if row.pass {
                String::new()
            } else {
                format!(
                    "\n    expected: {}\n    got:      {}",
                    row.expected, row.got
                )
            }
        );
        self.rows.push(row);
    }

    /// A step that could not even be attempted (setup failed): recorded as a failure.
    pub fn fail(&mut self, suite: &'static str, name: &str, err: &anyhow::Error, since: Instant) {
        self.add(
            suite,
            name,
            "setup succeeds",
            format!("{err:#}"),
            false,
            since,
        );
    }

    pub fn failed(&self) -> usize {
        self.rows.iter().filter(|r| !r.pass).count()
    }

    /// Prints the table and the closing `e2e: N passed, N failed` line.
    pub fn print(&self, total: Duration) {
        for section in &self.sections {
            print!("{section}");
        }
        let w_suite = self
            .rows
            .iter()
            .map(|r| r.suite.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let w_name = self
            .rows
            .iter()
            .map(|r| r.name.len())
            .max()
            .unwrap_or(8)
            .max(8);
        println!();
        println!(
            "{:<6} {:<w_suite$} {:<w_name$} {:>6}  expected / got",
            "result", "suite", "scenario", "time"
        );
        for r in &self.rows {
            println!(
                "{:<6} {:<w_suite$} {:<w_name$} {:>5.1}s  expected: {}",
                if r.pass { "PASS" } else { "FAIL" },
                r.suite,
                r.name,
                r.elapsed.as_secs_f64(),
                one_line(&r.expected)
            );
            println!(
                "{:<6} {:<w_suite$} {:<w_name$} {:>6}  got:      {}",
                "",
                "",
                "",
                "",
                one_line(&r.got)
            );
        }
        let failed = self.failed();
        println!();
        println!("total {:.1}s", total.as_secs_f64());
        println!(
            "e2e: {} passed, {} failed",
            self.rows.len() - failed,
            failed
        );
    }
}

/// `"<call>: … <text from marker on>"`: drops the wrapping the CRI adds in front of the
/// runtime's own message, keeping the call name.
pub fn focus(text: &str, marker: &str) -> String {
    match (text.split_once(": "), text.find(marker)) {
        (Some((call, _)), Some(at)) if at > call.len() + 2 => {
            format!("{call}: … {}", &text[at..])
        }
        _ => text.to_owned(),
    }
}

fn one_line(s: &str) -> String {
    let s = s.replace('\n', " ⏎ ");
    if s.chars().count() > 400 {
        let cut: String = s.chars().take(400).collect();
        format!("{cut}…")
    } else {
        s
    }
}
