//! The decision table, row by row: each (state, event) the lifecycle handles, decided at a
//! fixed moment with no jitter, so every delay is exact.

use std::sync::Arc;
use std::time::Duration;

use seedgate_contract::{parse_create_request, pricing, Catalog, CreateRequest, VideoJob};

use super::upstream::{ProviderError, ProviderErrorKind, UpstreamRef, UpstreamStatus};
use super::*;
use crate::config::EngineConfig;
use crate::ids::{AccountId, TaskId};

const NOW: i64 = 1_800_000_000_000;
/// The defaults' figures, named where a row depends on them.
const FIRST_POLL: i64 = 5_000;
const MAX_ATTEMPTS: i64 = 5;

fn policy() -> Policy {
    Policy::new(&EngineConfig::default(), Arc::new(Catalog::builtin()))
}

fn job_with(extra: &str) -> VideoJob {
    let body = format!(
        r#"{{"model":"seedance-2.0","operation":"text-to-video","prompt":"a kite","resolution":"720p","duration":5{extra}}}"#
    );
    match parse_create_request(&Catalog::builtin(), body.as_bytes()).unwrap() {
        CreateRequest::Job(job) => *job,
        other => panic!("{other:?}"),
    }
}

fn job() -> VideoJob {
    job_with("")
}

/// A task a worker has just claimed: submitting, created a minute ago, six hours to go.
fn claimed() -> TaskRecord {
    TaskRecord {
        id: TaskId::new("task_01"),
        account_id: AccountId::new("key_01"),
        model: "seedance-2.0".into(),
        operation: "text-to-video".into(),
        provider: "ark".into(),
        state: TaskState::Submitting,
        request_json: "{}".into(),
        reserved_usd_micros: 1_000_000,
        estimated_tokens: 100_000,
        usage_tokens: None,
        cost_usd_micros: None,
        cost_cny: None,
        result_json: None,
        error_code: None,
        error_message: None,
        attempts: 1,
        channel: None,
        upstream_id: None,
        polls: 0,
        deadline_at_ms: Some(NOW + 6 * 3_600_000),
        submit_started_at_ms: None,
        doubt: None,
        upstream_phase: None,
        upstream_expires_at_ms: None,
        upstream_usage_tokens: None,
        upstream_compute_ms: None,
        upstream_cost_usd_micros: None,
        result_copy_failures: 0,
        files_swept_at_ms: None,
        reclaimed: false,
        created_at_ms: NOW - 60_000,
        updated_at_ms: NOW - 60_000,
        completed_at_ms: None,
        request_id: None,
    }
}

/// A task an upstream took ten seconds ago, expiring there in two days.
fn running() -> TaskRecord {
    TaskRecord {
        state: TaskState::Running,
        channel: Some(ChannelId::new("ark-1")),
        upstream_id: Some("cgt-1".into()),
        submit_started_at_ms: Some(NOW - 10_000),
        upstream_expires_at_ms: Some(NOW + 172_800_000),
        upstream_phase: Some(UpstreamPhase::Running),
        ..claimed()
    }
}

fn at() -> Moment {
    Moment {
        now_ms: NOW,
        jitter: 0.0,
    }
}

fn decide_for(task: &TaskRecord, job: &VideoJob, runner: Runner, event: Event) -> Decision {
    let subject = Subject { task, job, runner };
    decide(&subject, event, at(), &policy())
}

fn upstream(task: &TaskRecord, event: Event) -> Decision {
    decide_for(task, &job(), Runner::Upstream, event)
}

fn failed(code: &str) -> impl Fn(&Decision) -> bool + '_ {
    move |decision| matches!(decision, Decision::Apply(Move::EndUnpaid { ending: Unpaid::Failed, code: c, .. }) if c == code)
}

fn expired_with(message: &str) -> Decision {
    Decision::Apply(Move::expire(message))
}

fn requeue(
    delay_ms: i64,
    counts_attempt: bool,
    doubt: Option<(&str, i64)>,
) -> impl Fn(&Decision) -> bool {
    let doubt = doubt.map(|(channel, since)| (ChannelId::new(channel), since));
    move |decision| {
        matches!(decision, Decision::Apply(Move::Requeue { delay_ms: d, counts_attempt: c, doubt: w, .. })
            if *d == delay_ms && *c == counts_attempt && *w == doubt)
    }
}

fn error(kind: ProviderErrorKind) -> ProviderError {
    ProviderError::new(kind, "upstream_error", "it broke")
}

fn upstream_ref(id: &str) -> UpstreamRef {
    UpstreamRef {
        channel: ChannelId::new("ark-1"),
        upstream_id: id.into(),
        vendor: "ark".into(),
    }
}

// Claimed.

#[test]
fn a_claimed_task_not_yet_sent_checks_its_materials_first() {
    assert_eq!(
        upstream(&claimed(), Event::Claimed),
        Decision::CheckInputs(Check::Materials)
    );
    let local = decide_for(&claimed(), &job(), Runner::Local, Event::Claimed);
    assert_eq!(local, Decision::CheckInputs(Check::Materials));
}

#[test]
fn a_claimed_task_with_an_upstream_task_is_polled_until_the_upstream_gives_up() {
    assert_eq!(upstream(&running(), Event::Claimed), Decision::Poll);
    // Past our deadline the upstream may still finish (and bill) it: polled.
    let late = TaskRecord {
        deadline_at_ms: Some(NOW - 1),
        ..running()
    };
    assert_eq!(upstream(&late, Event::Claimed), Decision::Poll);
    // Past the upstream's own expiry and its ten-minute grace: ended here.
    let gone = TaskRecord {
        upstream_expires_at_ms: Some(NOW - 600_001),
        ..late
    };
    assert_eq!(
        upstream(&gone, Event::Claimed),
        expired_with(BOTH_SIDES_LATE)
    );
}

// Inputs checked.

#[test]
fn checked_materials_lead_to_the_media_check_upstream_and_straight_to_a_local_render() {
    let event = Event::InputsChecked(Check::Materials, Ok(()));
    assert_eq!(
        upstream(&claimed(), event),
        Decision::CheckInputs(Check::Media)
    );
    assert_eq!(
        decide_for(&claimed(), &job(), Runner::Local, event),
        Decision::Submit {
            start: true,
            sent_at_ms: NOW,
            expires_after_s: 6 * 3_600,
        }
    );
}

#[test]
fn checked_media_then_source_lead_to_a_submission_expiring_with_our_deadline() {
    assert_eq!(
        upstream(&claimed(), Event::InputsChecked(Check::Media, Ok(()))),
        Decision::CheckInputs(Check::SourceVideo)
    );
    assert_eq!(
        upstream(&claimed(), Event::InputsChecked(Check::SourceVideo, Ok(()))),
        Decision::Submit {
            start: false,
            sent_at_ms: NOW,
            expires_after_s: 6 * 3_600,
        }
    );
    // The client's own shorter expiry wins.
    let job = job_with(r#","execution_expires_after":3600"#);
    let event = Event::InputsChecked(Check::SourceVideo, Ok(()));
    assert_eq!(
        decide_for(&claimed(), &job, Runner::Upstream, event),
        Decision::Submit {
            start: false,
            sent_at_ms: NOW,
            expires_after_s: 3_600,
        }
    );
}

#[test]
fn a_refused_input_fails_the_task_and_an_unreadable_one_is_retried_as_an_attempt() {
    for check in [Check::Materials, Check::Media, Check::SourceVideo] {
        let refused = InputTrouble::Refused {
            code: "invalid_image",
            message: "not an image",
        };
        let decision = upstream(&claimed(), Event::InputsChecked(check, Err(refused)));
        assert!(
            failed("invalid_image")(&decision),
            "{check:?}: {decision:?}"
        );
        let decision = upstream(
            &claimed(),
            Event::InputsChecked(check, Err(InputTrouble::Unavailable)),
        );
        // Attempt 1: 1 s doubled once.
        assert!(
            requeue(2_000, true, None)(&decision),
            "{check:?}: {decision:?}"
        );
    }
}

#[test]
fn a_task_past_its_deadline_or_out_of_attempts_is_not_sent() {
    let event = Event::InputsChecked(Check::Materials, Ok(()));
    let late = TaskRecord {
        deadline_at_ms: Some(NOW - 1),
        ..claimed()
    };
    assert_eq!(
        upstream(&late, event),
        expired_with("The task did not start before its deadline.")
    );
    let spent = TaskRecord {
        attempts: MAX_ATTEMPTS + 1,
        ..claimed()
    };
    assert!(failed("too_many_attempts")(&upstream(&spent, event)));
    let last = TaskRecord {
        attempts: MAX_ATTEMPTS,
        ..claimed()
    };
    assert_eq!(upstream(&last, event), Decision::CheckInputs(Check::Media));
}

#[test]
fn a_lost_submission_is_reconciled_before_anything_is_sent_again() {
    let event = Event::InputsChecked(Check::Materials, Ok(()));
    let in_doubt = TaskRecord {
        doubt: Some((ChannelId::new("ark-1"), NOW - 5_000)),
        ..claimed()
    };
    assert_eq!(
        upstream(&in_doubt, event),
        Decision::Reconcile {
            channel: ChannelId::new("ark-1"),
            since: NOW - 5_000,
        }
    );
    // A dead worker held a channel place: its submission may have been sent.
    let reclaimed = TaskRecord {
        channel: Some(ChannelId::new("ark-2")),
        submit_started_at_ms: Some(NOW - 7_000),
        reclaimed: true,
        ..claimed()
    };
    assert_eq!(
        upstream(&reclaimed, event),
        Decision::Reconcile {
            channel: ChannelId::new("ark-2"),
            since: NOW - 7_000,
        }
    );
    // A local render has no upstream to ask.
    assert_eq!(
        decide_for(&in_doubt, &job(), Runner::Local, event),
        Decision::Submit {
            start: true,
            sent_at_ms: NOW,
            expires_after_s: 6 * 3_600,
        }
    );
    // Past what the lost submission asked of the upstream, and the grace: nothing to wait for.
    let long_lost = TaskRecord {
        doubt: Some((ChannelId::new("ark-1"), NOW - 7 * 3_600_000)),
        deadline_at_ms: Some(NOW - 3_600_000),
        ..claimed()
    };
    assert_eq!(upstream(&long_lost, event), expired_with(BOTH_SIDES_LATE));
}

// Candidates listed.

#[test]
fn a_lookup_that_fails_waits_keeping_the_doubt_and_the_attempt() {
    let mut e = error(ProviderErrorKind::Retryable);
    e.retry_after = Some(Duration::from_secs(7));
    let channel = ChannelId::new("ark-1");
    let event = Event::CandidatesListed {
        channel: &channel,
        since: NOW - 5_000,
        orphans: Err(&e),
    };
    let decision = upstream(&claimed(), event);
    assert!(
        requeue(7_000, false, Some(("ark-1", NOW - 5_000)))(&decision),
        "{decision:?}"
    );
}

#[test]
fn a_lost_submission_that_cannot_be_looked_for_fails_uncharged_and_is_not_sent_again() {
    let mut e = error(ProviderErrorKind::Permanent);
    e.code = "submission_unresolved".into();
    let channel = ChannelId::new("fal-1");
    let event = Event::CandidatesListed {
        channel: &channel,
        since: NOW - 5_000,
        orphans: Err(&e),
    };
    let decision = upstream(&claimed(), event);
    assert!(failed("submission_unresolved")(&decision), "{decision:?}");
}

#[test]
fn a_lookup_adopts_the_one_orphan_and_with_a_seed_of_ours_withdraws_the_rest() {
    let channel = ChannelId::new("ark-1");
    let since = NOW - 5_000;
    let listed = |orphans| Event::CandidatesListed {
        channel: &channel,
        since,
        orphans: Ok(orphans),
    };
    // Nothing there: sent anew.
    assert_eq!(
        upstream(&claimed(), listed(&[])),
        Decision::CheckInputs(Check::Media)
    );
    let one = [upstream_ref("cgt-a")];
    let adopted = upstream(&claimed(), listed(&one));
    let Decision::Adopt {
        record: got,
        withdraw,
    } = &adopted
    else {
        panic!("{adopted:?}");
    };
    assert!(withdraw.is_empty());
    // Polled at once, expiring when the lost submission asked: our deadline as it stood then.
    assert_eq!(
        *got,
        Move::RecordSubmission {
            channel: ChannelId::new("ark-1"),
            upstream_id: "cgt-a".into(),
            vendor: "ark".into(),
            next_poll_at_ms: NOW,
            upstream_expires_at_ms: since + 21_605 * 1000,
        }
    );
    let two = [upstream_ref("cgt-a"), upstream_ref("cgt-b")];
    let Decision::Adopt { record, withdraw } = upstream(&claimed(), listed(&two)) else {
        panic!("a seed of ours marks both as this task's");
    };
    assert!(matches!(record, Move::RecordSubmission { upstream_id, .. } if upstream_id == "cgt-a"));
    assert_eq!(withdraw, vec![upstream_ref("cgt-b")]);
    // The client's own seed: two matches cannot be told apart.
    let theirs = job_with(r#","seed":42"#);
    let decision = decide_for(&claimed(), &theirs, Runner::Upstream, listed(&two));
    assert!(failed("submission_unresolved")(&decision), "{decision:?}");
}

// Submitted.

#[test]
fn an_accepted_submission_is_recorded_with_its_first_poll_and_expiry() {
    let accepted = upstream_ref("cgt-9");
    let event = Event::Submitted {
        sent_at_ms: NOW - 300,
        expires_after_s: 3_600,
        outcome: Ok(Sent::Accepted(&accepted)),
    };
    assert_eq!(
        upstream(&claimed(), event),
        Decision::Apply(Move::RecordSubmission {
            channel: ChannelId::new("ark-1"),
            upstream_id: "cgt-9".into(),
            vendor: "ark".into(),
            next_poll_at_ms: NOW + FIRST_POLL,
            upstream_expires_at_ms: NOW - 300 + 3_600_000,
        })
    );
    let rendered = Event::Submitted {
        sent_at_ms: NOW,
        expires_after_s: 3_600,
        outcome: Ok(Sent::Rendered),
    };
    assert_eq!(
        decide_for(&claimed(), &job(), Runner::Local, rendered),
        Decision::KeepRendered
    );
}

#[test]
fn a_failed_submission_is_retried_waited_reconciled_or_failed_by_its_kind() {
    let sent = |e| Event::Submitted {
        sent_at_ms: NOW - 100,
        expires_after_s: 3_600,
        outcome: Err(e),
    };
    // In doubt: at least the reconcile delay, then looked for upstream before anything else.
    let e = error(ProviderErrorKind::InDoubt {
        channel: ChannelId::new("ark-1"),
    });
    let first = TaskRecord {
        attempts: 0,
        ..claimed()
    };
    assert!(requeue(2_000, true, Some(("ark-1", NOW - 100)))(&upstream(
        &first,
        sent(&e)
    )));
    let started = TaskRecord {
        submit_started_at_ms: Some(NOW - 900),
        attempts: 3,
        ..claimed()
    };
    assert!(requeue(8_000, true, Some(("ark-1", NOW - 900)))(&upstream(
        &started,
        sent(&e)
    )));
    // Waiting for capacity is no attempt.
    let e = error(ProviderErrorKind::AwaitingCapacity);
    assert!(requeue(2_000, false, None)(&upstream(&claimed(), sent(&e))));
    // Retryable while attempts remain, then failed.
    let e = error(ProviderErrorKind::Retryable);
    assert!(requeue(2_000, true, None)(&upstream(&claimed(), sent(&e))));
    let last = TaskRecord {
        attempts: MAX_ATTEMPTS,
        ..claimed()
    };
    assert!(failed("upstream_error")(&upstream(&last, sent(&e))));
    let e = error(ProviderErrorKind::Permanent);
    assert!(failed("upstream_error")(&upstream(&claimed(), sent(&e))));
}

// Polled.

#[test]
fn a_poll_schedules_the_next_one_while_the_upstream_works() {
    for (status, phase) in [
        (UpstreamStatus::Queued, UpstreamPhase::Queued),
        (UpstreamStatus::Running, UpstreamPhase::Running),
    ] {
        // 5 s of 720p is expected to take 60 s; 10 s have passed, and no wait exceeds 30 s.
        assert_eq!(
            upstream(&running(), Event::Polled(Ok(&status))),
            Decision::Apply(Move::SchedulePoll {
                at_ms: NOW + 30_000,
                seen: PollSeen {
                    phase: Some(phase),
                    ..PollSeen::default()
                },
            })
        );
    }
    // A poll that learnt nothing keeps the plan, or the upstream's Retry-After when later.
    let mut e = error(ProviderErrorKind::Retryable);
    e.retry_after = Some(Duration::from_secs(45));
    assert_eq!(
        upstream(&running(), Event::Polled(Err(&e))),
        Decision::Apply(Move::SchedulePoll {
            at_ms: NOW + 45_000,
            seen: PollSeen::default(),
        })
    );
    let e = error(ProviderErrorKind::Permanent);
    assert!(failed("upstream_error")(&upstream(
        &running(),
        Event::Polled(Err(&e))
    )));
}

#[test]
fn a_poll_that_finds_the_task_ended_copies_the_result_or_ends_it_uncharged() {
    let usage = VendorUsage {
        tokens: Some(108_900),
        compute_ms: Some(41_200),
        cost_usd_micros: None,
    };
    let done = UpstreamStatus::Succeeded {
        video_url: "https://cdn/v.mp4".into(),
        last_frame_url: None,
        usage,
    };
    assert_eq!(
        upstream(&running(), Event::Polled(Ok(&done))),
        Decision::CopyResult {
            video_url: "https://cdn/v.mp4".into(),
            last_frame_url: None,
            usage,
        }
    );
    let refused = UpstreamStatus::Failed {
        code: "OutputVideoSensitiveContentDetected".into(),
        message: "no".into(),
    };
    assert!(failed("OutputVideoSensitiveContentDetected")(&upstream(
        &running(),
        Event::Polled(Ok(&refused))
    )));
    for (status, ending, code) in [
        (UpstreamStatus::Cancelled, Unpaid::Cancelled, "cancelled"),
        (UpstreamStatus::Expired, Unpaid::Expired, "task_expired"),
    ] {
        let decision = upstream(&running(), Event::Polled(Ok(&status)));
        assert!(
            matches!(&decision, Decision::Apply(Move::EndUnpaid { ending: e, code: c, upstream_usage_tokens: None, .. }) if *e == ending && c == code),
            "{decision:?}"
        );
    }
}

#[test]
fn polls_cluster_around_the_expected_finish_then_back_off_to_the_cap() {
    let policy = policy();
    let job = job();
    // 5 s of 720p: expected after 60 s. Early on, the wait is what is left, within bounds.
    let fresh = TaskRecord {
        submit_started_at_ms: Some(NOW - 55_000),
        ..running()
    };
    assert_eq!(policy.next_poll_delay_ms(&fresh, &job, NOW), FIRST_POLL);
    let overdue = TaskRecord {
        submit_started_at_ms: Some(NOW - 120_000),
        polls: 2,
        ..running()
    };
    assert_eq!(policy.next_poll_delay_ms(&overdue, &job, NOW), 20_000);
    let long_overdue = TaskRecord {
        polls: 6,
        ..overdue
    };
    assert_eq!(policy.next_poll_delay_ms(&long_overdue, &job, NOW), 30_000);
}

// Stored.

#[test]
fn a_kept_video_is_charged_at_its_price_with_what_the_upstream_reported() {
    let kept = Kept {
        result: StoredResult {
            width: 1280,
            height: 720,
            fps: 24,
            duration: 5.0,
            has_audio: true,
            container: seedgate_contract::OutputFormat::Mp4,
        },
        usage_tokens: 108_900,
    };
    let price = pricing::price_tokens(
        &Catalog::builtin(),
        "seedance-2.0",
        seedgate_contract::Resolution::P720,
        false,
        108_900,
    )
    .unwrap();
    assert!(price.usd_micros > 0);
    let vendor = VendorUsage {
        tokens: Some(108_900),
        compute_ms: None,
        cost_usd_micros: Some(500_000),
    };
    for (origin, reported) in [
        (Origin::Rendered, VendorUsage::default()),
        (Origin::Copied { usage: vendor }, vendor),
    ] {
        let decision = upstream(
            &running(),
            Event::Stored {
                origin,
                outcome: Ok(&kept),
            },
        );
        let Decision::Apply(Move::Succeed {
            result_json,
            usage_tokens,
            cost_usd_micros,
            cost_cny,
            upstream,
        }) = decision
        else {
            panic!("{decision:?}");
        };
        assert_eq!(usage_tokens, 108_900);
        assert_eq!(cost_usd_micros, price.usd_micros);
        assert_eq!(cost_cny, price.cny_string());
        assert_eq!(upstream, reported, "what the vendor reported is kept");
        let shown: StoredResult = serde_json::from_str(&result_json).unwrap();
        assert_eq!(shown, kept.result);
    }
}

#[test]
fn a_render_our_storage_refused_until_the_deadline_fails_saying_storage_not_rendered_again() {
    // The engine held the render and wrote it again until the deadline: the event means time
    // is up, whatever attempts are left.
    let refused = Event::Stored {
        origin: Origin::Rendered,
        outcome: Err(KeepFailure::Store),
    };
    let decision = decide_for(&claimed(), &job(), Runner::Local, refused);
    assert!(failed("result_store_failed")(&decision), "{decision:?}");
}

#[test]
fn a_result_that_cannot_be_kept_is_tried_again_with_backoff_then_fails_saying_whose_fault() {
    let copied = Origin::Copied {
        usage: VendorUsage {
            tokens: Some(99),
            ..VendorUsage::default()
        },
    };
    for (failures, wait) in [(0, 15_000), (1, 30_000), (3, 120_000)] {
        let task = TaskRecord {
            result_copy_failures: failures,
            ..running()
        };
        let decision = upstream(
            &task,
            Event::Stored {
                origin: copied,
                outcome: Err(KeepFailure::Copy),
            },
        );
        assert_eq!(
            decision,
            Decision::Apply(Move::SchedulePoll {
                at_ms: NOW + wait,
                seen: PollSeen {
                    phase: Some(UpstreamPhase::Succeeded),
                    usage_tokens: Some(99),
                    result_copy_failed: true,
                },
            })
        );
    }
    let spent = TaskRecord {
        result_copy_failures: 4,
        ..running()
    };
    let decision = upstream(
        &spent,
        Event::Stored {
            origin: copied,
            outcome: Err(KeepFailure::Copy),
        },
    );
    assert!(
        matches!(&decision, Decision::Apply(Move::EndUnpaid { ending: Unpaid::Failed, code, upstream_usage_tokens: Some(99), .. }) if code == "result_unavailable"),
        "{decision:?}"
    );
    // Our own store refusing is no fault of the file: it is copied again, at an even pace and
    // without counting a try, for as long as the task's time allows…
    let store_down = Event::Stored {
        origin: copied,
        outcome: Err(KeepFailure::Store),
    };
    assert_eq!(
        upstream(&spent, store_down),
        Decision::Apply(Move::SchedulePoll {
            at_ms: NOW + 15_000,
            seen: PollSeen {
                phase: Some(UpstreamPhase::Succeeded),
                usage_tokens: Some(99),
                result_copy_failed: false,
            },
        })
    );
    // …and once it does not, the ending says storage.
    let out_of_time = TaskRecord {
        deadline_at_ms: Some(NOW - 1),
        upstream_expires_at_ms: Some(NOW - 3_600_000),
        ..spent
    };
    let decision = upstream(&out_of_time, store_down);
    assert!(
        matches!(&decision, Decision::Apply(Move::EndUnpaid { ending: Unpaid::Failed, code, upstream_usage_tokens: Some(99), .. }) if code == "result_store_failed"),
        "{decision:?}"
    );
}

// A batch poll's triage.

#[test]
fn a_batch_answer_schedules_tasks_under_way_and_hands_the_rest_to_a_worker() {
    let policy = policy();
    let job = job();
    let task = running();
    let subject = Subject {
        task: &task,
        job: &job,
        runner: Runner::Upstream,
    };
    let triage = |status| triage(&subject, status, at(), &policy);
    let queued = Ok(UpstreamStatus::Queued);
    let planned = triage(Some(&queued)).unwrap();
    assert_eq!(planned.next_poll_at_ms, NOW + 30_000);
    assert_eq!(planned.phase, Some(UpstreamPhase::Queued));
    // A phase already recorded is not written again.
    let still_running = Ok(UpstreamStatus::Running);
    assert_eq!(triage(Some(&still_running)).unwrap().phase, None);
    let flaky = Err(error(ProviderErrorKind::Retryable));
    assert_eq!(triage(Some(&flaky)).unwrap().phase, None);
    // Ended, refused or left out of the answer: a worker of its own.
    let cancelled = Ok(UpstreamStatus::Cancelled);
    let refused = Err(error(ProviderErrorKind::Permanent));
    assert!(triage(Some(&cancelled)).is_none());
    assert!(triage(Some(&refused)).is_none());
    assert!(triage(None).is_none());
    // Past the upstream's expiry: a worker decides whether it ends.
    let gone = TaskRecord {
        upstream_expires_at_ms: Some(NOW - 600_001),
        ..running()
    };
    let subject = Subject {
        task: &gone,
        job: &job,
        runner: Runner::Upstream,
    };
    assert!(super::triage(&subject, Some(&queued), at(), &policy).is_none());
}

// The policy's rules.

#[test]
fn retry_delay_grows_is_capped_spread_and_honours_retry_after() {
    let policy = policy();
    assert_eq!(policy.retry_delay_ms(0, None, 0.0), 1_000);
    assert_eq!(policy.retry_delay_ms(0, None, 1.0), 1_250);
    assert_eq!(policy.retry_delay_ms(2, None, 0.0), 4_000);
    assert_eq!(policy.retry_delay_ms(20, None, 0.0), 60_000);
    assert_eq!(policy.retry_delay_ms(20, None, 1.0), 75_000);
    assert_eq!(
        policy.retry_delay_ms(0, Some(Duration::from_secs(7)), 0.5),
        7_000
    );
}

#[test]
fn the_upstream_expires_a_task_when_our_deadline_does_within_its_range() {
    let now = 1_000_000_000;
    // Six hours left: the upstream is told six hours.
    assert_eq!(upstream_expiry_seconds(Some(now + 21_600_000), now), 21_600);
    // Less than its minimum, or already past: its minimum.
    assert_eq!(upstream_expiry_seconds(Some(now + 2_000), now), 3_600);
    assert_eq!(upstream_expiry_seconds(Some(now - 5_000), now), 3_600);
    // More than its maximum: its maximum.
    assert_eq!(
        upstream_expiry_seconds(Some(now + 10 * 86_400_000), now),
        259_200
    );
    assert_eq!(upstream_expiry_seconds(None, now), 172_800);
}

#[test]
fn a_submitted_task_outlives_our_deadline_until_the_upstream_gives_up() {
    let policy = policy();
    let deadline = 1_000_000;
    // Never submitted: our deadline alone decides.
    assert!(!policy.may_expire(deadline, Some(deadline), None));
    assert!(policy.may_expire(deadline + 1, Some(deadline), None));
    assert!(!policy.may_expire(deadline + 1, None, None));
    // Submitted: the upstream may still finish (and bill) it until its own expiry, and its
    // last word is awaited a little longer.
    let upstream = deadline + 3_600_000;
    assert!(!policy.may_expire(deadline + 1, Some(deadline), Some(upstream)));
    assert!(!policy.may_expire(upstream + 1, Some(deadline), Some(upstream)));
    assert!(policy.may_expire(
        upstream + policy.upstream_expiry_grace_ms + 1,
        Some(deadline),
        Some(upstream)
    ));
}

// The state machine.

#[test]
fn transitions_start_only_where_the_state_machine_allows_and_terminal_states_never_move() {
    use TaskState::*;
    let all = [
        Queued, Submitting, Running, Succeeded, Failed, Cancelled, Expired,
    ];
    let transitions = [
        Transition::Claim,
        Transition::Start,
        Transition::Requeue,
        Transition::Succeed,
        Transition::EndUnpaid(Unpaid::Failed),
        Transition::EndUnpaid(Unpaid::Cancelled),
        Transition::EndUnpaid(Unpaid::Expired),
        Transition::CancelQueued,
    ];
    for state in all.into_iter().filter(|s| s.is_terminal()) {
        for transition in transitions {
            assert_eq!(state.apply(transition), None, "{state:?} {transition:?}");
        }
    }
    assert_eq!(Queued.apply(Transition::Claim), Some(Submitting));
    assert_eq!(Queued.apply(Transition::CancelQueued), Some(Cancelled));
    assert_eq!(Queued.apply(Transition::Succeed), None);
    assert_eq!(Submitting.apply(Transition::Start), Some(Running));
    assert_eq!(Running.apply(Transition::Start), None);
    for held in [Submitting, Running] {
        assert_eq!(held.apply(Transition::Requeue), Some(Queued));
        assert_eq!(held.apply(Transition::Succeed), Some(Succeeded));
        assert_eq!(
            held.apply(Transition::EndUnpaid(Unpaid::Expired)),
            Some(Expired)
        );
        assert_eq!(held.apply(Transition::CancelQueued), None);
    }
}
