//! The matrix map: for each (key, value) of the key table, how the case is
//! run and checked. One entry per value, written out: a value the table
//! gains needs its own line here (the test names it otherwise). Most values
//! are set in the file; some by a flag or an environment variable, so all
//! three ways are exercised.
mod daemon;
mod logsinks;
mod loki;

use crate::harness::{Cx, Via};

pub struct Entry {
    pub key: &'static str,
    pub value: &'static str,
    /// Needs a slow receiver (VictoriaLogs, journald): scheduled first.
    pub slow: bool,
    /// Runs the case; returns what it saw. A panic is a failure.
    pub run: Box<dyn Fn(&Cx) -> String + Send + Sync>,
}

impl Entry {
    pub fn name(&self) -> String {
        format!("{}={}", self.key, self.value)
    }
}

fn e(key: &'static str, value: &'static str, run: impl Fn(&Cx) -> String + Send + Sync + 'static) -> Entry {
    Entry { key, value, slow: false, run: Box::new(run) }
}

fn slow(key: &'static str, value: &'static str, run: impl Fn(&Cx) -> String + Send + Sync + 'static) -> Entry {
    Entry { key, value, slow: true, run: Box::new(run) }
}

pub fn entries() -> Vec<Entry> {
    use Via::{Env, File, Flag};
    let mut out = vec![
        e("log.level", "debug", |cx| daemon::log_level(cx, Flag, "debug")),
        e("log.level", "info", |cx| daemon::log_level(cx, File, "info")),
        e("log.level", "warn", |cx| daemon::log_level(cx, Env, "warn")),
        e("log.level", "error", |cx| daemon::log_level(cx, File, "error")),
        e("log.format", "text", |cx| daemon::log_format(cx, Flag, "text")),
        e("log.format", "json", |cx| daemon::log_format(cx, File, "json")),
        e("source.kind", "auto", |cx| daemon::source_kind(cx, File, "auto")),
        e("source.kind", "ebpf", |cx| daemon::source_kind(cx, Flag, "ebpf")),
        e("source.kind", "netlink", |cx| daemon::source_kind(cx, Env, "netlink")),
        e("source.set_sysctls", "true", |cx| daemon::set_sysctls(cx, Env, true)),
        e("source.set_sysctls", "false", |cx| daemon::set_sysctls(cx, File, false)),
        e("source.kernel_prefilter", "true", |cx| daemon::kernel_prefilter(cx, File, true)),
        e("source.kernel_prefilter", "false", |cx| daemon::kernel_prefilter(cx, Flag, false)),
        e("source.reliable", "true", |cx| daemon::reliable(cx, Env, "true")),
        e("source.reliable", "false", |cx| daemon::reliable(cx, File, "false")),
        e("sink.stream.enable", "true", |cx| daemon::stream_enable(cx, File, true)),
        e("sink.stream.enable", "false", |cx| daemon::stream_enable(cx, Flag, false)),
        e("sink.stream.writer", "stdout", |cx| daemon::stream_writer(cx, File, "stdout")),
        e("sink.stream.writer", "stderr", |cx| daemon::stream_writer(cx, Env, "stderr")),
        e("sink.stream.writer", "discard", |cx| daemon::stream_writer(cx, Flag, "discard")),
        e("sink.stream.optional", "true", |cx| daemon::stream_optional(cx, File, "true")),
        e("sink.stream.optional", "false", |cx| daemon::stream_optional(cx, Env, "false")),
        slow("sink.journal.enable", "true", |cx| logsinks::journal_enable(cx, File, true)),
        e("sink.journal.enable", "false", |cx| logsinks::journal_enable(cx, Env, false)),
        e("sink.journal.optional", "true", |cx| logsinks::journal_optional(cx, Flag, true)),
        e("sink.journal.optional", "false", |cx| logsinks::journal_optional(cx, File, false)),
        e("sink.syslog.enable", "true", |cx| logsinks::syslog_enable(cx, Flag, true)),
        e("sink.syslog.enable", "false", |cx| logsinks::syslog_enable(cx, File, false)),
        e("sink.syslog.address", "udp", |cx| logsinks::syslog_address(cx, File, "udp")),
        e("sink.syslog.address", "tcp", |cx| logsinks::syslog_address(cx, Env, "tcp")),
        e("sink.syslog.address", "unix", |cx| logsinks::syslog_address(cx, Flag, "unix")),
        e("sink.syslog.address", "unixgram", |cx| logsinks::syslog_address(cx, File, "unixgram")),
        e("sink.syslog.format", "rfc5424", |cx| logsinks::syslog_format(cx, File, "rfc5424")),
        e("sink.syslog.format", "rfc3164", |cx| logsinks::syslog_format(cx, Flag, "rfc3164")),
        e("sink.syslog.optional", "true", |cx| logsinks::syslog_optional(cx, File, true)),
        e("sink.syslog.optional", "false", |cx| logsinks::syslog_optional(cx, Env, false)),
        slow("sink.loki.enable", "true", |cx| loki::enable(cx, File, true)),
        e("sink.loki.enable", "false", |cx| loki::enable(cx, Flag, false)),
        slow("sink.loki.address", "http", |cx| loki::address(cx, File, "http")),
        slow("sink.loki.address", "https", |cx| loki::address(cx, Env, "https")),
        slow("sink.loki.tls.insecure_skip_verify", "true", |cx| loki::insecure_skip_verify(cx, File, true)),
        e("sink.loki.tls.insecure_skip_verify", "false", |cx| loki::insecure_skip_verify(cx, Flag, false)),
        slow("sink.loki.per_flow_labels", "true", |cx| loki::per_flow_labels(cx, Env, true)),
        slow("sink.loki.per_flow_labels", "false", |cx| loki::per_flow_labels(cx, File, false)),
        slow("sink.loki.line_format", "text", |cx| loki::line_format(cx, File, "text")),
        slow("sink.loki.line_format", "json", |cx| loki::line_format(cx, Env, "json")),
        slow("sink.loki.encoding", "protobuf", |cx| loki::encoding(cx, File, "protobuf")),
        slow("sink.loki.encoding", "json", |cx| loki::encoding(cx, Flag, "json")),
        e("sink.loki.optional", "true", |cx| loki::optional(cx, Env, true)),
        e("sink.loki.optional", "false", |cx| loki::optional(cx, File, false)),
    ];
    // Each facility with its RFC 5424 code: rsyslog must name it and the PRI must carry it.
    let facilities: [(&'static str, u8, Via); 20] = [
        ("kern", 0, File),
        ("user", 1, File),
        ("mail", 2, File),
        ("daemon", 3, File),
        ("auth", 4, File),
        ("syslog", 5, File),
        ("lpr", 6, File),
        ("news", 7, File),
        ("uucp", 8, File),
        ("cron", 9, File),
        ("authpriv", 10, File),
        ("ftp", 11, File),
        ("local0", 16, File),
        ("local1", 17, File),
        ("local2", 18, File),
        ("local3", 19, Env),
        ("local4", 20, File),
        ("local5", 21, Flag),
        ("local6", 22, File),
        ("local7", 23, File),
    ];
    for (name, code, via) in facilities {
        out.push(e("sink.syslog.facility", name, move |cx| logsinks::syslog_facility(cx, via, name, code)));
    }
    out
}
