//! Tokens and money (SPEC §4). Integer token math and exact decimals; USD is CNY ÷ the rate,
//! rounded to the micro-dollar once, at the end.

use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;

use crate::catalog::Catalog;
use crate::error::ApiError;
use crate::job::{AspectRatio, DurationRequest, Resolution, VideoJob};

/// `floor(w × h × (24 × s + 1) / 1024)`: the upstream's own count for an output video.
pub fn output_tokens(width: u32, height: u32, seconds: u32) -> u64 {
    let pixels = u128::from(width) * u128::from(height);
    (pixels * (24 * u128::from(seconds) + 1) / 1024) as u64
}

/// `floor(w × h × 24 × input_seconds / 1024)`, with the input length in milliseconds.
pub fn input_tokens(width: u32, height: u32, input_video_millis: u64) -> u64 {
    let pixels = u128::from(width) * u128::from(height);
    (pixels * 24 * u128::from(input_video_millis) / (1000 * 1024)) as u64
}

/// An amount in both currencies.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Money {
    pub usd_micros: i64,
    /// Exact CNY, at most 6 decimals (token counts × prices with ≤ 6 decimals).
    pub cny: Decimal,
}

impl Money {
    /// `"0.736676"`: always six decimals.
    pub fn usd_string(&self) -> String {
        Decimal::new(self.usd_micros, 6).to_string()
    }

    /// `"5.009400"`: always six decimals.
    pub fn cny_string(&self) -> String {
        let mut cny = self.cny.round_dp(6);
        cny.rescale(6);
        cny.to_string()
    }
}

/// What a request costs at most (the reservation) and how that was counted.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Quote {
    pub width: u32,
    pub height: u32,
    pub output_seconds: u32,
    pub input_video_millis: u64,
    pub output_tokens: u64,
    pub input_tokens: u64,
    pub billed_tokens: u64,
    pub video_input: bool,
    pub cny_per_million: Decimal,
    pub cost: Money,
}

fn money(tokens: u64, cny_per_million: Decimal, cny_per_usd: Decimal) -> Money {
    let cny = Decimal::from(tokens) * cny_per_million / Decimal::from(1_000_000);
    let usd_micros = (cny / cny_per_usd * Decimal::from(1_000_000))
        .round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
    Money {
        usd_micros: i64::try_from(usd_micros.mantissa()).unwrap_or(i64::MAX),
        cny,
    }
}

fn no_price(model: &str, resolution: Resolution) -> ApiError {
    ApiError::invalid(
        "unsupported_resolution",
        Some("resolution"),
        format!("{model} has no price for {}", resolution.as_str()),
    )
}

/// The reservation estimate at create: an upper bound. `duration: -1` counts the model's
/// longest duration, `adaptive` the largest size of the tier, and a video input of unknown
/// length (`None`) the longest total input (15 s).
pub fn quote(
    catalog: &Catalog,
    job: &VideoJob,
    input_video_millis: Option<u64>,
) -> Result<Quote, ApiError> {
    let model = catalog.model(&job.model).ok_or_else(|| {
        ApiError::invalid(
            "model_not_found",
            Some("model"),
            format!("unknown model {}", job.model),
        )
    })?;
    let price = model
        .price_row(job.resolution)
        .ok_or_else(|| no_price(&model.id, job.resolution))?;
    let (width, height) = match job.aspect_ratio {
        AspectRatio::Adaptive => catalog.largest_size(job.resolution),
        fixed => catalog.output_size(job.resolution, fixed),
    }
    .ok_or_else(|| no_price(&model.id, job.resolution))?;
    let output_seconds = match job.duration {
        DurationRequest::Seconds(s) => s,
        DurationRequest::ModelDecides => model.duration.max,
    };
    let video_input = job.has_video_input();
    let input_video_millis = if video_input {
        input_video_millis.unwrap_or(u64::from(model.duration.max) * 1000)
    } else {
        0
    };
    let output = output_tokens(width, height, output_seconds);
    let input = input_tokens(width, height, input_video_millis);
    let (billed_tokens, rate) = if video_input {
        (
            (output + input).max(model.video_input_min_tokens),
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
        cost: money(billed_tokens, rate, catalog.cny_per_usd()),
    })
}

/// Settlement: the price of the tokens a provider reports.
pub fn price_tokens(
    catalog: &Catalog,
    model: &str,
    resolution: Resolution,
    video_input: bool,
    tokens: u64,
) -> Result<Money, ApiError> {
    let spec = catalog.model(model).ok_or_else(|| {
        ApiError::invalid(
            "model_not_found",
            Some("model"),
            format!("unknown model {model}"),
        )
    })?;
    let price = spec
        .price_row(resolution)
        .ok_or_else(|| no_price(model, resolution))?;
    Ok(if video_input {
        money(
            tokens.max(spec.video_input_min_tokens),
            price.cny_per_million_video_input,
            catalog.cny_per_usd(),
        )
    } else {
        money(tokens, price.cny_per_million, catalog.cny_per_usd())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_create_request;
    use proptest::prelude::*;

    #[test]
    fn published_token_counts() {
        assert_eq!(output_tokens(1280, 720, 4), 87_300);
        assert_eq!(output_tokens(1280, 720, 5), 108_900);
        assert_eq!(
            output_tokens(1280, 720, 4) + input_tokens(1280, 720, 4000),
            173_700
        );
    }

    #[test]
    fn seedance_2_720p_5s_costs_0_736676() {
        let c = Catalog::builtin();
        let m = price_tokens(&c, "seedance-2.0", Resolution::P720, false, 108_900).unwrap();
        assert_eq!(m.cny_string(), "5.009400");
        assert_eq!(m.usd_string(), "0.736676");
        assert_eq!(m.usd_micros, 736_676);
    }

    #[test]
    fn quote_of_a_default_text_to_video() {
        let c = Catalog::builtin();
        let job = parse_create_request(
            &c,
            br#"{"model":"seedance-2.0","operation":"text-to-video","prompt":"x"}"#,
        )
        .unwrap();
        let q = quote(&c, &job, None).unwrap();
        assert_eq!((q.width, q.height, q.output_seconds), (1280, 720, 5));
        assert_eq!(q.billed_tokens, 108_900);
        assert_eq!(q.cost.usd_string(), "0.736676");
        assert!(!q.video_input);
    }

    #[test]
    fn video_input_uses_the_video_rate_and_counts_input_tokens() {
        let c = Catalog::builtin();
        let job = parse_create_request(
            &c,
            br#"{"model":"seedance-2.0","operation":"video-to-video","prompt":"x","video_url":"https://e.com/v.mp4","duration":4}"#,
        )
        .unwrap();
        let known = quote(&c, &job, Some(4000)).unwrap();
        assert_eq!(known.billed_tokens, 173_700);
        assert_eq!(known.cny_per_million, Decimal::from(28));
        // Unknown input length reserves for the longest (15 s).
        let unknown = quote(&c, &job, None).unwrap();
        assert_eq!(unknown.input_video_millis, 15_000);
        assert!(unknown.cost.usd_micros > known.cost.usd_micros);
    }

    #[test]
    fn model_decides_reserves_the_longest_duration() {
        let c = Catalog::builtin();
        let job = parse_create_request(&c, br#"{"model":"seedance-2.0-fast","operation":"text-to-video","prompt":"x","duration":-1}"#).unwrap();
        let q = quote(&c, &job, None).unwrap();
        assert_eq!(q.output_seconds, 15);
        assert_eq!(q.billed_tokens, output_tokens(1280, 720, 15));
    }

    #[test]
    fn adaptive_reserves_the_largest_size() {
        let c = Catalog::builtin();
        let job = parse_create_request(&c, br#"{"model":"seedance-2.0","operation":"image-to-video","prompt":"x","image_url":"https://e.com/a.png"}"#).unwrap();
        let q = quote(&c, &job, None).unwrap();
        assert_eq!(u64::from(q.width) * u64::from(q.height), 1112 * 834);
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
        assert_eq!(m.cny, Decimal::new(46, 3));
    }

    proptest! {
        #[test]
        fn tokens_grow_with_duration_and_area(w in 2u32..4400, h in 2u32..4400, s in 1u32..15) {
            prop_assert!(output_tokens(w, h, s + 1) > output_tokens(w, h, s));
            prop_assert!(output_tokens(w + 2, h, s) >= output_tokens(w, h, s));
            prop_assert!(input_tokens(w, h, u64::from(s) * 1000 + 1000) >= input_tokens(w, h, u64::from(s) * 1000));
        }

        #[test]
        fn usd_is_cny_over_the_rate_to_the_micro(tokens in 0u64..50_000_000, rate in 1u32..200) {
            let c = Catalog::builtin();
            let m = money(tokens, Decimal::from(rate), c.cny_per_usd());
            let exact = Decimal::from(tokens) * Decimal::from(rate) / Decimal::from(1_000_000) / Decimal::new(68, 1);
            let diff = (Decimal::new(m.usd_micros, 6) - exact).abs();
            prop_assert!(diff <= Decimal::new(5, 7));
        }
    }
}
