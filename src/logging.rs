//! runc-compatible logging.
//!
//! containerd's runc shim and conmon read the `--log` file after a failed call and report the last
//! line whose `level` is exactly `"error"`, taking the text from `msg`. That is logrus' JSON shape,
//! which runc writes: `{"level":"error","msg":"…","time":"RFC3339"}`. youki's tracing-subscriber
//! JSON (`{"level":"ERROR","message":…}`) is invisible to those readers, so the format is ours.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context as LayerContext, Layer};
use tracing_subscriber::prelude::*;

/// Log line layout, as runc's `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => bail!("unknown log format {other:?}: expected \"text\" or \"json\""),
        }
    }
}

/// Parses a level name the way runc and logrus spell them.
pub fn parse_level(s: &str) -> Result<Level> {
    match s.to_ascii_lowercase().as_str() {
        "trace" => Ok(Level::TRACE),
        "debug" => Ok(Level::DEBUG),
        "info" => Ok(Level::INFO),
        "warn" | "warning" => Ok(Level::WARN),
        "error" | "fatal" | "panic" => Ok(Level::ERROR),
        other => bail!("unknown log level {other:?}: expected trace, debug, info, warn or error"),
    }
}

const OUR_CRATE: &str = env!("CARGO_CRATE_NAME");

/// Where log lines go and how much of them.
pub struct SinkSpec {
    pub path: Option<PathBuf>,
    pub format: LogFormat,
    /// Level for this crate's own events (decisions, errors).
    pub level: Level,
    /// Level for events of libcontainer and other dependencies; they are chatty at info.
    pub dependency_level: Level,
}

enum Target {
    Stderr,
    File(File),
}

struct Sink {
    target: Mutex<Target>,
    format: LogFormat,
    level: LevelFilter,
    dependency_level: LevelFilter,
}

impl Sink {
    fn open(spec: &SinkSpec) -> Result<Self> {
        let target = match &spec.path {
            None => Target::Stderr,
            Some(path) => Target::File(open_log_file(path)?),
        };
        Ok(Self {
            target: Mutex::new(target),
            format: spec.format,
            level: LevelFilter::from_level(spec.level),
            dependency_level: LevelFilter::from_level(spec.dependency_level),
        })
    }

    fn wants(&self, meta: &Metadata<'_>) -> bool {
        let limit = if meta.target().starts_with(OUR_CRATE) {
            self.level
        } else {
            self.dependency_level
        };
        *meta.level() <= limit
    }

    fn is_stderr(&self) -> bool {
        self.target
            .lock()
            .map(|t| matches!(*t, Target::Stderr))
            .unwrap_or(false)
    }

    fn write_line(&self, line: &str) {
        // One write per line so that lines from the container's init process (which shares the
        // file) and from us never interleave inside a line.
        if let Ok(mut target) = self.target.lock() {
            let _ = match &mut *target {
                Target::Stderr => std::io::stderr().write_all(line.as_bytes()),
                Target::File(f) => f.write_all(line.as_bytes()),
            };
        }
    }
}

/// Opens a log file for appending. Log lines name pods, containers and their groups: a file
/// (and any directory) this creates is private to root and its group — 0640 and 0750 — while
/// an existing file or directory keeps the mode an operator gave it.
fn open_log_file(path: &Path) -> Result<File> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .with_context(|| format!("creating log directory {}", dir.display()))?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
        .with_context(|| format!("opening log file {}", path.display()))
}

/// The tracing layer that formats events as runc does and fans them out to every sink.
struct RuncLayer {
    sinks: Arc<Mutex<Vec<Sink>>>,
    /// Most verbose level any sink wants, as `LevelFilter` ordinal; cheap pre-check.
    max_verbosity: Arc<AtomicUsize>,
}

fn verbosity(level: LevelFilter) -> usize {
    match level.into_level() {
        None => 0,
        Some(Level::ERROR) => 1,
        Some(Level::WARN) => 2,
        Some(Level::INFO) => 3,
        Some(Level::DEBUG) => 4,
        Some(Level::TRACE) => 5,
    }
}

fn level_verbosity(level: &Level) -> usize {
    verbosity(LevelFilter::from_level(*level))
}

impl<S: Subscriber> Layer<S> for RuncLayer {
    fn enabled(&self, meta: &Metadata<'_>, _ctx: LayerContext<'_, S>) -> bool {
        if level_verbosity(meta.level()) > self.max_verbosity.load(Ordering::Relaxed) {
            return false;
        }
        self.sinks
            .lock()
            .map(|sinks| sinks.iter().any(|s| s.wants(meta)))
            .unwrap_or(false)
    }

    fn on_event(&self, event: &Event<'_>, _ctx: LayerContext<'_, S>) {
        let meta = event.metadata();
        let mut fields = FieldCollector::default();
        event.record(&mut fields);
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let mut json_line: Option<String> = None;
        let mut text_line: Option<String> = None;
        let Ok(sinks) = self.sinks.lock() else {
            return;
        };
        for sink in sinks.iter().filter(|s| s.wants(meta)) {
            let line = match sink.format {
                LogFormat::Json => {
                    json_line.get_or_insert_with(|| format_json(meta.level(), &fields, &time))
                }
                LogFormat::Text => {
                    text_line.get_or_insert_with(|| format_text(meta.level(), &fields, &time))
                }
            };
            sink.write_line(line);
        }
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// logrus JSON: `level`, `msg`, then structured fields, then `time`.
fn format_json(level: &Level, fields: &FieldCollector, time: &str) -> String {
    let mut map = serde_json::Map::new();
    map.insert("level".into(), level_name(level).into());
    map.insert("msg".into(), fields.message.clone().into());
    for (key, value) in &fields.extra {
        // Never let a structured field shadow the keys readers rely on.
        if !matches!(key.as_str(), "level" | "msg" | "time") {
            map.insert(key.clone(), value.clone());
        }
    }
    map.insert("time".into(), time.into());
    let mut line = serde_json::Value::Object(map).to_string();
    line.push('\n');
    line
}

/// logrus text: `time="…" level=error msg="…" key=value`.
fn format_text(level: &Level, fields: &FieldCollector, time: &str) -> String {
    let mut line = format!(
        "time={:?} level={} msg={}",
        time,
        level_name(level),
        serde_json::Value::from(fields.message.as_str())
    );
    for (key, value) in &fields.extra {
        let _ = write!(line, " {key}={value}");
    }
    line.push('\n');
    line
}

#[derive(Default)]
struct FieldCollector {
    message: String,
    extra: Vec<(String, serde_json::Value)>,
}

impl Visit for FieldCollector {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.extra.push((field.name().to_owned(), value.into()));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.extra.push((field.name().to_owned(), value.into()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.extra.push((field.name().to_owned(), value.into()));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.extra.push((field.name().to_owned(), value.into()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.extra.push((field.name().to_owned(), text.into()));
        }
    }
}

/// Lets commands add a sink after start-up (the config file's own log file is known only once
/// the config is loaded, after the command line's `--log` is already in use).
#[derive(Clone)]
pub struct LogHandle {
    sinks: Arc<Mutex<Vec<Sink>>>,
    max_verbosity: Arc<AtomicUsize>,
}

impl LogHandle {
    pub fn add_sink(&self, spec: &SinkSpec) -> Result<()> {
        let sink = Sink::open(spec)?;
        let wanted = verbosity(sink.level).max(verbosity(sink.dependency_level));
        self.max_verbosity.fetch_max(wanted, Ordering::Relaxed);
        self.sinks
            .lock()
            .map_err(|_| anyhow::anyhow!("log sinks poisoned"))?
            .push(sink);
        // Callsites cache whether they are enabled; the new sink may want more of them.
        tracing::callsite::rebuild_interest_cache();
        Ok(())
    }

    /// True when the primary sink already is stderr, so a caller need not echo errors there.
    pub fn primary_is_stderr(&self) -> bool {
        self.sinks
            .lock()
            .ok()
            .and_then(|s| s.first().map(Sink::is_stderr))
            .unwrap_or(true)
    }
}

/// Installs the global subscriber with one primary sink (runc's `--log`, or stderr).
pub fn init(primary: &SinkSpec) -> Result<LogHandle> {
    let sink = Sink::open(primary)?;
    let max = verbosity(sink.level).max(verbosity(sink.dependency_level));
    let handle = LogHandle {
        sinks: Arc::new(Mutex::new(vec![sink])),
        max_verbosity: Arc::new(AtomicUsize::new(max)),
    };
    let layer = RuncLayer {
        sinks: handle.sinks.clone(),
        max_verbosity: handle.max_verbosity.clone(),
    };
    tracing_subscriber::registry()
        .with(layer)
        .try_init()
        .context("installing the log subscriber")?;
    Ok(handle)
}

/// Starts logging as runc's global flags ask: `--log` (a file; `/dev/stderr` means stderr, as in
/// runc), `--log-format`, `--debug`, `--log-level`.
pub fn init_for_cli(opts: &crate::cli::Opts) -> Result<LogHandle> {
    let format = match opts.global.log_format.as_deref() {
        None => LogFormat::Text,
        Some(f) => f.parse().context("--log-format")?,
    };
    // runc treats `--log /dev/stderr` (conmon's default) as stderr.
    let path = opts
        .global
        .log
        .clone()
        .filter(|p| p.as_os_str() != "/dev/stderr");
    // Decisions are logged at info: kept in a log file, but not printed on a terminal.
    let level = match (&opts.compat.log_level, opts.global.debug) {
        (Some(level), _) => parse_level(level).context("--log-level")?,
        (None, true) => tracing::Level::DEBUG,
        (None, false) if path.is_some() => tracing::Level::INFO,
        (None, false) => tracing::Level::WARN,
    };
    // libcontainer and libcgroups warn on every call on cgroup v1 hosts (missing optional
    // controllers); their errors always come through, the rest with --debug.
    let dependency_level = if opts.global.debug || opts.compat.log_level.is_some() {
        level
    } else {
        tracing::Level::ERROR
    };
    init(&SinkSpec {
        path,
        format,
        level,
        dependency_level,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collector(msg: &str, extra: &[(&str, serde_json::Value)]) -> FieldCollector {
        FieldCollector {
            message: msg.to_owned(),
            extra: extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        }
    }

    #[test]
    fn json_line_has_runc_shape() {
        let line = format_json(
            &Level::ERROR,
            &collector("pod \"a/b\" not found", &[("pod", "a/b".into())]),
            "2026-11-27T03:46:51.000000001Z",
        );
        assert!(line.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "pod \"a/b\" not found");
        assert_eq!(v["pod"], "a/b");
        assert_eq!(v["time"], "2026-11-27T03:46:51.000000001Z");
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["level", "msg", "pod", "time"]);
    }

    #[test]
    fn fields_cannot_shadow_reserved_keys() {
        let line = format_json(
            &Level::ERROR,
            &collector("real", &[("msg", "fake".into()), ("level", "info".into())]),
            "t",
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["msg"], "real");
        assert_eq!(v["level"], "error");
    }

    #[test]
    fn text_line_quotes_message() {
        let line = format_text(&Level::WARN, &collector("a \"b\"", &[("n", 3.into())]), "t");
        assert_eq!(line, "time=\"t\" level=warning msg=\"a \\\"b\\\"\" n=3\n");
    }

    #[test]
    fn level_and_format_parsing() {
        assert_eq!(parse_level("Warning").unwrap(), Level::WARN);
        assert!(parse_level("loud").is_err());
        assert_eq!("json".parse::<LogFormat>().unwrap(), LogFormat::Json);
        assert!("xml".parse::<LogFormat>().is_err());
    }
}
