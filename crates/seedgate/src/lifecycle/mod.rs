//! The task lifecycle as a decision table: given a task, what a worker just found out about it
//! (an [`Event`]), the time and the [`Policy`], [`decide`] says what happens next. No I/O, no
//! SQL, no clock of its own: the engine gathers the event, asks, and either does the work the
//! decision names (and reports what it found as the next event) or has the store apply the
//! [`Move`] it ends with.

mod moves;
mod policy;
mod states;
pub mod upstream;

use seedgate_contract::{pricing, VideoJob};

use crate::ids::ChannelId;
pub use moves::{Move, PollSeen, ScheduledPoll, Settlement, TaskFailure, UpstreamSubmission};
pub use policy::{expiry_for, upstream_expiry_seconds, Policy};
pub use states::{
    public_status, PublicStatus, TaskRecord, TaskState, Transition, Unpaid, UpstreamPhase,
    IN_FLIGHT, OPEN,
};
use upstream::{
    seed_is_ours, ProviderError, ProviderErrorKind, UpstreamRef, UpstreamStatus, VendorUsage,
};

/// What the public task object shows under `result` (plus signed URLs added at read time).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredResult {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub duration: f64,
    pub has_audio: bool,
    /// The file's container, as its `ftyp` brand says; left out when MP4, so results stored
    /// before it read the same.
    #[serde(
        default,
        skip_serializing_if = "seedgate_contract::OutputFormat::is_mp4"
    )]
    pub container: seedgate_contract::OutputFormat,
}

/// A finished video whose files are stored here: what its task shows, and the usage charged.
#[derive(Clone, Debug, PartialEq)]
pub struct Kept {
    pub result: StoredResult,
    pub usage_tokens: u64,
}

/// Why a finished video could not be kept here, which names the task's failure when the
/// tries run out: the upstream's files could not be had, or our own result store refused them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepFailure {
    Copy,
    Store,
}

impl KeepFailure {
    fn failure(self, upstream_usage_tokens: Option<i64>) -> Move {
        let (code, message) = match self {
            Self::Copy => (
                "result_unavailable",
                "The upstream finished the task but its video could not be retrieved; nothing was charged.",
            ),
            Self::Store => (
                "result_store_failed",
                "The video was generated but this server could not store it (its result storage refused the write, for example because its disk is full); nothing was charged.",
            ),
        };
        Move::EndUnpaid {
            ending: Unpaid::Failed,
            code: code.into(),
            message: message.into(),
            upstream_usage_tokens,
        }
    }
}

/// Who does a task's work: rendered here, or sent to an upstream and polled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runner {
    Local,
    Upstream,
}

/// When a decision is made, and a draw (0 to 1) that spreads retries of many tasks apart.
#[derive(Clone, Copy, Debug)]
pub struct Moment {
    pub now_ms: i64,
    pub jitter: f64,
}

/// The task a decision is about: its row, its request (with materials resolved once they
/// are) and who runs it.
pub struct Subject<'a> {
    pub task: &'a TaskRecord,
    pub job: &'a VideoJob,
    pub runner: Runner,
}

/// The checks a task's inputs pass before it is sent, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Its `asset://` materials are read from the store.
    Materials,
    /// Its media are fetched and checked as an upstream would (upstreams only: a local
    /// renderer checks what it renders from itself).
    Media,
    /// For an extension of one of our tasks, that task's video is read.
    SourceVideo,
}

/// Why a check did not pass.
#[derive(Clone, Copy, Debug)]
pub enum InputTrouble<'a> {
    /// The input is refused: the task fails with this code.
    Refused { code: &'a str, message: &'a str },
    /// The input could not be read now (our own storage): tried again later.
    Unavailable,
}

/// What a submission came back with, as far as the lifecycle cares.
#[derive(Clone, Copy, Debug)]
pub enum Sent<'a> {
    /// A local renderer finished the video; its files are to be stored.
    Rendered,
    /// An upstream took the task.
    Accepted(&'a UpstreamRef),
}

/// Where a finished video being stored came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Rendered here.
    Rendered,
    /// Copied from an upstream, which reported this usage.
    Copied { usage: VendorUsage },
}

/// What a worker found out about a task it holds.
#[derive(Clone, Copy, Debug)]
pub enum Event<'a> {
    /// It leased the task (queued, or left by a worker whose lease ran out).
    Claimed,
    InputsChecked(Check, Result<(), InputTrouble<'a>>),
    /// It looked upstream for the task a lost submission (to `channel`, begun at `since`)
    /// may have made: the candidates that belong to no other task of ours.
    CandidatesListed {
        channel: &'a ChannelId,
        since: i64,
        orphans: Result<&'a [UpstreamRef], &'a ProviderError>,
    },
    /// It submitted the task at `sent_at_ms`, asking the upstream to give up after
    /// `expires_after_s`.
    Submitted {
        sent_at_ms: i64,
        expires_after_s: i64,
        outcome: Result<Sent<'a>, &'a ProviderError>,
    },
    Polled(Result<&'a UpstreamStatus, &'a ProviderError>),
    Stored {
        origin: Origin,
        outcome: Result<&'a Kept, KeepFailure>,
    },
}

/// What happens next: work for the engine (whose result is the next event), or a move that
/// ends this turn with the task.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Apply(Move),
    /// Ask the upstream for the task's status.
    Poll,
    CheckInputs(Check),
    /// Look upstream for the task a lost submission may have made.
    Reconcile {
        channel: ChannelId,
        since: i64,
    },
    /// Make this upstream task the task's own (recording it), withdrawing duplicates first.
    Adopt {
        record: Move,
        withdraw: Vec<UpstreamRef>,
    },
    /// Send the task to its provider; a local render is marked started first.
    Submit {
        start: bool,
        sent_at_ms: i64,
        expires_after_s: i64,
    },
    /// Store the files a local renderer made.
    KeepRendered,
    /// Copy an upstream's finished result into our storage.
    CopyResult {
        video_url: String,
        last_frame_url: Option<String>,
        usage: VendorUsage,
    },
}

const BOTH_SIDES_LATE: &str = "Neither side finished the task before its deadline.";

/// The decision table.
pub fn decide(subject: &Subject, event: Event, at: Moment, policy: &Policy) -> Decision {
    let Subject { task, job, runner } = *subject;
    let retry = |retry_after| policy.retry_delay_ms(task.attempts, retry_after, at.jitter);
    match event {
        Event::Claimed => match (&task.channel, &task.upstream_id) {
            (Some(_), Some(_)) if policy.upstream_expired(task, at.now_ms) => {
                Decision::Apply(Move::expire(BOTH_SIDES_LATE))
            }
            (Some(_), Some(_)) => Decision::Poll,
            _ => Decision::CheckInputs(Check::Materials),
        },
        Event::InputsChecked(_, Err(InputTrouble::Refused { code, message })) => {
            Decision::Apply(Move::fail(code, message))
        }
        Event::InputsChecked(check, Err(InputTrouble::Unavailable)) => {
            Decision::Apply(Move::Requeue {
                delay_ms: retry(None),
                counts_attempt: true,
                doubt: None,
                cause: format!("{check:?} could not be read"),
            })
        }
        Event::InputsChecked(Check::Materials, Ok(())) => match doubt_of(task, runner) {
            Some((channel, since)) => {
                let expires_at = since + expiry_for(task, job, since) * 1000;
                if policy.may_expire(at.now_ms, task.deadline_at_ms, Some(expires_at)) {
                    Decision::Apply(Move::expire(BOTH_SIDES_LATE))
                } else {
                    Decision::Reconcile { channel, since }
                }
            }
            None => fresh_submission(subject, at, policy),
        },
        Event::InputsChecked(Check::Media, Ok(())) => Decision::CheckInputs(Check::SourceVideo),
        Event::InputsChecked(Check::SourceVideo, Ok(())) => Decision::Submit {
            start: false,
            sent_at_ms: at.now_ms,
            expires_after_s: expiry_for(task, job, at.now_ms),
        },
        // The vendor cannot be searched: resubmitting could make (and bill) a second task.
        Event::CandidatesListed {
            orphans: Err(e), ..
        } if e.kind == ProviderErrorKind::Permanent => {
            Decision::Apply(Move::fail(&e.code, &e.message))
        }
        Event::CandidatesListed {
            channel,
            since,
            orphans: Err(e),
        } => Decision::Apply(Move::Requeue {
            delay_ms: retry(e.retry_after),
            counts_attempt: false,
            doubt: Some((channel.clone(), since)),
            cause: format!("cannot look upstream for a lost submission yet: {}", e.code),
        }),
        Event::CandidatesListed {
            since,
            orphans: Ok(orphans),
            ..
        } => {
            let adopt = |chosen: &UpstreamRef, withdraw: &[UpstreamRef]| Decision::Adopt {
                record: Move::RecordSubmission {
                    channel: chosen.channel.clone(),
                    upstream_id: chosen.upstream_id.clone(),
                    vendor: chosen.vendor.clone(),
                    next_poll_at_ms: at.now_ms,
                    upstream_expires_at_ms: since + expiry_for(task, job, since) * 1000,
                },
                withdraw: withdraw.to_vec(),
            };
            match orphans {
                [] => fresh_submission(subject, at, policy),
                [only] => adopt(only, &[]),
                // A seed of ours marks every match as this task's own: one is kept.
                [first, extra @ ..] if seed_is_ours(job) => adopt(first, extra),
                _ => Decision::Apply(Move::fail(
                    "submission_unresolved",
                    "The upstream's answer to this task's submission was lost, and its task could not be told apart from others; nothing was charged.",
                )),
            }
        }
        Event::Submitted {
            outcome: Ok(Sent::Rendered),
            ..
        } => Decision::KeepRendered,
        Event::Submitted {
            sent_at_ms,
            expires_after_s,
            outcome: Ok(Sent::Accepted(upstream)),
        } => Decision::Apply(Move::RecordSubmission {
            channel: upstream.channel.clone(),
            upstream_id: upstream.upstream_id.clone(),
            vendor: upstream.vendor.clone(),
            next_poll_at_ms: at.now_ms + policy.first_poll_ms,
            upstream_expires_at_ms: sent_at_ms + expires_after_s * 1000,
        }),
        Event::Submitted {
            sent_at_ms,
            outcome: Err(e),
            ..
        } => {
            let delay_ms = retry(e.retry_after);
            let requeue = |delay_ms, counts_attempt, doubt, cause: &str| {
                Decision::Apply(Move::Requeue {
                    delay_ms,
                    counts_attempt,
                    doubt,
                    cause: format!("{cause}: {}", e.code),
                })
            };
            match &e.kind {
                ProviderErrorKind::InDoubt { channel } => requeue(
                    delay_ms.max(policy.reconcile_delay_ms),
                    true,
                    Some((
                        channel.clone(),
                        task.submit_started_at_ms.unwrap_or(sent_at_ms),
                    )),
                    "submission outcome unknown; reconciling before any resubmission",
                ),
                // Waiting for a free or recovering channel is not a failed attempt.
                ProviderErrorKind::AwaitingCapacity => {
                    requeue(delay_ms, false, None, "waiting for a channel")
                }
                ProviderErrorKind::Retryable if task.attempts < policy.max_attempts => {
                    requeue(delay_ms, true, None, "submission will be retried")
                }
                _ => Decision::Apply(Move::fail(&e.code, &e.message)),
            }
        }
        Event::Polled(outcome) => after_poll(subject, outcome, at, policy),
        Event::Stored {
            origin,
            outcome: Ok(kept),
        } => settle(subject, kept, origin, policy),
        // The engine kept the render and tried to store it until the deadline came: it is
        // not rendered again for a store that is down, and the ending says storage.
        Event::Stored {
            origin: Origin::Rendered,
            ..
        } => Decision::Apply(KeepFailure::Store.failure(None)),
        // Our own store refused the copy: the upstream's result is still there, so it is
        // copied again, without counting against the copy's tries, for as long as the task's
        // time allows; then the ending says storage.
        Event::Stored {
            origin: Origin::Copied { usage },
            outcome: Err(KeepFailure::Store),
        } => {
            let usage_tokens = usage.tokens.map(|t| t as i64);
            if policy.may_expire(at.now_ms, task.deadline_at_ms, task.upstream_expires_at_ms) {
                Decision::Apply(KeepFailure::Store.failure(usage_tokens))
            } else {
                Decision::Apply(Move::SchedulePoll {
                    at_ms: at.now_ms + policy.store_retry_delay_ms(),
                    seen: PollSeen {
                        phase: Some(UpstreamPhase::Succeeded),
                        usage_tokens,
                        result_copy_failed: false,
                    },
                })
            }
        }
        Event::Stored {
            origin: Origin::Copied { usage },
            outcome: Err(kind),
        } => {
            // The upstream's files could not be had: a few tries over minutes (a file can appear
            // late), then the task fails uncharged; the upstream's id and usage stay on it for
            // the operator.
            let failures = task.result_copy_failures + 1;
            let upstream_usage_tokens = usage.tokens.map(|t| t as i64);
            if failures >= policy.result_copy_attempts {
                Decision::Apply(kind.failure(upstream_usage_tokens))
            } else {
                Decision::Apply(Move::SchedulePoll {
                    at_ms: at.now_ms + policy.result_copy_delay_ms(failures),
                    seen: PollSeen {
                        phase: Some(UpstreamPhase::Succeeded),
                        usage_tokens: upstream_usage_tokens,
                        result_copy_failed: true,
                    },
                })
            }
        }
    }
}

/// The checks after any lost submission is settled: still in time, attempts left, then on to
/// the provider.
fn fresh_submission(subject: &Subject, at: Moment, policy: &Policy) -> Decision {
    let task = subject.task;
    if policy.may_expire(at.now_ms, task.deadline_at_ms, None) {
        return Decision::Apply(Move::expire("The task did not start before its deadline."));
    }
    if task.attempts > policy.max_attempts {
        return Decision::Apply(Move::fail(
            "too_many_attempts",
            "The task could not be started after repeated attempts.",
        ));
    }
    match subject.runner {
        Runner::Local => Decision::Submit {
            start: true,
            sent_at_ms: at.now_ms,
            expires_after_s: expiry_for(task, subject.job, at.now_ms),
        },
        Runner::Upstream => Decision::CheckInputs(Check::Media),
    }
}

/// The submission of this task whose answer was lost, if any: one that failed in doubt, or
/// one a dead worker had sent (it held a channel place) when its lease ran out.
fn doubt_of(task: &TaskRecord, runner: Runner) -> Option<(ChannelId, i64)> {
    if runner == Runner::Local {
        return None;
    }
    task.doubt.clone().or_else(|| {
        let channel = task.channel.clone().filter(|_| task.reclaimed)?;
        Some((
            channel,
            task.submit_started_at_ms.unwrap_or(task.created_at_ms),
        ))
    })
}

/// The phase of a task the upstream is still working on; None once it has ended.
pub fn under_way(status: &UpstreamStatus) -> Option<UpstreamPhase> {
    match status {
        UpstreamStatus::Queued => Some(UpstreamPhase::Queued),
        UpstreamStatus::Running => Some(UpstreamPhase::Running),
        _ => None,
    }
}

fn after_poll(
    subject: &Subject,
    outcome: Result<&UpstreamStatus, &ProviderError>,
    at: Moment,
    policy: &Policy,
) -> Decision {
    let Subject { task, job, .. } = *subject;
    let unpaid = |ending, code: &str, message: &str| {
        Decision::Apply(Move::EndUnpaid {
            ending,
            code: code.into(),
            message: message.into(),
            upstream_usage_tokens: None,
        })
    };
    match outcome {
        Ok(status @ (UpstreamStatus::Queued | UpstreamStatus::Running)) => {
            Decision::Apply(Move::SchedulePoll {
                at_ms: at.now_ms + policy.next_poll_delay_ms(task, job, at.now_ms),
                seen: PollSeen {
                    phase: under_way(status),
                    ..PollSeen::default()
                },
            })
        }
        Ok(UpstreamStatus::Succeeded {
            video_url,
            last_frame_url,
            usage,
        }) => Decision::CopyResult {
            video_url: video_url.clone(),
            last_frame_url: last_frame_url.clone(),
            usage: *usage,
        },
        Ok(UpstreamStatus::Failed { code, message }) => Decision::Apply(Move::fail(code, message)),
        Ok(UpstreamStatus::Cancelled) => unpaid(
            Unpaid::Cancelled,
            "cancelled",
            "The upstream cancelled the task.",
        ),
        Ok(UpstreamStatus::Expired) => unpaid(
            Unpaid::Expired,
            "task_expired",
            "The upstream let the task expire.",
        ),
        Err(e) if e.retryable() => Decision::Apply(Move::SchedulePoll {
            at_ms: at.now_ms + policy.poll_retry_delay_ms(task, job, e.retry_after, at.now_ms),
            seen: PollSeen::default(),
        }),
        Err(e) => Decision::Apply(Move::fail(&e.code, &e.message)),
    }
}

/// A polled task's next poll when one batch answer settles it, or None when it needs a worker
/// of its own: its upstream ended it, its status is unknown (left out of the answer), or it is
/// past the upstream's expiry.
pub fn triage(
    subject: &Subject,
    status: Option<&Result<UpstreamStatus, ProviderError>>,
    at: Moment,
    policy: &Policy,
) -> Option<ScheduledPoll> {
    let Subject { task, job, .. } = *subject;
    if policy.upstream_expired(task, at.now_ms) {
        return None;
    }
    let (delay_ms, phase) = match status? {
        Ok(status) => {
            let seen = under_way(status)?;
            let changed = (task.upstream_phase != Some(seen)).then_some(seen);
            (policy.next_poll_delay_ms(task, job, at.now_ms), changed)
        }
        Err(e) if e.retryable() => (
            policy.poll_retry_delay_ms(task, job, e.retry_after, at.now_ms),
            None,
        ),
        Err(_) => return None,
    };
    Some(ScheduledPoll {
        id: task.id.clone(),
        next_poll_at_ms: at.now_ms + delay_ms,
        phase,
    })
}

/// Charges the real cost of a kept video.
fn settle(subject: &Subject, kept: &Kept, origin: Origin, policy: &Policy) -> Decision {
    let job = subject.job;
    let cost = match pricing::price_tokens(
        &policy.catalog,
        &job.model,
        job.resolution,
        job.has_video_input(),
        kept.usage_tokens,
    ) {
        Ok(cost) => cost,
        Err(e) => return Decision::Apply(Move::fail("pricing_unavailable", e.message)),
    };
    let result_json = match serde_json::to_string(&kept.result) {
        Ok(json) => json,
        Err(e) => return Decision::Apply(Move::fail("internal_error", e.to_string())),
    };
    let upstream = match origin {
        Origin::Rendered => VendorUsage::default(),
        Origin::Copied { usage } => usage,
    };
    Decision::Apply(Move::Succeed {
        result_json,
        usage_tokens: kept.usage_tokens as i64,
        cost_usd_micros: cost.usd_micros,
        cost_cny: cost.cny_string(),
        upstream,
    })
}

#[cfg(test)]
mod tests;
