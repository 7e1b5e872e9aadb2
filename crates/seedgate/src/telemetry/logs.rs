//! Which log lines are written: `RUST_LOG`'s filter, or `info,sqlx=warn`.

use std::str::FromStr;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// A filter of targets and levels alone, the usual kind, is kept as [`Targets`]. Only one that
/// names spans or fields is an [`EnvFilter`]: to follow those, it takes a lock every thread
/// shares each time any span is entered, left or closed, which every request's span is,
/// several times a request.
#[derive(Debug)]
pub enum LogFilter {
    Levels(Box<Targets>),
    Scoped(Box<EnvFilter>),
}

impl LogFilter {
    /// The filter `directives` (`RUST_LOG`'s syntax) describe; the default when they are
    /// missing, empty or invalid.
    pub fn new(directives: Option<&str>) -> Self {
        if let Some(directives) = directives.filter(|d| !d.trim().is_empty()) {
            // Span and field filters are bracketed (`target[span{field=value}]=level`);
            // `Targets` would read a span's name as part of the target's.
            if !directives.contains('[') {
                if let Ok(targets) = Targets::from_str(directives) {
                    return Self::Levels(Box::new(targets));
                }
            }
            if let Ok(filter) = EnvFilter::try_new(directives) {
                return Self::Scoped(Box::new(filter));
            }
        }
        Self::Levels(Box::new(
            Targets::new()
                .with_default(LevelFilter::INFO)
                .with_target("sqlx", LevelFilter::WARN),
        ))
    }

    pub fn layer(self) -> Box<dyn Layer<Registry> + Send + Sync> {
        match self {
            Self::Levels(targets) => targets,
            Self::Scoped(filter) => filter,
        }
    }
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::*;

    #[test]
    fn the_default_logs_info_and_sqlx_warnings() {
        for missing in [None, Some(""), Some("  "), Some("seedgate=[")] {
            let LogFilter::Levels(targets) = LogFilter::new(missing) else {
                panic!("{missing:?} gave a scoped filter");
            };
            assert!(targets.would_enable("seedgate::engine", &Level::INFO));
            assert!(!targets.would_enable("seedgate::engine", &Level::DEBUG));
            assert!(!targets.would_enable("sqlx::query", &Level::INFO));
            assert!(targets.would_enable("sqlx::query", &Level::WARN));
        }
    }

    #[test]
    fn levels_by_target_need_no_span_tracking() {
        let LogFilter::Levels(targets) = LogFilter::new(Some("warn,seedgate::engine=debug")) else {
            panic!("a filter of levels became a scoped one");
        };
        assert!(targets.would_enable("seedgate::engine::claims", &Level::DEBUG));
        assert!(!targets.would_enable("seedgate::api", &Level::INFO));
    }

    #[test]
    fn a_filter_naming_spans_or_fields_is_kept_whole() {
        for scoped in [
            "seedgate[http]=debug",
            "info,seedgate[http{method=POST}]=trace",
        ] {
            assert!(
                matches!(LogFilter::new(Some(scoped)), LogFilter::Scoped(_)),
                "{scoped}"
            );
        }
    }
}
