//! Tokens and money (docs/models-and-pricing.md). Token counts are integer math; money is exact
//! decimal: CNY = tokens × rate ÷ 10⁶, USD = CNY ÷ the catalog's rate, rounded to the
//! micro-dollar once, at the end. No `f64` touches an amount.

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;

use crate::catalog::{Catalog, ModelSpec, PriceRow};
use crate::error::{ApiError, ErrorCode};
use crate::job::{DurationRequest, Resolution, VideoJob};
use crate::parse::model_not_found;

/// What a video input of unknown length reserves for: no input video, nor all reference
/// videos together, may last longer than the model's `input_clips.total_seconds`.
pub fn longest_input_video_millis(model: &ModelSpec) -> u64 {
    u64::from(model.input_clips.total_seconds) * 1000
}

/// `floor(w × h × (24 × s + 1) / 1024)`: the upstream's own count for an output video of
/// `seconds` at 24 fps. Saturates instead of wrapping for absurd arguments.
pub fn output_tokens(width: u32, height: u32, seconds: u32) -> u64 {
    let pixels = u128::from(width) * u128::from(height);
    let frames = 24 * u128::from(seconds) + 1;
    u64::try_from(pixels * frames / 1024).unwrap_or(u64::MAX)
}

/// `floor(w × h × 24 × input_seconds / 1024)` with the input length in milliseconds, i.e.
/// `floor(w × h × 24 × ms / 1 024 000)` (one division, so no intermediate rounding).
pub fn input_tokens(width: u32, height: u32, input_video_millis: u64) -> u64 {
    let pixels = u128::from(width) * u128::from(height);
    let product = pixels.saturating_mul(24 * u128::from(input_video_millis));
    u64::try_from(product / (1000 * 1024)).unwrap_or(u64::MAX)
}

/// An amount in both currencies: what the ledger books (`usd_micros`) and what the CNY list
/// price gave (`cny`, for display and audit).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Money {
    /// USD in millionths, rounded half away from zero from the exact CNY ÷ rate.
    pub usd_micros: i64,
    /// CNY to 6 decimals (exact for list prices with whole fen per million tokens).
    pub cny: Decimal,
}

impl Money {
    /// USD with six decimals: `"0.736676"`.
    pub fn usd_string(&self) -> String {
        Decimal::new(self.usd_micros, 6).to_string()
    }

    /// CNY with six decimals: `"5.009400"`.
    pub fn cny_string(&self) -> String {
        six_places(self.cny).to_string()
    }
}

/// What a request costs at most (the reservation) and how that was counted.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Quote {
    /// Output width counted: the size the video is made at, or the largest of the tier for
    /// `adaptive` following an input whose shape is not known yet.
    pub width: u32,
    /// Output height counted.
    pub height: u32,
    /// Output seconds counted (the model's maximum for `duration: -1`).
    pub output_seconds: u32,
    /// Input video length counted; 0 without video input.
    pub input_video_millis: u64,
    /// Tokens of the output.
    pub output_tokens: u64,
    /// Tokens of the video input; 0 without video input.
    pub input_tokens: u64,
    /// What is charged: output + input, at least the model's video-input minimum when
    /// video is an input.
    pub billed_tokens: u64,
    /// Whether the video-input rate applies.
    pub video_input: bool,
    /// The rate applied.
    pub cny_per_million: Decimal,
    /// The price of `billed_tokens`.
    pub cost: Money,
}

fn six_places(value: Decimal) -> Decimal {
    let mut value = value.round_dp_with_strategy(6, RoundingStrategy::MidpointAwayFromZero);
    value.rescale(6);
    value
}

/// An amount that does not fit the ledger: only an absurd token count or catalog gets here.
fn out_of_range() -> ApiError {
    ApiError::new(
        ErrorCode::AmountOutOfRange,
        "The computed price is out of range.",
    )
}

/// The price of `tokens` at `cny_per_million`. Checked arithmetic: a provider reporting a
/// nonsensical token count must not panic the engine or book a wrapped amount.
fn money(tokens: u64, cny_per_million: Decimal, cny_per_usd: Decimal) -> Result<Money, ApiError> {
    let cny = Decimal::from(tokens)
        .checked_mul(cny_per_million)
        .and_then(|c| c.checked_div(Decimal::from(1_000_000)))
        .ok_or_else(out_of_range)?;
    let usd_micros = cny
        .checked_div(cny_per_usd)
        .and_then(|usd| usd.checked_mul(Decimal::from(1_000_000)))
        .map(|m| m.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero))
        .and_then(|m| m.to_i64())
        .ok_or_else(out_of_range)?;
    Ok(Money {
        usd_micros,
        cny: six_places(cny),
    })
}

fn price_row(model: &ModelSpec, resolution: Resolution) -> Result<&PriceRow, ApiError> {
    model.price_row(resolution).ok_or_else(|| {
        ApiError::new(
            ErrorCode::UnsupportedResolution,
            format!("`{}` has no price for {resolution}.", model.id),
        )
        .with_param("resolution")
    })
}

/// The reservation estimate at create: an upper bound of what settlement can charge for this
/// job. The size is the one the video is made at ([`VideoJob::output_ratio`], with the shape
/// of the input `adaptive` follows when known: `input_shape`); only `adaptive` following an
/// input of unknown shape counts the largest-area size of the tier. `duration: -1` counts the
/// model's longest duration, and a video input of unknown length (`None`) the longest the
/// model accepts ([`longest_input_video_millis`]). `input_video_millis` is ignored without
/// video input.
///
/// Errors: `model_not_found` / `unsupported_resolution` for a job the catalog no longer
/// covers (a stored job after a catalog change), `amount_out_of_range` for absurd catalogs.
pub fn quote(
    catalog: &Catalog,
    job: &VideoJob,
    input_video_millis: Option<u64>,
    input_shape: Option<(u32, u32)>,
) -> Result<Quote, ApiError> {
    let model = catalog
        .model(&job.model)
        .ok_or_else(|| model_not_found(catalog, &job.model))?;
    let price = price_row(model, job.resolution)?;
    let (width, height) = match job.output_ratio(input_shape) {
        Some(ratio) => catalog.output_size(job.resolution, ratio),
        None => catalog.largest_size(job.resolution),
    }
    .ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidAspectRatio,
            format!(
                "No output size for {} at {}.",
                job.resolution, job.aspect_ratio
            ),
        )
        .with_param("aspect_ratio")
    })?;
    let output_seconds = match job.duration {
        DurationRequest::Seconds(s) => s,
        DurationRequest::ModelDecides => model.duration.max,
    };
    let video_input = job.has_video_input();
    let input_video_millis = if video_input {
        input_video_millis.unwrap_or_else(|| longest_input_video_millis(model))
    } else {
        0
    };
    let output = output_tokens(width, height, output_seconds);
    let input = input_tokens(width, height, input_video_millis);
    let (billed_tokens, rate) = if video_input {
        (
            output
                .saturating_add(input)
                .max(model.video_input_min_tokens),
            price.cny_per_million_video_input,
        )
    } else {
        (output, price.cny_per_million)
    };
    Ok(Quote {
        width,
        height,
        output_seconds,
        input_video_millis,
        output_tokens: output,
        input_tokens: input,
        billed_tokens,
        video_input,
        cny_per_million: rate,
        cost: money(billed_tokens, rate, catalog.cny_per_usd())?,
    })
}

/// The most tokens one task of a model can count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenCeiling {
    /// The output of its longest duration at the largest-area size of its top tier.
    pub output: u64,
    /// A video input of the longest length accepted ([`longest_input_video_millis`]) at that size;
    /// `None` when none of its operations takes a video.
    pub input: Option<u64>,
}

/// The token ceiling of `model`: what its reservations reach at most. `None` only for a tier
/// without sizes, which a validated catalog does not have.
pub fn token_ceiling(catalog: &Catalog, model: &ModelSpec) -> Option<TokenCeiling> {
    let top = model.resolutions.iter().copied().max()?;
    let (width, height) = catalog.largest_size(top)?;
    let takes_video = model.operations.iter().any(|op| op.may_take_video());
    Some(TokenCeiling {
        output: output_tokens(width, height, model.duration.max),
        input: takes_video.then(|| input_tokens(width, height, longest_input_video_millis(model))),
    })
}

/// Settlement: the price of the `tokens` a provider reported for a succeeded task, at the
/// video-input rate (and never below the model's minimum) when `video_input`.
pub fn price_tokens(
    catalog: &Catalog,
    model: &str,
    resolution: Resolution,
    video_input: bool,
    tokens: u64,
) -> Result<Money, ApiError> {
    let spec = catalog
        .model(model)
        .ok_or_else(|| model_not_found(catalog, model))?;
    let price = price_row(spec, resolution)?;
    if video_input {
        money(
            tokens.max(spec.video_input_min_tokens),
            price.cny_per_million_video_input,
            catalog.cny_per_usd(),
        )
    } else {
        money(tokens, price.cny_per_million, catalog.cny_per_usd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::AspectRatio;
    use crate::parse_tests::parse_job;
    use proptest::prelude::*;

    fn job(body: &str) -> VideoJob {
        parse_job(&Catalog::builtin(), body.as_bytes()).unwrap()
    }

    #[test]
    fn published_token_count_720p_4s_is_87300() {
        assert_eq!(output_tokens(1280, 720, 4), 87_300);
    }

    #[test]
    fn published_token_count_720p_5s_is_108900() {
        assert_eq!(output_tokens(1280, 720, 5), 108_900);
    }

    #[test]
    fn published_token_count_720p_4s_with_4s_reference_video_is_173700() {
        assert_eq!(input_tokens(1280, 720, 4000), 86_400);
        assert_eq!(
            output_tokens(1280, 720, 4) + input_tokens(1280, 720, 4000),
            173_700
        );
        let j = job(
            r#"{"model":"seedance-2.0","operation":"reference-to-video","prompt":"x","duration":4,
                "aspect_ratio":"16:9","video_urls":["https://e.com/v.mp4"]}"#,
        );
        let q = quote(&Catalog::builtin(), &j, Some(4000), None).unwrap();
        assert_eq!(
            (q.output_tokens, q.input_tokens, q.billed_tokens),
            (87_300, 86_400, 173_700)
        );
    }

    #[test]
    fn seedance_2_720p_5s_costs_0_736676() {
        let c = Catalog::builtin();
        let m = price_tokens(&c, "seedance-2.0", Resolution::P720, false, 108_900).unwrap();
        assert_eq!(m.cny, Decimal::new(5_009_400, 6));
        assert_eq!(m.cny_string(), "5.009400");
        assert_eq!(m.usd_string(), "0.736676");
        assert_eq!(m.usd_micros, 736_676);
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"usd_micros": 736_676, "cny": "5.009400"})
        );
    }

    #[test]
    fn quote_of_a_16_9_text_to_video_is_0_736676() {
        let q = quote(
            &Catalog::builtin(),
            &job(r#"{"model":"seedance-2.0","operation":"text-to-video","prompt":"x","aspect_ratio":"16:9"}"#),
            None,
            None,
        )
        .unwrap();
        assert_eq!((q.width, q.height, q.output_seconds), (1280, 720, 5));
        assert_eq!(q.billed_tokens, 108_900);
        assert_eq!(q.cny_per_million, Decimal::from(46));
        assert_eq!(q.cost.usd_string(), "0.736676");
        assert_eq!(q.cost.cny_string(), "5.009400");
        assert!(!q.video_input);
        assert_eq!((q.input_video_millis, q.input_tokens), (0, 0));
    }

    #[test]
    fn the_quote_describes_the_video_that_will_be_made() {
        let c = Catalog::builtin();
        // Adaptive with a prompt alone is made at 16:9, so it is quoted at 16:9.
        let text = job(r#"{"model":"seedance-2.0","operation":"text-to-video","prompt":"x"}"#);
        assert_eq!(text.aspect_ratio, AspectRatio::Adaptive);
        assert_eq!(text.output_ratio(None), Some(AspectRatio::W16H9));
        let q = quote(&c, &text, None, None).unwrap();
        assert_eq!((q.width, q.height), (1280, 720));
        assert_eq!(q.billed_tokens, 108_900);
        assert_eq!(q.cost.usd_string(), "0.736676");
        // A shape sent along cannot move a video without an input.
        assert_eq!(quote(&c, &text, None, Some((400, 720))).unwrap(), q);
        // With an image of known shape, the closest ratio's size; unknown, the largest.
        let image = job(
            r#"{"model":"seedance-2.0","operation":"image-to-video","prompt":"x","image_url":"https://e.com/a.png"}"#,
        );
        assert_eq!(
            image.output_ratio(Some((400, 720))),
            Some(AspectRatio::W9H16)
        );
        let known = quote(&c, &image, None, Some((400, 720))).unwrap();
        assert_eq!((known.width, known.height), (720, 1280));
        assert_eq!(image.output_ratio(None), None);
        let unknown = quote(&c, &image, None, None).unwrap();
        assert_eq!((unknown.width, unknown.height), (834, 1112));
        // A fixed ratio is itself, whatever the input.
        let fixed = job(
            r#"{"model":"seedance-2.0","operation":"image-to-video","prompt":"x","image_url":"https://e.com/a.png","aspect_ratio":"21:9"}"#,
        );
        let q = quote(&c, &fixed, None, Some((400, 720))).unwrap();
        assert_eq!((q.width, q.height), (1470, 630));
    }

    #[test]
    fn other_models_and_tiers_use_their_rows() {
        let c = Catalog::builtin();
        // 108,900 × 37 / 10⁶ = 4.029300 CNY; ÷ 6.8 = 0.59254411… USD.
        let fast = price_tokens(&c, "seedance-2.0-fast", Resolution::P720, false, 108_900).unwrap();
        assert_eq!(
            (fast.cny_string().as_str(), fast.usd_micros),
            ("4.029300", 592_544)
        );
        // 1080p 16:9 5 s: 1920 × 1080 × 121 / 1024 = 245,025 tokens × 51.
        let full_hd = job(
            r#"{"model":"seedance-2.0","operation":"text-to-video","prompt":"x","resolution":"1080p","aspect_ratio":"16:9"}"#,
        );
        let q = quote(&c, &full_hd, None, None).unwrap();
        assert_eq!(q.billed_tokens, 245_025);
        assert_eq!(q.cost.cny_string(), "12.496275");
        // 12.496275 / 6.8 = 1.8376875 exactly: the half micro-dollar rounds away from zero.
        assert_eq!(q.cost.usd_string(), "1.837688");
    }

    #[test]
    fn video_input_uses_the_video_rate_and_counts_input_tokens() {
        let c = Catalog::builtin();
        let j = job(
            r#"{"model":"seedance-2.0","operation":"video-to-video","prompt":"x","video_url":"https://e.com/v.mp4","duration":4,"aspect_ratio":"16:9"}"#,
        );
        let known = quote(&c, &j, Some(4000), None).unwrap();
        assert_eq!(known.billed_tokens, 173_700);
        assert_eq!(known.cny_per_million, Decimal::from(28));
        assert_eq!(known.cost.cny_string(), "4.863600");
        let settled = price_tokens(&c, "seedance-2.0", Resolution::P720, true, 173_700).unwrap();
        assert_eq!(settled, known.cost);
    }

    #[test]
    fn unknown_input_length_reserves_15_seconds() {
        let c = Catalog::builtin();
        let j = job(
            r#"{"model":"seedance-2.0","operation":"video-extension","task_id":"vtask_01JAAAAAAAAAAAAAAAAAAAAAAA"}"#,
        );
        let unknown = quote(&c, &j, None, None).unwrap();
        assert_eq!(unknown.input_video_millis, 15_000);
        assert!(unknown.video_input);
        let known = quote(&c, &j, Some(5000), None).unwrap();
        assert!(unknown.cost.usd_micros > known.cost.usd_micros);
    }

    #[test]
    fn input_length_is_ignored_without_video_input() {
        let j = job(
            r#"{"model":"seedance-2.0","operation":"text-to-video","prompt":"x","aspect_ratio":"16:9"}"#,
        );
        let q = quote(&Catalog::builtin(), &j, Some(9000), None).unwrap();
        assert_eq!(
            (q.input_video_millis, q.input_tokens, q.billed_tokens),
            (0, 0, 108_900)
        );
    }

    #[test]
    fn model_decides_reserves_the_longest_duration() {
        let j = job(
            r#"{"model":"seedance-2.0-fast","operation":"text-to-video","prompt":"x","duration":-1,"aspect_ratio":"16:9"}"#,
        );
        let q = quote(&Catalog::builtin(), &j, None, None).unwrap();
        assert_eq!(q.output_seconds, 15);
        assert_eq!(q.billed_tokens, output_tokens(1280, 720, 15));
    }

    #[test]
    fn adaptive_following_an_unread_input_reserves_the_largest_size() {
        let j = job(
            r#"{"model":"seedance-2.0","operation":"image-to-video","prompt":"x","image_url":"https://e.com/a.png"}"#,
        );
        let q = quote(&Catalog::builtin(), &j, None, None).unwrap();
        assert_eq!((q.width, q.height), (834, 1112));
    }

    #[test]
    fn video_input_minimum_applies() {
        let text = crate::catalog::BUILTIN_CATALOG.replacen(
            "video_input_min_tokens = 0",
            "video_input_min_tokens = 500000",
            1,
        );
        let c = Catalog::from_toml(&text).unwrap();
        let m = price_tokens(&c, "seedance-2.0", Resolution::P720, true, 1000).unwrap();
        assert_eq!(m.cny, Decimal::from(14));
        let m = price_tokens(&c, "seedance-2.0", Resolution::P720, false, 1000).unwrap();
        assert_eq!(m.cny_string(), "0.046000");
        let j = job(
            r#"{"model":"seedance-2.0","operation":"video-to-video","prompt":"x","video_url":"https://e.com/v.mp4","duration":4}"#,
        );
        let q = quote(&c, &j, Some(2000), None).unwrap();
        assert_eq!(q.billed_tokens, 500_000);
    }

    #[test]
    fn the_token_ceiling_is_the_longest_task_at_the_largest_size() {
        let c = Catalog::builtin();
        let ceiling = |id| token_ceiling(&c, c.model(id).unwrap()).unwrap();
        // 4k's largest frame is 3326 × 2494 (4:3), 15 s.
        assert_eq!(
            ceiling("seedance-2.0"),
            TokenCeiling {
                output: output_tokens(3326, 2494, 15),
                input: Some(input_tokens(3326, 2494, 15_000)),
            }
        );
        // 720p: 834 × 1112.
        assert_eq!(ceiling("seedance-2.0-fast").output, 326_947);
        assert_eq!(ceiling("seedance-2.0-fast").input, Some(326_041));
        let text_only = crate::catalog::BUILTIN_CATALOG.replacen(
            "operations = [\"text-to-video\", \"image-to-video\", \"start-end-to-video\", \"reference-to-video\", \"video-to-video\", \"video-extension\"]",
            "operations = [\"text-to-video\", \"image-to-video\", \"start-end-to-video\"]",
            1,
        );
        let c = Catalog::from_toml(&text_only).unwrap();
        assert_eq!(token_ceiling(&c, &c.models()[0]).unwrap().input, None);
    }

    #[test]
    fn unknown_model_or_tier_is_an_error() {
        let c = Catalog::builtin();
        let err = price_tokens(&c, "seedance-9", Resolution::P720, false, 1).unwrap_err();
        assert_eq!(
            (err.code.as_str(), err.param.as_deref()),
            ("model_not_found", Some("model"))
        );
        let err = price_tokens(&c, "seedance-2.0-fast", Resolution::K4, false, 1).unwrap_err();
        assert_eq!(err.code.as_str(), "unsupported_resolution");
        let mut j = job(r#"{"model":"seedance-2.0","operation":"text-to-video","prompt":"x"}"#);
        j.model = "gone".into();
        assert_eq!(
            quote(&c, &j, None, None).unwrap_err().code,
            ErrorCode::UnknownModel
        );
    }

    #[test]
    fn absurd_token_counts_are_an_error_not_a_panic() {
        let c = Catalog::builtin();
        let err = price_tokens(&c, "seedance-2.0", Resolution::P720, false, u64::MAX).unwrap_err();
        assert_eq!(
            (err.status(), err.code.as_str()),
            (500, "amount_out_of_range")
        );
        assert_eq!(output_tokens(u32::MAX, u32::MAX, u32::MAX), u64::MAX);
        assert_eq!(input_tokens(u32::MAX, u32::MAX, u64::MAX), u64::MAX);
    }

    #[test]
    fn zero_tokens_cost_nothing() {
        let m = price_tokens(
            &Catalog::builtin(),
            "seedance-2.0",
            Resolution::P480,
            false,
            0,
        )
        .unwrap();
        assert_eq!(
            (m.usd_string().as_str(), m.cny_string().as_str()),
            ("0.000000", "0.000000")
        );
    }

    /// `round_half_away(n / d)` for positive integers: the oracle the decimal code must match.
    fn round_div(n: u128, d: u128) -> u128 {
        (2 * n + d) / (2 * d)
    }

    proptest! {
        #[test]
        fn tokens_grow_with_duration(w in 1u32..5000, h in 1u32..5000, s in 0u32..60) {
            prop_assert!(output_tokens(w, h, s + 1) >= output_tokens(w, h, s));
            // Strictly, once a second of frames is worth a token (24 × w × h ≥ 1024).
            if w * h >= 43 {
                prop_assert!(output_tokens(w, h, s + 1) > output_tokens(w, h, s));
            }
        }

        #[test]
        fn tokens_grow_with_area(w in 1u32..5000, h in 1u32..5000, dw in 0u32..100, dh in 0u32..100, s in 1u32..16) {
            prop_assert!(output_tokens(w + dw, h + dh, s) >= output_tokens(w, h, s));
            prop_assert!(input_tokens(w + dw, h + dh, u64::from(s) * 1000) >= input_tokens(w, h, u64::from(s) * 1000));
        }

        #[test]
        fn input_tokens_grow_with_input_length(w in 1u32..5000, h in 1u32..5000, ms in 0u64..60_000, more in 0u64..10_000) {
            prop_assert!(input_tokens(w, h, ms + more) >= input_tokens(w, h, ms));
            // Whole seconds of input count 24 frames each (the output formula minus its +1 frame).
            let s = ms / 1000;
            prop_assert_eq!(input_tokens(w, h, 1000 * s), u64::from(w) * u64::from(h) * 24 * s / 1024);
        }

        #[test]
        fn usd_micros_is_cny_over_6_8_rounded_once(tokens in 0u64..2_000_000_000, rate in 0u64..1_000_000, scale in 0u32..4) {
            // The rate is rate / 10^scale CNY per million tokens, e.g. 46 or 37.25.
            let cny_per_million = Decimal::new(rate as i64, scale);
            let m = money(tokens, cny_per_million, Decimal::new(68, 1)).unwrap();
            // usd_micros = tokens × rate / 10^scale / 6.8 = tokens × rate × 10 / (68 × 10^scale)
            let expected = round_div(u128::from(tokens) * u128::from(rate) * 10, 68 * 10u128.pow(scale));
            prop_assert_eq!(m.usd_micros as u128, expected);
            // and CNY is tokens × rate / 10^(6 + scale), to 6 decimals.
            let cny_micros = round_div(u128::from(tokens) * u128::from(rate), 10u128.pow(scale));
            prop_assert_eq!(m.cny, Decimal::from_i128_with_scale(cny_micros as i128, 6));
        }

        #[test]
        fn settlement_at_the_quoted_tokens_is_the_quote(
            model in 0usize..3, op_video in any::<bool>(), seconds in 4u32..=15, ms in 0u64..=15_000
        ) {
            let c = Catalog::builtin();
            let spec = &c.models()[model];
            let body = if op_video {
                format!(r#"{{"model":"{}","operation":"video-to-video","prompt":"x","video_url":"https://e.com/v","duration":{seconds}}}"#, spec.id)
            } else {
                format!(r#"{{"model":"{}","operation":"text-to-video","prompt":"x","duration":{seconds}}}"#, spec.id)
            };
            let j = job(&body);
            let q = quote(&c, &j, Some(ms), None).unwrap();
            let settled = price_tokens(&c, &spec.id, j.resolution, op_video, q.billed_tokens).unwrap();
            prop_assert_eq!(settled, q.cost);
        }
    }
}
