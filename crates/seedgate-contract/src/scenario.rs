//! Sandbox scenarios: an outcome a test key asks the sandbox to play out, through the
//! `Seedgate-Sandbox-Scenario` request header, so a client can exercise the failure paths of
//! real tasks (content review, expiry, a storm of 429s, a slow queue, a result that cannot be
//! had, a cancel that comes too late) without an upstream. Live keys' requests ignore it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ErrorCode};

/// The request header that names a scenario.
pub const SCENARIO_HEADER: &str = "seedgate-sandbox-scenario";

/// One scenario with its parameter, as the header names it: `name` or `name; key=value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum SandboxScenario {
    /// Content review refuses the request's input: the task fails uncharged with the
    /// upstream's `Input…SensitiveContentDetected` code.
    InputModeration,
    /// The video is made, then content review refuses it: fails uncharged with
    /// `OutputVideoSensitiveContentDetected`.
    OutputModeration,
    /// The task never starts and expires `after` seconds after it was created, uncharged.
    Expire {
        /// Seconds (`after=`), 1–3,600; 10 by default.
        after_seconds: u32,
    },
    /// The first `count` submissions meet the upstream's 429; each is retried after a pause,
    /// then the video is made and charged once.
    RateLimited {
        /// Submissions refused (`count=`), 1–4 (the engine tries 5 times by default); 3 by
        /// default.
        count: u32,
    },
    /// The task waits `wait` seconds in the queue (pending, cancellable) before it starts.
    SlowQueue {
        /// Seconds (`wait=`), 1–3,600; 30 by default.
        wait_seconds: u32,
    },
    /// The video is made but cannot be had: fails uncharged with `result_unavailable`.
    ResultUnavailable,
    /// The task starts at once and is generated for `wait` seconds, so a cancel sent after it
    /// was created finds it started: `task_not_cancellable`, and it is charged.
    CancelRace {
        /// Seconds (`wait=`), 1–600; 10 by default.
        wait_seconds: u32,
    },
}

/// A scenario's parameter: its key, lowest and highest value, and default.
type Parameter = (&'static str, u32, u32, u32);

/// Each scenario's name, and its parameter, in the header's words.
const SCENARIOS: [(&str, Option<Parameter>); 7] = [
    ("input_moderation", None),
    ("output_moderation", None),
    ("expire", Some(("after", 1, 3_600, 10))),
    ("rate_limited", Some(("count", 1, 4, 3))),
    ("slow_queue", Some(("wait", 1, 3_600, 30))),
    ("result_unavailable", None),
    ("cancel_race", Some(("wait", 1, 600, 10))),
];

fn invalid(message: String) -> ApiError {
    let names: Vec<&str> = SCENARIOS.iter().map(|(name, _)| *name).collect();
    ApiError::new(ErrorCode::InvalidSandboxScenario, message)
        .with_param(SCENARIO_HEADER)
        .with_extra("allowed_scenarios", names.into())
}

impl SandboxScenario {
    /// Reads the header's value: a scenario's name, optionally `; key=value`.
    pub fn parse(header: &str) -> Result<Self, ApiError> {
        let (name, parameter) = match header.split_once(';') {
            Some((name, parameter)) => (name.trim(), Some(parameter.trim())),
            None => (header.trim(), None),
        };
        let Some((name, spec)) = SCENARIOS.iter().find(|(known, _)| *known == name) else {
            return Err(invalid(format!(
                "`{name}` is not a sandbox scenario; use one of {}.",
                SCENARIOS.map(|(name, _)| name).join(", ")
            )));
        };
        let value = match (spec, parameter) {
            (None, None) => 0,
            (None, Some(parameter)) => {
                return Err(invalid(format!(
                    "The scenario `{name}` takes no parameter (got `{parameter}`)."
                )))
            }
            (Some((_, _, _, default)), None) => *default,
            (Some((key, min, max, _)), Some(parameter)) => {
                let value = parameter
                    .strip_prefix(key)
                    .and_then(|rest| rest.trim_start().strip_prefix('='))
                    .and_then(|value| value.trim().parse::<u32>().ok())
                    .filter(|value| (*min..=*max).contains(value));
                value.ok_or_else(|| {
                    invalid(format!(
                        "The scenario `{name}` takes `{key}=` a whole number from {min} to {max} (got `{parameter}`)."
                    ))
                })?
            }
        };
        Ok(match *name {
            "input_moderation" => Self::InputModeration,
            "output_moderation" => Self::OutputModeration,
            "expire" => Self::Expire {
                after_seconds: value,
            },
            "rate_limited" => Self::RateLimited { count: value },
            "slow_queue" => Self::SlowQueue {
                wait_seconds: value,
            },
            "result_unavailable" => Self::ResultUnavailable,
            _ => Self::CancelRace {
                wait_seconds: value,
            },
        })
    }

    /// How long after its creation the task may first be started, in milliseconds: a slow
    /// queue's wait, or past an expiring task's deadline.
    pub fn start_delay_ms(self) -> Option<i64> {
        match self {
            Self::SlowQueue { wait_seconds } => Some(i64::from(wait_seconds) * 1000),
            Self::Expire { after_seconds } => Some(i64::from(after_seconds) * 1000 + 1),
            _ => None,
        }
    }

    /// The deadline a scenario sets, in milliseconds after creation.
    pub fn deadline_ms(self) -> Option<i64> {
        match self {
            Self::Expire { after_seconds } => Some(i64::from(after_seconds) * 1000),
            _ => None,
        }
    }
}

impl fmt::Display for SandboxScenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, parameter) = match *self {
            Self::InputModeration => ("input_moderation", None),
            Self::OutputModeration => ("output_moderation", None),
            Self::Expire { after_seconds } => ("expire", Some(("after", after_seconds))),
            Self::RateLimited { count } => ("rate_limited", Some(("count", count))),
            Self::SlowQueue { wait_seconds } => ("slow_queue", Some(("wait", wait_seconds))),
            Self::ResultUnavailable => ("result_unavailable", None),
            Self::CancelRace { wait_seconds } => ("cancel_race", Some(("wait", wait_seconds))),
        };
        match parameter {
            Some((key, value)) => write!(f, "{name}; {key}={value}"),
            None => f.write_str(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_reads_back_from_its_own_spelling() {
        for (name, spec) in SCENARIOS {
            let scenario = SandboxScenario::parse(name).unwrap();
            assert_eq!(SandboxScenario::parse(&scenario.to_string()), Ok(scenario));
            if let Some((key, min, max, _)) = spec {
                for value in [min, max] {
                    let sent = format!("{name};{key} = {value}");
                    let parsed = SandboxScenario::parse(&sent).unwrap();
                    assert_eq!(parsed.to_string(), format!("{name}; {key}={value}"));
                }
            }
        }
        assert_eq!(
            SandboxScenario::parse("slow_queue"),
            Ok(SandboxScenario::SlowQueue { wait_seconds: 30 })
        );
    }

    #[test]
    fn a_wrong_name_or_parameter_is_refused_naming_the_header() {
        for header in [
            "",
            "moderation",
            "slow_queue; wait=0",
            "slow_queue; wait=3601",
            "slow_queue; count=3",
            "rate_limited; count=x",
            "input_moderation; after=3",
        ] {
            let e = SandboxScenario::parse(header).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidSandboxScenario, "{header}");
            assert_eq!(e.param.as_deref(), Some(SCENARIO_HEADER));
        }
    }

    #[test]
    fn only_waiting_scenarios_hold_the_start_back() {
        let expire = SandboxScenario::Expire { after_seconds: 5 };
        assert_eq!(expire.deadline_ms(), Some(5_000));
        assert!(expire.start_delay_ms() > expire.deadline_ms());
        let slow = SandboxScenario::SlowQueue { wait_seconds: 2 };
        assert_eq!(
            (slow.start_delay_ms(), slow.deadline_ms()),
            (Some(2_000), None)
        );
        assert_eq!(SandboxScenario::InputModeration.start_delay_ms(), None);
    }
}
